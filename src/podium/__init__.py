"""Podium: a self-hosted LLMOps platform."""

__version__ = "0.1.0"
