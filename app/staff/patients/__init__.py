"""Patients for hospital staff (/staff/patients): search, the patient page, consents.

Staff find a patient by name (and birth date) or by DPI id, read the consents and the
deliveries of the patient's letters (metadata and statuses, never content), record a consent
and revoke one. Recording and revoking go through app/dispatch/consent.py, the very code of the
DPI API's ``PUT`` and ``DELETE .../consents/<gln>``: the same validation (the body is built as
the API's JSON and read by :func:`parse_consent`), the same minors' rule, the same audit events.
The consent's ``recorded_by`` is always the signed-in staff login, and the patient's stored
identity is what is passed to the service, so a consent never rewrites a name.

Opening a patient page is an access to patient data and is audited (``patient.viewed``); a
search is audited with its result count only (no names in the trail).

The package: ``messages`` (the labels and field messages), ``queries`` (the search, the patient,
the consents and deliveries read), ``consents`` (a consent form checked as the API's body and
recorded through the service), ``forms`` (the consent, new-patient and revocation forms,
Flask-WTF), ``views`` (the pages).
"""

from __future__ import annotations

from app.staff.patients.views import bp

__all__ = ["bp"]
