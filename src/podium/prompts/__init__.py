"""Prompt registry: versioned templates, labels, rendering, experiments."""
