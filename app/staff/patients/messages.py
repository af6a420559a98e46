"""The labels and field messages of the staff's patient pages (French; English in the
catalog)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from app.dispatch.policy import ConsentRequirement

REQUIREMENT_LABELS = {
    ConsentRequirement.REPRESENTATIVE: _l(
        "Patient de moins de 12 ans : le consentement est donné par un représentant (parent, "
        "tuteur)."),
    ConsentRequirement.REPRESENTATIVE_WITH_AGREEMENT: _l(
        "Patient de 12 à 15 ans : le consentement est donné par un représentant, avec l'accord "
        "signé du jeune."),
    ConsentRequirement.PATIENT_OR_REPRESENTATIVE: _l(
        "Patient de 16 ans ou plus : le patient consent lui-même, ou un représentant (un proche "
        "qu'il a choisi, un tuteur)."),
}
GIVEN_BY_LABELS = {
    "patient": _l("Le patient"),
    "representative": _l("Un représentant"),
}

MESSAGES = {
    "required": _l("Ce champ est obligatoire."),
    "text": _l("200 caractères au plus, sans caractères de contrôle."),
    "query": _l("100 caractères au plus, sans caractères de contrôle."),
    "date": _l("Saisissez une date au format AAAA-MM-JJ."),
    "not_a_date": _l("Cette date n'existe pas."),
    "future_birth": _l("La date de naissance est postérieure à aujourd'hui."),
    "birth_range": _l("La date de naissance doit se situer entre le 1er janvier 1880 et "
                      "aujourd'hui."),
    "dpi_id": _l("Identifiant DPI non valable : lettres, chiffres, points, tirets, deux-points "
                 "ou soulignés, 64 caractères au plus."),
    "gln": _l("Le GLN n'est pas valable : 13 chiffres, dont le dernier est la clé de "
              "contrôle GS1."),
    "electronic_sending": _l("Indiquez si l'envoi électronique est autorisé."),
    "given_by": _l("Indiquez qui donne le consentement : le patient ou un représentant."),
    "invalid": _l("Valeur non valable."),
    "duty": _l("Vous avez inscrit ce médecin au guichet ou modifié sa connexion : vous ne pouvez "
               "pas lui adresser les documents d'un patient. Demandez à un collègue "
               "d'enregistrer ce consentement."),
    # The minors' rule (policy.check_consent_giver), by the field it blames.
    "rule_under_12": _l("Un patient de moins de 12 ans ne peut pas consentir seul : un "
                        "représentant doit donner le consentement."),
    "rule_12_15": _l("Un patient de 12 à 15 ans ne peut pas consentir seul : un représentant "
                     "donne le consentement, avec l'accord signé du jeune."),
    "rule_agreement": _l("Un patient de 12 à 15 ans doit aussi signer son accord au "
                         "consentement du représentant."),
    "rule_representative": _l("Un consentement donné par un représentant doit nommer ce "
                              "représentant."),
}
