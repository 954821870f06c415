"""Tables of the knowledge-base domain: knowledge bases, their versions (a dataset version chunked and embedded
into one LanceDB table each), labels with their history; and `KB_VERSIONS`, the registry kernel over them.

A version row is written when its build is queued (`building`) and changes once more, when the build ends:
`ready` with its chunk count, or `failed` with the error. Its chunks live in the table `table_name` of the
knowledge-base store, never in the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow
from podium.core.registry import Registry

BUILDING = "building"
READY = "ready"
FAILED = "failed"


class KnowledgeBase(Base):
    """A named knowledge base owned by a project; what it holds lives in its versions."""

    __tablename__ = "knowledge_bases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # the dimension of its vectors, fixed by its first build: every version answers in one vector space shape
    dim: Mapped[int | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KbVersion(Base):
    """One build: the dataset version it read (`dataset_version_id`, and its reference when built), the text
    column, the chunker's settings, the embedding model and the dimension of its vectors, the chunks written
    (`row_count`), its status and error, and the LanceDB table holding its chunks. `config_hash` is the hash
    of what decides its content (dataset version, text field, chunker, embedding model)."""

    __tablename__ = "kb_versions"
    __table_args__ = (
        UniqueConstraint("kb_id", "version", name="uq_kb_version"),
        Index("ix_kb_versions_hash", "kb_id", "config_hash"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id"), index=True)
    version: Mapped[int] = mapped_column()
    config_hash: Mapped[str] = mapped_column(String(64))
    dataset_version_id: Mapped[str] = mapped_column(String(40))
    dataset_ref: Mapped[str] = mapped_column(String(200))  # `name@number`, as it was when built
    text_field: Mapped[str] = mapped_column(String(200))
    chunker: Mapped[dict[str, Any]] = mapped_column(default=dict)
    embedding_model: Mapped[str] = mapped_column(String(200))
    # the model the embedding route answered with when the build was checked (a route may change models)
    embedding_version: Mapped[str | None] = mapped_column(String(200), default=None)
    dim: Mapped[int | None] = mapped_column(default=None)  # known once the first chunks are embedded
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)  # chunks
    doc_count: Mapped[int] = mapped_column(BigInteger, default=0)  # dataset rows read
    reused: Mapped[int] = mapped_column(
        BigInteger, default=0
    )  # chunks not embedded again: stored by an earlier build or repeated
    status: Mapped[str] = mapped_column(String(20), default=BUILDING)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    table_name: Mapped[str] = mapped_column(String(128))
    job_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class KbLabel(Base):
    """A movable name (`prod`, `canary`) pointing at one ready version of a knowledge base."""

    __tablename__ = "kb_labels"

    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id"), primary_key=True)
    label: Mapped[str] = mapped_column(String(60), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("kb_versions.id"))
    updated_by: Mapped[str] = mapped_column(String(140))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class KbLabelMove(Base):
    """History: who moved which label from which version to which, and when."""

    __tablename__ = "kb_label_history"
    __table_args__ = (Index("ix_kb_label_history", "kb_id", "label", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id"))
    label: Mapped[str] = mapped_column(String(60))
    from_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    to_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    actor: Mapped[str] = mapped_column(String(140))
    at: Mapped[datetime] = mapped_column(default=utcnow)


KB_VERSIONS: Registry[KnowledgeBase, KbVersion] = Registry(
    kind="knowledge base",
    entity=KnowledgeBase,
    version=KbVersion,
    label=KbLabel,
    move=KbLabelMove,
    entity_fk="kb_id",
    label_column="label",
    word="label",
    hash_column="config_hash",
    version_prefix="kbv",
    move_prefix="klm",
    project_column="project_id",
)
