"""The directory of recipient doctors: one search for the DPI API (``GET /api/v1/doctors``) and
for hospital staff choosing a recipient (``/staff/doctors``).

Both callers check their input with :func:`search_errors` (the API's field messages) and query
with :func:`find_doctors`, so staff see exactly the doctors the DPI sees. The service desk, which
looks for an account rather than a recipient (every word in the name, login or GLN), asks
:func:`find_doctors_by_words`, here beside it.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Doctor, DoctorSpecialty
from app.models.base import contains_pattern
from app.text import has_control

#: Longest search text (name, GLN or locality), specialty code and locality.
MAX_QUERY = 100
MAX_SPECIALTY = 64
MAX_LOCALITY = 100
#: Results given when the caller names no limit.
DEFAULT_LIMIT = 50



def search_errors(*fields: tuple[str, str, int]) -> list[dict[str, str]]:
    """One error per bad ``(name, value, longest)``: too long, or with control characters."""
    return [
        {"field": name, "message": f"must be at most {size} characters"}
        if len(value) > size
        else {"field": name, "message": "must not contain control characters"}
        for name, value, size in fields
        if len(value) > size or has_control(value)
    ]


def find_doctors(
    q: str, specialty: str, locality: str | None = None, limit: int = DEFAULT_LIMIT
) -> list[Doctor]:
    """Doctors whose family or given name, GLN or locality contains ``q`` (any case), with the
    specialty code ``specialty`` and whose locality contains ``locality`` (when given), ordered
    by name then GLN, at most ``limit``. Specialties and HIN identities are loaded with them
    (for ``specialties`` and ``sign_in_mode``) in two more queries, whatever the count."""
    query = select(Doctor).options(
        selectinload(Doctor.specialty_links), selectinload(Doctor.identities)
    )
    if q:
        like = contains_pattern(q)
        query = query.where(
            or_(
                Doctor.family_name.ilike(like, escape="\\"),
                Doctor.given_name.ilike(like, escape="\\"),
                Doctor.gln.like(like, escape="\\"),
                Doctor.locality.ilike(like, escape="\\"),
            )
        )
    if specialty:
        query = query.where(
            Doctor.id.in_(
                select(DoctorSpecialty.doctor_id).where(DoctorSpecialty.code == specialty)
            )
        )
    if locality:
        query = query.where(Doctor.locality.ilike(contains_pattern(locality), escape="\\"))
    return list(
        db.session.scalars(
            query.order_by(Doctor.family_name, Doctor.given_name, Doctor.gln).limit(limit)
        )
    )


def find_doctors_by_words(words: str, limit: int = DEFAULT_LIMIT) -> list[Doctor]:
    """The desk's shape of the same search: doctors whose family or given name, login or GLN
    contains every word of ``words`` (any case, the first five words), ordered by name then id,
    at most ``limit``. HIN identities are loaded with them (for ``sign_in_mode``)."""
    terms = words.lower().split()[:5]
    if not terms:
        return []
    query = select(Doctor).options(selectinload(Doctor.identities))
    for term in terms:
        like = contains_pattern(term)
        query = query.where(
            or_(
                Doctor.family_name.ilike(like, escape="\\"),
                Doctor.given_name.ilike(like, escape="\\"),
                Doctor.login.ilike(like, escape="\\"),
                Doctor.gln.like(like, escape="\\"),
            )
        )
    return list(
        db.session.scalars(
            query.order_by(Doctor.family_name, Doctor.given_name, Doctor.id).limit(limit)
        )
    )
