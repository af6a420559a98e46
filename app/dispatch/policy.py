"""Dispatch policy: may this signed document go to this doctor, now or later?

This module is the single place where the publication rules live (PRODUCT.md, "The rules that must
always hold", and the DPI API v1 contract in INTERFACES.md). It is deliberately pure: no Flask,
no database, no clock. The dispatch operations gather the facts (``app/dispatch/facts.py``), read
the clock once and pass ``now``, then store the returned decision together with the rule that made
it. Keeping the rules pure lets the API, the release worker, the staff pages and the property tests
all ask the very same question.

Rule order is part of the API contract: the first rule that applies decides and is the one recorded.

Three kinds of rule:

* fixed rules (``unsigned``, ``recipient_unknown``, ``recipient_inactive``, ``no_consent``) come
  from the myHUG terms of use; they have no switch in :class:`PolicyConfig` so no configuration can
  turn them off;
* CARA publication principles (``patient_deceased``, ``third_party_data``, ``excluded_category``,
  ``excluded_service``, ``sensitive_delay``) are each switchable, defaults as in the CARA seed;
* the consent-giver rule for minors (:func:`check_consent_giver`), applied when a consent is
  recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from app.config.policy import PolicyConfig
from app.states import DoctorState, Encounter, GivenBy, Rule, Status

__all__ = [
    "ConsentFacts",
    "ConsentGiverError",
    "ConsentRequirement",
    "Decision",
    "DocumentFacts",
    "Facts",
    "RecipientFacts",
    "age_on",
    "can_deliver",
    "cancellation",
    "check_consent_giver",
    "consent_requirement",
    "decide",
    "decide_release",
]


@dataclass(frozen=True)
class DocumentFacts:
    signed_at: datetime | None
    encounter: Encounter
    sensitive: bool
    third_party_data: bool
    category: str
    service: str


@dataclass(frozen=True)
class RecipientFacts:
    #: ``None`` when no doctor with that GLN is known to Relais.
    state: DoctorState | None


@dataclass(frozen=True)
class ConsentFacts:
    """The patient's consent for this doctor. Only treating-doctor consents are passed, so the
    designation as treating doctor is implied by the presence of this object."""

    electronic_sending: bool
    revoked: bool


@dataclass(frozen=True)
class Facts:
    document: DocumentFacts
    recipient: RecipientFacts
    patient_deceased: bool
    #: ``None`` when the patient never designated this doctor as treating doctor.
    consent: ConsentFacts | None


@dataclass(frozen=True)
class Decision:
    status: Status
    rule: Rule
    #: Short English sentence for staff; never carries patient data.
    reason: str
    #: Only a held delivery has a release time.
    release_at: datetime | None

    def __post_init__(self) -> None:
        # The service stores decisions as they are; an inconsistent one (a held letter without a
        # release time would never be released) must fail loudly here instead.
        if (self.status == Status.HELD) != (self.release_at is not None):
            raise ValueError("release_at is required for a held delivery and only for it")
        if self.release_at is not None:
            _require_aware(self.release_at, "release_at")


# Staff read these on the delivery and on the worklist of undelivered letters. They say which
# rule applied and nothing about the patient (no service, no category, no names): the same text
# may end up in less protected places such as the audit feed.
_REASONS: dict[Rule, str] = {
    Rule.UNSIGNED: "Document is not signed in the DPI; only signed documents are published.",
    Rule.RECIPIENT_UNKNOWN: "No doctor with this GLN is known to Relais.",
    Rule.RECIPIENT_INACTIVE: "The doctor's account is not activated or has been deactivated.",
    Rule.PATIENT_DECEASED: "The patient has died; publication is blocked.",
    Rule.NO_CONSENT: "Patient has not consented to electronic sending to this doctor.",
    Rule.THIRD_PARTY_DATA: "Document contains third-party data and is never sent electronically.",
    Rule.EXCLUDED_CATEGORY: "Documents of this category are never sent electronically.",
    Rule.EXCLUDED_SERVICE: "Documents from this service are never sent electronically.",
    Rule.OK: "All dispatch rules passed; delivered to the doctor's inbox.",
}


def _require_aware(value: datetime, name: str) -> None:
    # A naive time is ambiguous (UTC? Europe/Zurich?) and comparing it with an aware one raises deep
    # inside the comparison; reject it at the door with a clear message instead.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _check_times(facts: Facts, now: datetime) -> None:
    # Checked up front, whatever rule ends up deciding, so a bad caller is caught on every path
    # and not only on documents that happen to reach the delay rule.
    _require_aware(now, "now")
    if facts.document.signed_at is not None:
        _require_aware(facts.document.signed_at, "signed_at")


def _normalise_service(service: str) -> str:
    # Service codes are typed by people in the DPI and in configuration: " PedoPsychiatrie" must
    # still match "pedopsychiatrie", or a never-send rule would silently leak.
    return service.strip().casefold()


def _first_failing_rule(facts: Facts, config: PolicyConfig) -> Rule | None:
    """Rules 0-7, in contract order; the first that applies, or ``None`` if the letter may go."""
    document = facts.document
    if document.signed_at is None:
        return Rule.UNSIGNED
    if facts.recipient.state is None:
        return Rule.RECIPIENT_UNKNOWN
    # Fail closed: anything but an explicitly active account (pending, deactivated, or a state added
    # later) does not receive letters.
    if facts.recipient.state != DoctorState.ACTIVE:
        return Rule.RECIPIENT_INACTIVE
    if config.block_deceased and facts.patient_deceased:
        return Rule.PATIENT_DECEASED
    consent = facts.consent
    if consent is None or not consent.electronic_sending or consent.revoked:
        return Rule.NO_CONSENT
    if config.block_third_party_data and document.third_party_data:
        return Rule.THIRD_PARTY_DATA
    if document.category in config.excluded_categories:
        return Rule.EXCLUDED_CATEGORY
    service = _normalise_service(document.service)
    if any(service == _normalise_service(excluded) for excluded in config.excluded_services):
        return Rule.EXCLUDED_SERVICE
    return None


def _delay_for(encounter: Encounter, config: PolicyConfig) -> timedelta:
    # Coerce so that a plain "inpatient" string from a caller still selects the right delay, and an
    # unknown encounter raises instead of quietly getting the outpatient delay.
    match Encounter(encounter):
        case Encounter.INPATIENT:
            return config.inpatient_delay
        case Encounter.OUTPATIENT:
            return config.outpatient_delay


def _describe(delay: timedelta) -> str:
    seconds = int(delay.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def can_deliver(facts: Facts, config: PolicyConfig) -> bool:
    """Whether rules 0-7 allow the letter at all (ignoring the sensitive-document delay)."""
    return _first_failing_rule(facts, config) is None


def decide(facts: Facts, config: PolicyConfig, now: datetime) -> Decision:
    """Decide a new delivery at ingest: blocked, held until a release time, or delivered now."""
    _check_times(facts, now)
    failing = _first_failing_rule(facts, config)
    if failing is not None:
        return Decision(Status.BLOCKED, failing, _REASONS[failing], None)

    signed_at = facts.document.signed_at
    # Unreachable (rule 0 blocked it), but an explicit raise narrows the type and, unlike an
    # assert, survives ``python -O``.
    if signed_at is None:  # pragma: no cover
        raise AssertionError("unsigned document passed the policy rules")
    if config.sensitive_delay and facts.document.sensitive:
        encounter = Encounter(facts.document.encounter)
        delay = _delay_for(encounter, config)
        release_at = signed_at + delay
        # The delay runs from signature, not from ingest: a letter the DPI pushes after its delay
        # is delivered at once, and at exactly release_at it is due (the release worker uses the
        # same <= comparison).
        if release_at > now:
            reason = (
                f"Sensitive document held for {_describe(delay)} after signature before release."
            )
            return Decision(Status.HELD, Rule.SENSITIVE_DELAY, reason, release_at)
        reason = "Sensitive document whose release delay had already passed; delivered at once."
        return Decision(Status.DELIVERED, Rule.OK, reason, None)
    return Decision(Status.DELIVERED, Rule.OK, _REASONS[Rule.OK], None)


def decide_release(facts: Facts, config: PolicyConfig, now: datetime) -> Decision:
    """Re-check a held delivery against the current facts when its release time has come.

    The delay is not applied again (the caller only asks once ``release_at <= now``), but every
    other rule is: consent may have been revoked, the patient may have died or the doctor may have
    been deactivated while the letter waited. ``now`` is taken for the same naive-time guard as
    :func:`decide` and so that both functions can be swapped at a call site.
    """
    _check_times(facts, now)
    failing = _first_failing_rule(facts, config)
    if failing is not None:
        reason = f"Cancelled at release: {_REASONS[failing]}"
        return Decision(Status.CANCELLED, failing, reason, None)
    reason = "Released after the sensitive-document delay; delivered."
    return Decision(Status.DELIVERED, Rule.OK, reason, None)


_CANCEL_REASONS = {
    Rule.NO_CONSENT: "Cancelled before release: consent to electronic sending was revoked.",
    Rule.PATIENT_DECEASED: "Cancelled before release: the patient has died.",
}


def cancellation(event: Rule, config: PolicyConfig) -> Decision | None:
    """What becomes of deliveries still held when consent is revoked or the patient dies.

    A revocation always cancels them (a fixed rule); a death does while the CARA rule
    ``block_deceased`` is on. ``None``: they stay held and are re-checked at release.
    """
    if event is Rule.NO_CONSENT or (event is Rule.PATIENT_DECEASED and config.block_deceased):
        return Decision(Status.CANCELLED, event, _CANCEL_REASONS[event], None)
    if event is Rule.PATIENT_DECEASED:
        return None
    raise ValueError(f"{event.value} is not an event that cancels held deliveries")


class ConsentGiverError(ValueError):
    """The consent was given by someone who may not give it alone; names the API field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def age_on(birth_date: date, day: date) -> int:
    """Age in completed years on ``day``.

    Comparing (month, day) tuples means someone born on 29 February reaches the new year of age on
    1 March in common years (28 February still sorts before 29 February), as Swiss civil practice
    counts it.
    """
    if birth_date > day:
        raise ValueError("birth_date is after the given day")
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - int(before_birthday)


