"""The controlled list of specialties: Swiss FMH specialist titles (Facharzttitel), French labels.

Codes are stable identifiers (they are stored and exposed by the directory API); labels are
French first and translated like every other text.
"""

from __future__ import annotations

from flask_babel import LazyString
from flask_babel import lazy_gettext as _l

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


def label(code: str) -> str:
    """The label of a code in the current language (the code itself when unknown)."""
    value = SPECIALTIES.get(code)
    return str(value) if value is not None else code
