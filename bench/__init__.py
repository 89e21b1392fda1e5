"""The exporter's speed, measured against baselines in the same run: `python -m bench`.

See docs/benchmarks.md for what each number means.
"""
