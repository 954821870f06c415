"""The `/v1` OpenAI-compatible API in front of every model."""