# CARA seed, minors: under 12 the parents decide; from 12 to 16 the young person's signed agreement
# is also required; from 16 the young person decides as an adult does.
_AGE_WITH_AGREEMENT = 12
_AGE_OF_DISCERNMENT = 16


class ConsentRequirement(StrEnum):
    """Who may consent for a patient, by age (CARA seed, minors)."""

    #: Under 12: a representative (a parent, a guardian) consents.
    REPRESENTATIVE = "representative"
    #: From 12 to 15: a representative, with the young person's signed agreement.
    REPRESENTATIVE_WITH_AGREEMENT = "representative_with_agreement"
    #: From 16: the patient, or a representative (a relative the patient chose, a guardian).
    PATIENT_OR_REPRESENTATIVE = "patient_or_representative"


def consent_requirement(birth_date: date, day: date) -> ConsentRequirement:
    """The rule for who may consent for a patient born on ``birth_date``, on ``day``.

    Raises ``ValueError`` when ``birth_date`` is after ``day``.
    """
    age = age_on(birth_date, day)
    if age < _AGE_WITH_AGREEMENT:
        return ConsentRequirement.REPRESENTATIVE
    if age < _AGE_OF_DISCERNMENT:
        return ConsentRequirement.REPRESENTATIVE_WITH_AGREEMENT
    return ConsentRequirement.PATIENT_OR_REPRESENTATIVE


