"""Clients of the DPI API (the hospital record system), their bearer tokens and their scopes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.scopes import Scope


class ApiClient(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    #: Public part of the token, used to find the client before the constant-time comparison.
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    #: SHA-256 of the whole token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    scope_links: Mapped[list[ApiClientScope]] = relationship(
        cascade="all, delete-orphan", order_by="ApiClientScope.scope"
    )

    @property
    def scopes(self) -> frozenset[str]:
        """What this client may do (``app/scopes.py``); nothing unless given."""
        return frozenset(link.scope for link in self.scope_links)

    def holds(self, scope: Scope) -> bool:
        return scope.value in self.scopes


class ApiClientScope(db.Model):  # type: ignore[name-defined,misc]
    """One scope of a client: a row each, so that the database itself knows every name."""

    __tablename__ = "api_client_scopes"
    __table_args__ = (
        CheckConstraint(
            "scope IN (" + ", ".join(f"'{s.value}'" for s in Scope) + ")", name="scope"
        ),
    )

    api_client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
