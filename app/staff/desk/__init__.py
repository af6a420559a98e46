"""The service desk (``/staff/desk``, role desk): find a doctor, enrol one in person for the SMS
sign-in mode, and reset, unlock, re-verify the mobile of, deactivate or reactivate an account.

Phone possession is checked the way PRODUCT.md describes: the desk sends a code to the number
the doctor gives, and types the code the doctor reads from the phone. Between the two steps the
entered data waits server-side (``app/staff/steps.py``: a row sealed with the key ring, bound to
this desk user); the session cookie holds only the row's random handle, and the code itself is
nowhere but in the SMS (its attempt is bound in the database to the number and to this desk
user).

A temporary password is shown once: the action stores it sealed in such a row, and the printable
page deletes the row as it shows it, so a reload, or a copy of the cookie, shows nothing.

A doctor who can already receive letters is not changed by one desk person: enrolling her,
resetting her password or giving her a new mobile becomes a request that a second desk person
approves (``app/staff/approvals.py``, pages in ``app/staff/desk_approvals.py``). And nobody sets
up the account of a doctor they directed letters to, or the reverse (``app/staff/duties.py``).

Every request is one transaction. Sending an SMS is a side effect, so it happens after the
commit that stored the code (a code that reached a phone always exists); when sending fails,
the code is deleted and the failure audited in a second, compensating transaction.

The package, one job a module:

- ``common``: the blueprint, the desk's messages and labels, and the helpers its pages share;
- ``credentials``: the shown-once sheet of a temporary password;
- ``phone_check``: a code sent to a mobile, checked, resent (enrolment and mobile change);
- ``pages``: the search and one doctor's page with its account actions;
- ``enrol``: enrolment in person, step 1 (the details) and step 2 (the code);
- ``mobile``: the change of a doctor's mobile, the same two steps;
- ``forms``: the desk's forms (Flask-WTF), their fields checked by ``app/staff/enrolment.py``.
"""

from __future__ import annotations

from app.staff.desk import credentials, enrol, mobile, pages  # noqa: F401 - registers the routes
from app.staff.desk.common import bp

__all__ = ["bp"]
