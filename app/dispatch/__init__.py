"""The DPI's documents: the policy, the operations on documents, consents and deliveries, the API.

Every operation takes the acting party as an argument, works in the caller's transaction and
flushes; the caller (a view, a CLI command, the worker) commits once. Data changes come before
audit events inside an operation, so that row locks are always taken before the audit head's
lock and concurrent operations cannot deadlock on it.
"""
