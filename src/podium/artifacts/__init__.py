"""Artifacts: the content-addressed blob store's maintenance (verification, garbage collection)."""
