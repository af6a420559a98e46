"""THE list of what an API client may do: the scopes of INTERFACES.md ("API client scopes").

A client holds a set of scopes, given when it is created (``api-client create NAME --scope
...``). Each call of the API names the scopes that allow it (``api_call`` in
``app/dispatch/api.py``); which documents a client reaches is the ownership rule of
``app/dispatch/documents.py`` (``reaches``). Adding a scope here needs a migration: the database
refuses names it does not know (``ck_api_client_scopes_scope``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Scope(StrEnum):
    #: Post documents (JSON API); retract the documents this client posted.
    DOCUMENTS_WRITE = "documents:write"
    #: Read the status of the documents this client posted.
    DOCUMENTS_READ = "documents:read"
    #: Read and retract any client's documents (and any document Relais stored itself).
    DOCUMENTS_ADMIN = "documents:admin"
    #: Put and delete consents.
    CONSENTS_WRITE = "consents:write"
    #: Record a death.
    PATIENTS_WRITE = "patients:write"
    #: The doctors directory.
    DOCTORS_READ = "doctors:read"
    #: The events feed (the whole audit trail).
    EVENTS_READ = "events:read"


#: Without ``--scope``: the DPI's set, every scope but ``documents:admin``. A DPI node that
#: posts a letter can follow and withdraw it; reaching another client's letters is a choice.
DEFAULT_SCOPES: frozenset[Scope] = frozenset(Scope) - {Scope.DOCUMENTS_ADMIN}


class UnknownScope(ValueError):
    def __init__(self, name: str) -> None:
        known = ", ".join(s.value for s in Scope)
        super().__init__(f"unknown scope {name!r}; the scopes are: {known}")
        self.name = name


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """The scopes named, exactly as written (no case folding, no splitting), or UnknownScope."""
    scopes = set()
    for name in names:
        try:
            scopes.add(Scope(name))
        except ValueError:
            raise UnknownScope(name) from None
    return frozenset(scopes)

