"""Tables of the model registry: models, immutable versions, aliases and the history of alias moves, and
`MODELS`, the registry kernel over them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow
from podium.core.registry import Registry

TASKS = ("chat", "completion", "embedding")


class Model(Base):
    """A named model; what it is lives in its versions."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    task: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    builtin: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)


class ModelVersion(Base):
    """One immutable version: where it came from, its files (by sha256), its shape and its lineage."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column()
    source_uri: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(30))
    files: Mapped[list[Any]] = mapped_column(default=list)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    parameters: Mapped[int | None] = mapped_column(BigInteger, default=None)
    context_length: Mapped[int | None] = mapped_column(default=None)
    license: Mapped[str | None] = mapped_column(String(100), default=None)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    base_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"), default=None)
    message: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    """A movable name (`production`, `staging`, …) pointing at one version of a model."""

    __tablename__ = "model_aliases"

    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(60), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    updated_by: Mapped[str] = mapped_column(String(140))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasMove(Base):
    """History: who moved which alias from which version to which, and when."""

    __tablename__ = "model_alias_history"
    __table_args__ = (Index("ix_alias_history_model_alias", "model_id", "alias", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"))
    alias: Mapped[str] = mapped_column(String(60))
    from_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    to_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    actor: Mapped[str] = mapped_column(String(140))
    at: Mapped[datetime] = mapped_column(default=utcnow)


MODELS: Registry[Model, ModelVersion] = Registry(
    kind="model",
    entity=Model,
    version=ModelVersion,
    label=ModelAlias,
    move=AliasMove,
    entity_fk="model_id",
    label_column="alias",
    word="alias",
    hash_column="sha256",
    version_prefix="mdv",
    move_prefix="amv",
    archived_column="archived_at",
    project_column="project_id",
)
