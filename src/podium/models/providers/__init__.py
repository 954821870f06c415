"""Provider adapters: one interface (OpenAI-shaped requests and responses) over every backend."""

from podium.models.providers.base import Provider, Timeouts, UpstreamError

__all__ = ["Provider", "Timeouts", "UpstreamError"]
