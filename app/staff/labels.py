"""A delivery's status and the rule that decided it, in words: one list for every staff page."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

from app.dispatch.policy import Rule, Status

STATUS_LABELS: dict[str, Any] = {
    Status.HELD.value: _l("Retenu"),
    Status.DELIVERED.value: _l("Remis"),
    Status.READ.value: _l("Lu"),
    Status.BLOCKED.value: _l("Bloqué"),
    Status.CANCELLED.value: _l("Annulé"),
    Status.RETRACTED.value: _l("Retiré"),
}
assert set(STATUS_LABELS) == {status.value for status in Status}  # noqa: S101 - all in words

#: The API's ``rule`` codes.
RULE_LABELS: dict[str, Any] = {
    Rule.UNSIGNED.value: _l("Document non signé dans le DPI"),
    Rule.RECIPIENT_UNKNOWN.value: _l("Aucun médecin avec ce GLN dans Relais"),
    Rule.RECIPIENT_INACTIVE.value: _l("Compte du médecin non activé ou désactivé"),
    Rule.PATIENT_DECEASED.value: _l("Patient décédé"),
    Rule.NO_CONSENT.value: _l("Pas de consentement à l'envoi électronique à ce médecin"),
    Rule.THIRD_PARTY_DATA.value: _l("Données de tiers : jamais envoyé électroniquement"),
    Rule.EXCLUDED_CATEGORY.value: _l("Catégorie jamais envoyée électroniquement"),
    Rule.EXCLUDED_SERVICE.value: _l("Service jamais envoyé électroniquement"),
    Rule.SENSITIVE_DELAY.value: _l("Document sensible : délai avant l'envoi"),
    Rule.OK.value: _l("Toutes les règles respectées"),
    Rule.RETRACTED.value: _l("Retiré par l'hôpital"),
}
assert set(RULE_LABELS) == {rule.value for rule in Rule}  # noqa: S101 - every rule in words

