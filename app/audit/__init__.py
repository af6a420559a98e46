"""The hash-chained audit trail: record, verify, and read as a feed."""

from app.audit.trail import CLI, SYSTEM, Actor, ChainBreak, Entry, record, record_all, verify

__all__ = ["CLI", "SYSTEM", "Actor", "ChainBreak", "Entry", "record", "record_all", "verify"]
