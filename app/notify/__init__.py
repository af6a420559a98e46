"""Email notifications: the outbox written with each arrival, digests, and the SMTP sender.

Emails carry no patient data at all (the channel is not secure, the portal is): a count and a
link to the portal only.
"""

from app.notify.outbox import note_arrivals, queue_email, send_due

__all__ = ["note_arrivals", "queue_email", "send_due"]
