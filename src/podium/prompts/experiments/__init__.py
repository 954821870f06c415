"""Prompt experiments: traffic split between versions, results with intervals, and a bandit."""
