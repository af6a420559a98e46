"""The words for the codes Relais stores: document types, delivery statuses and rules, and the
FMH specialties. One list each, for every page (Mes documents, Mes patients, the staff).

A foundation (floor 0): it imports no model and no service, so that pages of every floor can use
it. Services have no map: the DPI's service codes are words already and are shown as sent.
The status and rule maps are keyed by the API's strings (``app.dispatch.policy``'s ``Status``
and ``Rule`` values); ``tests/test_labels.py`` checks that each one has its words, so that no
status reaches a page as a bare code.
"""

from __future__ import annotations

from flask_babel import LazyString
from flask_babel import lazy_gettext as _l

#: The document types the DPI sends (its ``type`` codes: the DPI API v1 example, the demo and
#: the benchmark's letters). The API takes any short code: an unknown one is shown as sent.
DOCUMENT_TYPES: dict[str, LazyString] = {
    "discharge_letter": _l("Lettre de sortie"),
    "consultation_report": _l("Rapport de consultation"),
    "operative_report": _l("Protocole opératoire"),
    "imaging_report": _l("Compte rendu d'imagerie"),
    "lab_report": _l("Résultats de laboratoire"),
    "referral_letter": _l("Lettre d'adressage"),
    "emergency_report": _l("Rapport des urgences"),
}


def type_label(code: str) -> str:
    """A document type in words, in the current language (the code itself when unknown)."""
    label = DOCUMENT_TYPES.get(code)
    return str(label) if label is not None else code


#: A delivery's status in words (the API's ``status`` strings).
STATUS_LABELS: dict[str, LazyString] = {
    "held": _l("Retenu"),
    "delivered": _l("Remis"),
    "read": _l("Lu"),
    "blocked": _l("Bloqué"),
    "cancelled": _l("Annulé"),
    "retracted": _l("Retiré"),
}

#: The rule that decided a delivery, in words (the API's ``rule`` strings).
RULE_LABELS: dict[str, LazyString] = {
    "unsigned": _l("Document non signé dans le DPI"),
    "recipient_unknown": _l("Aucun médecin avec ce GLN dans Relais"),
    "recipient_inactive": _l("Compte du médecin non activé ou désactivé"),
    "patient_deceased": _l("Patient décédé"),
    "no_consent": _l("Pas de consentement à l'envoi électronique à ce médecin"),
    "third_party_data": _l("Données de tiers : jamais envoyé électroniquement"),
    "excluded_category": _l("Catégorie jamais envoyée électroniquement"),
    "excluded_service": _l("Service jamais envoyé électroniquement"),
    "sensitive_delay": _l("Document sensible : délai avant l'envoi"),
    "ok": _l("Toutes les règles respectées"),
    "retracted": _l("Retiré par l'hôpital"),
}

#: The controlled list of specialties: Swiss FMH specialist titles (Facharzttitel). The codes
#: are stable identifiers (stored, and exposed by the directory API).
SPECIALTIES: dict[str, LazyString] = {
    "allergologie_immunologie_clinique": _l("Allergologie et immunologie clinique"),
    "anesthesiologie": _l("Anesthésiologie"),
    "angiologie": _l("Angiologie"),
    "cardiologie": _l("Cardiologie"),
    "chirurgie": _l("Chirurgie"),
    "chirurgie_cardiaque_vasculaire_thoracique": _l("Chirurgie cardiaque et vasculaire thoracique"),
    "chirurgie_orthopedique_traumatologie": _l(
        "Chirurgie orthopédique et traumatologie de l'appareil locomoteur"),
    "chirurgie_pediatrique": _l("Chirurgie pédiatrique"),
    "chirurgie_plastique_reconstructive_esthetique": _l(
        "Chirurgie plastique, reconstructive et esthétique"),
    "chirurgie_thoracique": _l("Chirurgie thoracique"),
    "chirurgie_vasculaire": _l("Chirurgie vasculaire"),
    "dermatologie_venereologie": _l("Dermatologie et vénéréologie"),
    "endocrinologie_diabetologie": _l("Endocrinologie et diabétologie"),
    "gastroenterologie": _l("Gastroentérologie"),
    "genetique_medicale": _l("Génétique médicale"),
    "gynecologie_obstetrique": _l("Gynécologie et obstétrique"),
    "hematologie": _l("Hématologie"),
    "infectiologie": _l("Infectiologie"),
    "medecine_intensive": _l("Médecine intensive"),
    "medecine_interne_generale": _l("Médecine interne générale"),
    "medecine_nucleaire": _l("Médecine nucléaire"),
    "medecine_physique_readaptation": _l("Médecine physique et réadaptation"),
    "medecine_tropicale_voyages": _l("Médecine tropicale et médecine des voyages"),
    "medecine_du_travail": _l("Médecine du travail"),
    "nephrologie": _l("Néphrologie"),
    "neurochirurgie": _l("Neurochirurgie"),
    "neurologie": _l("Neurologie"),
    "oncologie_medicale": _l("Oncologie médicale"),
    "ophtalmologie": _l("Ophtalmologie"),
    "oto_rhino_laryngologie": _l("Oto-rhino-laryngologie"),
    "pediatrie": _l("Pédiatrie"),
    "pneumologie": _l("Pneumologie"),
    "prevention_sante_publique": _l("Prévention et santé publique"),
    "psychiatrie_psychotherapie": _l("Psychiatrie et psychothérapie"),
    "psychiatrie_psychotherapie_enfants_adolescents": _l(
        "Psychiatrie et psychothérapie d'enfants et d'adolescents"),
    "radio_oncologie": _l("Radio-oncologie / radiothérapie"),
    "radiologie": _l("Radiologie"),
    "rhumatologie": _l("Rhumatologie"),
    "urologie": _l("Urologie"),
}


def specialty_label(code: str) -> str:
    """A specialty in the current language (the code itself when unknown)."""
    value = SPECIALTIES.get(code)
    return str(value) if value is not None else code
