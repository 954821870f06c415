"""Tables of the prompt registry: prompts, immutable versions, labels with their history, experiments; and
`PROMPTS`, the registry kernel over them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow
from podium.core.registry import Registry


class Prompt(Base):
    """A named prompt; what it says lives in its versions."""

    __tablename__ = "prompts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptVersion(Base):
    """One immutable version: a text template or chat messages, declared variables, model parameters,
    optional tools and response schema. `content_hash` covers everything but the commit message, so
    pushing unchanged content finds the version it already is."""

    __tablename__ = "prompt_versions"
    __table_args__ = (
        UniqueConstraint("prompt_id", "version", name="uq_prompt_version"),
        Index("ix_prompt_versions_hash", "prompt_id", "content_hash"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"), index=True)
    version: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(10))  # "text" or "chat"
    template: Mapped[str | None] = mapped_column(Text, default=None)
    messages: Mapped[list[Any] | None] = mapped_column(default=None)
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tools: Mapped[list[Any] | None] = mapped_column(default=None)
    response_format: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    content_hash: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptLabel(Base):
    """A movable name (`production`, `staging`, …) pointing at one version of a prompt."""

    __tablename__ = "prompt_labels"

    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"), primary_key=True)
    label: Mapped[str] = mapped_column(String(60), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("prompt_versions.id"))
    updated_by: Mapped[str] = mapped_column(String(140))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptLabelMove(Base):
    """History: who moved which label from which version to which, and when."""

    __tablename__ = "prompt_label_history"
    __table_args__ = (Index("ix_prompt_label_history", "prompt_id", "label", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"))
    label: Mapped[str] = mapped_column(String(60))
    from_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    to_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    actor: Mapped[str] = mapped_column(String(140))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Experiment(Base):
    """A split of one prompt's traffic between versions (arms), fixed or shifted by a bandit."""

    __tablename__ = "prompt_experiments"
    __table_args__ = (UniqueConstraint("prompt_id", "name", name="uq_prompt_experiment"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20), default="running")  # running, stopped
    mode: Mapped[str] = mapped_column(String(20), default="fixed")  # fixed, auto
    sticky_by: Mapped[str] = mapped_column(String(20), default="user")  # user, session
    score_name: Mapped[str | None] = mapped_column(String(120), default=None)
    min_samples: Mapped[int] = mapped_column(default=100)
    max_shift: Mapped[float] = mapped_column(default=0.1)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)


class ExperimentArm(Base):
    """One version in an experiment and its current share of the traffic (shares sum to 1)."""

    __tablename__ = "prompt_experiment_arms"

    experiment_id: Mapped[str] = mapped_column(ForeignKey("prompt_experiments.id"), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("prompt_versions.id"), primary_key=True)
    share: Mapped[float] = mapped_column()


class ExperimentShift(Base):
    """Log of every change of shares: who or what moved them, from what to what, and why."""

    __tablename__ = "prompt_experiment_shifts"
    __table_args__ = (Index("ix_prompt_experiment_shifts", "experiment_id", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("prompt_experiments.id"))
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(140))
    at: Mapped[datetime] = mapped_column(default=utcnow)


PROMPTS: Registry[Prompt, PromptVersion] = Registry(
    kind="prompt",
    entity=Prompt,
    version=PromptVersion,
    label=PromptLabel,
    move=PromptLabelMove,
    entity_fk="prompt_id",
    label_column="label",
    word="label",
    hash_column="content_hash",
    version_prefix="prv",
    move_prefix="plm",
    project_column="project_id",
)
