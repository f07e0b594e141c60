"""``make bench``: the figures a payments team asks for, each measured beside its reference in the same run.

``python -m benchmarks.run --help`` for the runner; ``scripts/bench.sh`` starts the servers it needs.
"""
