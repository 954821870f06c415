"""Tables of the datasets domain: datasets, their immutable versions (rows as a Parquet blob in the artifact
store), labels with their history; and `DATASETS`, the registry kernel over them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow
from podium.core.registry import Registry


class Dataset(Base):
    """A named dataset owned by a project; its rows live in its versions."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetVersion(Base):
    """One immutable version: a Parquet file (`blob`, its sha256 also the `content_hash`), its schema, row
    count and statistics, the versions it was made from (`parents`) and how (`lineage`: the import or the
    steps, each with its configuration and report). Its id derives from the content hash."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_dataset_version"),
        Index("ix_dataset_versions_hash", "dataset_id", "content_hash"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    blob: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[Any]] = mapped_column(default=list)  # [{"name", "type"}]
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parents: Mapped[list[Any]] = mapped_column(default=list)  # version ids
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetLabel(Base):
    """A movable name (`golden`, `train-v3`) pointing at one version of a dataset."""

    __tablename__ = "dataset_labels"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    label: Mapped[str] = mapped_column(String(60), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"))
    updated_by: Mapped[str] = mapped_column(String(140))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetLabelMove(Base):
    """History: who moved which label from which version to which, and when."""

    __tablename__ = "dataset_label_history"
    __table_args__ = (Index("ix_dataset_label_history", "dataset_id", "label", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    label: Mapped[str] = mapped_column(String(60))
    from_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    to_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    actor: Mapped[str] = mapped_column(String(140))
    at: Mapped[datetime] = mapped_column(default=utcnow)


DATASETS: Registry[Dataset, DatasetVersion] = Registry(
    kind="dataset",
    entity=Dataset,
    version=DatasetVersion,
    label=DatasetLabel,
    move=DatasetLabelMove,
    entity_fk="dataset_id",
    label_column="label",
    word="label",
    hash_column="content_hash",
    version_prefix="dsv",
    move_prefix="dlm",
    project_column="project_id",
)