def check_consent_giver(
    birth_date: date,
    recorded_on: date,
    given_by: GivenBy,
    minor_agreement: bool,
    representative_name: str | None,
) -> None:
    """Raise :class:`ConsentGiverError` unless this person may give this consent on ``recorded_on``.

    The age is taken on the day the consent is recorded, not today: a consent validly given by a
    parent stays valid after the child's birthday.
    """
    if birth_date > recorded_on:
        raise ConsentGiverError(
            "patient.birth_date", "The birth date is after the day the consent is recorded."
        )
    requirement = consent_requirement(birth_date, recorded_on)
    by_representative = GivenBy(given_by) is GivenBy.REPRESENTATIVE

    if requirement is ConsentRequirement.REPRESENTATIVE and not by_representative:
        raise ConsentGiverError(
            "given_by",
            "A patient under 12 cannot consent alone; a representative must give the consent.",
        )
    if requirement is ConsentRequirement.REPRESENTATIVE_WITH_AGREEMENT:
        if not by_representative:
            raise ConsentGiverError(
                "given_by",
                "A patient from 12 to 15 cannot consent alone; a representative must give the "
                "consent with the young person's signed agreement.",
            )
        if minor_agreement is not True:
            raise ConsentGiverError(
                "minor_agreement",
                "A patient from 12 to 15 must also sign their agreement to the representative's "
                "consent.",
            )
    # Whoever the patient is, a representative's consent must say who gave it: the audit trail and
    # a later dispute need a name, not just the word "representative".
    if by_representative and (representative_name is None or not representative_name.strip()):
        raise ConsentGiverError(
            "representative_name",
            "A consent given by a representative must name the representative.",
        )
