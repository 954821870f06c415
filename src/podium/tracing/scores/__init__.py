"""Scores on traces and spans: human feedback, evaluations and metrics, one number (or label) each."""
