"""What a route is, as the API, the CLI and `podium.toml` give it: validated once, stored as JSON."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from podium.models.providers import registry

MODEL = "model"  # a deployment that sends to a model registered in Podium
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")


class PriceSpec(BaseModel):
    """USD per one million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class TimeoutSpec(BaseModel):
    """Seconds: to connect, to the first byte or token, for the whole call."""

    model_config = ConfigDict(extra="forbid")

    connect: float = Field(10.0, gt=0)
    first_token: float = Field(60.0, gt=0)
    total: float = Field(600.0, gt=0)


class DeploymentSpec(BaseModel):
    """One place a route can send a request: a provider, an upstream model and how to reach it.

    `provider: model` sends to a model registered in Podium (`model` is its reference, `name@alias` too).
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Shown in headers and traces; default provider/model.")
    provider: str = Field(description="A provider kind (openai, anthropic, …) or `model` (a registered model).")
    model: str = Field(min_length=1)
    base_url: str | None = None
    api_key: SecretStr | None = Field(None, description="Write-only; stored encrypted.")
    headers: dict[str, str] = Field(default_factory=dict)
    weight: float = Field(1.0, gt=0)
    price: PriceSpec | None = Field(None, description="Overrides the shipped price table.")
    context_window: int | None = Field(None, gt=0)
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec)

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        if self.provider != MODEL:
            try:
                kind = registry.kind(self.provider)
            except ValueError as exc:
                raise ValueError(f"{exc}, or '{MODEL}' for a model registered in Podium") from None
            if kind.name == "local":
                raise ValueError("a route reaches a local model through `provider: model` and the model's name")
            if kind.needs_base_url and not self.base_url:
                raise ValueError(
                    f"an {self.provider} deployment needs 'base_url' (for example https://api.openai.com/v1)"
                )
        if self.base_url and not re.match(r"^https?://", self.base_url):
            raise ValueError(f"base_url {self.base_url!r} must start with http:// or https://")
        if self.name is None:
            self.name = f"{self.provider}/{self.model}"
        return self


class CircuitSpec(BaseModel):
    """Cool a deployment down after `failures` consecutive failures, for `cooldown` seconds, then probe it."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(5, ge=1, le=1000)
    cooldown: float = Field(30.0, gt=0, le=3600)


class CacheSpec(BaseModel):
    """Response caching for a route: exact (request hash) and/or semantic (prompt embedding)."""

    model_config = ConfigDict(extra="forbid")

    exact: bool = False
    semantic_threshold: float | None = Field(
        None, gt=0, le=1, description="Serve the answer of a prompt whose embedding's cosine is at least this."
    )
    embedding_model: str = Field("minilm-l6-v2", min_length=1, description="Model that embeds prompts.")
    ttl: float = Field(3600.0, gt=0)
    allow_temperature: bool = Field(False, description="Also cache requests with temperature > 0.")
    shared: bool = Field(
        False, description="Serve one project's cached answers to every project (off: each project its own)."
    )


class GuardrailSpec(BaseModel):
    """A guardrail hook and its settings (`type: regex_deny` ships with Podium)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1)
    on: Literal["request", "response", "both"] = "both"


class RouteSpec(BaseModel):
    """A public model name over one or more deployments."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    strategy: Literal["weighted", "round-robin", "least-busy", "lowest-latency", "lowest-cost"] = "weighted"
    deployments: list[DeploymentSpec] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)
    retries: int = Field(2, ge=0, le=10, description="Extra attempts within the route before its fallbacks.")
    backoff: float = Field(0.2, ge=0, le=30, description="First retry delay in seconds; doubles, with jitter.")
    max_retry_wait: float = Field(10.0, ge=0, le=300, description="Longest Retry-After honoured on this route.")
    circuit: CircuitSpec = Field(default_factory=CircuitSpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    guardrails: list[GuardrailSpec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value) or "@" in value:
            raise ValueError(
                "a route name is 1-200 characters of letters, digits and . _ : / - (no '@'), starting with a"
                " letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _unique(self) -> RouteSpec:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1 and n})
        if dupes:
            raise ValueError(f"deployment names must be unique within a route; repeated: {', '.join(dupes)}")
        if self.name in self.fallbacks:
            raise ValueError("a route cannot fall back to itself")
        return self
