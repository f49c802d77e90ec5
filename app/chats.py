"""Saved chats, kept in the project's database beside the documents (SQLite or PostgreSQL).

A chat is a titled list of turns owned by a user ("" when logins are off). A turn is stored as
the JSON the front door gives it (the app's :mod:`app.ui.chat_json`), so the store never needs to
know an answer's shape. Every write is its own short transaction: two browser tabs, or two app
replicas on one PostgreSQL, can save turns to different chats at once, and a turn written is
never lost by a later one (each has its own row, numbered in the chat).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text, delete, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline.store import MetadataStore

TITLE_MAX = 120


class _Base(DeclarativeBase):
    pass


class ChatRow(_Base):
    __tablename__ = "chats"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True, default="")
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class ChatTurnRow(_Base):
    __tablename__ = "chat_turns"
    chat_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class ChatInfo:
    id: str
    owner: str
    title: str
    created: float
    updated: float
    turns: int


class ChatNotFound(LookupError):
    pass


def title_from(question: str) -> str:
    """A chat's first title: its first question on one line, cut at a word."""
    one = " ".join(question.split())
    if len(one) <= 60:
        return one or "New chat"
    cut = one[:60].rsplit(" ", 1)[0]
    return cut + "…"


class ChatStore:
    def __init__(self, store: MetadataStore) -> None:
        self.engine = store.engine
        store.create_tables(_Base.metadata)

    def create(self, title: str, owner: str = "") -> ChatInfo:
        now = time.time()
        info = ChatInfo(str(uuid.uuid4()), owner, _clean_title(title), now, now, 0)
        with Session(self.engine) as s, s.begin():
            s.add(ChatRow(id=info.id, owner=owner, title=info.title, created=now, updated=now))
        return info

    def list(self, owner: str = "") -> list[ChatInfo]:
        """The owner's chats, the most recently used first."""
        return self._infos(owner)

    def get(self, chat_id: str, owner: str = "") -> ChatInfo:
        found = self._infos(owner, chat_id)
        if not found:
            raise ChatNotFound(chat_id)
        return found[0]

    def _infos(self, owner: str, chat_id: str | None = None) -> list[ChatInfo]:
        """The owner's chats with their turn counts (only ``chat_id`` when given)."""
        counts = select(ChatTurnRow.chat_id, func.count().label("n")).group_by(ChatTurnRow.chat_id)
        mine = ChatRow.owner == owner
        if chat_id is not None:
            counts = counts.where(ChatTurnRow.chat_id == chat_id)
            mine = mine & (ChatRow.id == chat_id)
        n_turns = counts.subquery()
        q = (
            select(ChatRow, func.coalesce(n_turns.c.n, 0))
            .outerjoin(n_turns, n_turns.c.chat_id == ChatRow.id)
            .where(mine)
            .order_by(ChatRow.updated.desc())
        )
        with Session(self.engine) as s:
            return [_info(r, n) for r, n in s.execute(q).all()]

    def add_turn(self, chat_id: str, body: dict[str, Any], owner: str = "") -> int:
        """Append a turn; returns its number in the chat. Retries once when another writer took
        the same number at the same moment."""
        data = json.dumps(body, ensure_ascii=False)
        for attempt in range(5):
            try:
                with Session(self.engine) as s, s.begin():
                    chat = s.get(ChatRow, chat_id)
                    if chat is None or chat.owner != owner:
                        raise ChatNotFound(chat_id)
                    top = s.scalar(select(func.max(ChatTurnRow.seq)).where(ChatTurnRow.chat_id == chat_id))
                    seq = (top or 0) + 1
                    now = time.time()
                    s.add(ChatTurnRow(chat_id=chat_id, seq=seq, body=data, created=now))
                    chat.updated = now
                return seq
            except ChatNotFound:
                raise
            except Exception:  # a unique-key race with another writer: take the next number
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def turns(self, chat_id: str, owner: str = "") -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            chat = s.get(ChatRow, chat_id)
            if chat is None or chat.owner != owner:
                raise ChatNotFound(chat_id)
            rows = s.scalars(
                select(ChatTurnRow.body).where(ChatTurnRow.chat_id == chat_id).order_by(ChatTurnRow.seq)
            ).all()
        return [json.loads(b) for b in rows]

    def rename(self, chat_id: str, title: str, owner: str = "") -> None:
        with Session(self.engine) as s, s.begin():
            n = s.execute(
                update(ChatRow)
                .where(ChatRow.id == chat_id, ChatRow.owner == owner)
                .values(title=_clean_title(title))
            ).rowcount
        if not n:
            raise ChatNotFound(chat_id)

    def delete(self, chat_id: str, owner: str = "") -> None:
        with Session(self.engine) as s, s.begin():
            chat = s.get(ChatRow, chat_id)
            if chat is None or chat.owner != owner:
                raise ChatNotFound(chat_id)
            s.execute(delete(ChatTurnRow).where(ChatTurnRow.chat_id == chat_id))
            s.execute(delete(ChatRow).where(ChatRow.id == chat_id, ChatRow.owner == owner))


def _clean_title(title: str) -> str:
    one = " ".join(str(title).split())[:TITLE_MAX]
    return one or "New chat"


def _info(r: ChatRow, n: int) -> ChatInfo:
    return ChatInfo(r.id, r.owner, r.title, r.created, r.updated, int(n))
