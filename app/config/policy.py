"""The switches of the CARA publication principles, read once at start (``load_settings``) and
handed to the pure rules of ``app/dispatch/policy.py``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from app.states import Category


@dataclass(frozen=True)
class PolicyConfig:
    """The CARA publication principles, each switchable; defaults from the CARA seed.

    The fixed rules have no field here on purpose: that is what makes them impossible to
    configure away.
    """

    block_deceased: bool = True
    block_third_party_data: bool = True
    excluded_categories: frozenset[str] = frozenset({Category.FOLLOW_UP_NOTE.value})
    excluded_services: frozenset[str] = frozenset({"pedopsychiatrie"})
    sensitive_delay: bool = True
    outpatient_delay: timedelta = timedelta(days=7)
    inpatient_delay: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        # A negative delay would release a sensitive letter before it was even signed: refuse such a
        # configuration at start rather than publish early.
        for name in ("outpatient_delay", "inpatient_delay"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"{name} must not be negative")
