"""Collections: named sets of documents a user keeps to ask over, in the project's database.
A collection belongs to its owner ("" when accounts are off); a shared one is seen, and can be
asked over, by every user; only its owner renames, changes or deletes it. Documents stay in the
one library; a collection only names some of them (a deleted document drops out of it)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Boolean, Float, String, Text, delete, or_, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline.store import MetadataStore


class _Base(DeclarativeBase):
    pass


class CollectionRow(_Base):
    __tablename__ = "collections"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True, default="")
    name: Mapped[str] = mapped_column(String(120))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    doc_ids: Mapped[str] = mapped_column(Text)  # JSON list
    updated: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Collection:
    id: str
    owner: str
    name: str
    shared: bool
    doc_ids: tuple[str, ...]

    def label(self, me: str) -> str:
        whose = "" if self.owner == me else f" (shared by {self.owner or 'the library'})"
        mark = " · shared" if self.shared and self.owner == me else ""
        return f"{self.name}{whose}{mark}"


class NotYours(PermissionError):
    pass


class CollectionStore:
    def __init__(self, store: MetadataStore) -> None:
        self.engine = store.engine
        store.create_tables(_Base.metadata)

    def save(
        self, name: str, doc_ids: list[str], owner: str = "", shared: bool = False, cid: str | None = None
    ) -> Collection:
        """Create a collection, or (``cid``) change one of the owner's."""
        name = " ".join(name.split())[:120]
        if not name:
            raise ValueError("a collection needs a name")
        ids = sorted(set(doc_ids))
        with Session(self.engine) as s, s.begin():
            if cid is None:
                cid = str(uuid.uuid4())
                s.add(
                    CollectionRow(
                        id=cid,
                        owner=owner,
                        name=name,
                        shared=shared,
                        doc_ids=json.dumps(ids),
                        updated=time.time(),
                    )
                )
            else:
                row = s.get(CollectionRow, cid)
                if row is None or row.owner != owner:
                    raise NotYours(cid)
                row.name, row.shared, row.doc_ids, row.updated = name, shared, json.dumps(ids), time.time()
        return Collection(cid, owner, name, shared, tuple(ids))

    def visible(self, me: str = "", existing: set[str] | None = None) -> list[Collection]:
        """The user's own collections and those shared with everyone, by name; with
        ``existing``, documents no longer in the library are left out."""
        q = select(CollectionRow).where(or_(CollectionRow.owner == me, CollectionRow.shared.is_(True)))
        with Session(self.engine) as s:
            rows = s.scalars(q.order_by(CollectionRow.name)).all()
            out = []
            for r in rows:
                ids = tuple(d for d in json.loads(r.doc_ids) if existing is None or d in existing)
                out.append(Collection(r.id, r.owner, r.name, bool(r.shared), ids))
        return out

    def delete(self, cid: str, owner: str = "") -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(CollectionRow, cid)
            if row is None or row.owner != owner:
                raise NotYours(cid)
            s.execute(delete(CollectionRow).where(CollectionRow.id == cid))
