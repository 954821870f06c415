"""Drift: input and output drift between a reference window (or a dataset version) and a current window."""
