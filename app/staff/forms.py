"""The form every one-button action of the staff pages uses (reset, unlock, deactivate, a
handling by post, a revocation, an approval, an admin action ...): the CSRF token alone, which
the global ``CSRFProtect`` verifies before the view runs. The pages' other forms live beside
their views (``app/staff/desk/forms.py``, ``app/staff/patients/forms.py``,
``app/staff/worklist_forms.py``)."""

from __future__ import annotations

from app.web.forms import PostForm


class ButtonForm(PostForm):
    """A POST of one button: no field but the CSRF token."""
