"""In-process integrations: the few lines an orchestrator adds to send its events."""
