"""Acting on the fleet: commands that reach the orchestrators, and the audit trail.

The API and the CLI both call this package; it imports no web framework. Commands are durable
in the ledger and delivered at least once (`queue.py`); their targets are checked against what
the fleet state knows (`targets.py`); every action is appended to the audit trail (`audit.py`).
"""
