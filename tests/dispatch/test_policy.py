"""The dispatch and consent-giver rules, one table row per rule, in the order the API promises."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from app.config.policy import PolicyConfig
from app.dispatch.policy import (
    ConsentFacts,
    ConsentGiverError,
    ConsentRequirement,
    Decision,
    DocumentFacts,
    Facts,
    RecipientFacts,
    age_on,
    can_deliver,
    cancellation,
    check_consent_giver,
    consent_requirement,
    decide,
    decide_release,
)
from app.states import Category, DoctorState, Encounter, GivenBy, Rule, Status

ZURICH_WINTER = timezone(timedelta(hours=1))
SIGNED_AT = datetime(2026, 11, 20, 16, 5, tzinfo=ZURICH_WINTER)
#: Long after any default delay, so that only the rule under test can hold a letter back.
MUCH_LATER = SIGNED_AT + timedelta(days=30)
#: Shortly after signature: a sensitive letter is still within its delay.
SOON_AFTER = SIGNED_AT + timedelta(hours=1)

DEFAULTS = PolicyConfig()
ALL_SWITCHES_OFF = PolicyConfig(
    block_deceased=False,
    block_third_party_data=False,
    excluded_categories=frozenset(),
    excluded_services=frozenset(),
    sensitive_delay=False,
)

CONSENTED = ConsentFacts(electronic_sending=True, revoked=False)


def make_facts(
    *,
    signed_at: datetime | None = SIGNED_AT,
    encounter: Encounter = Encounter.OUTPATIENT,
    sensitive: bool = False,
    third_party_data: bool = False,
    category: str = Category.REPORT,
    service: str = "cardiologie",
    state: DoctorState | None = DoctorState.ACTIVE,
    deceased: bool = False,
    consent: ConsentFacts | None = CONSENTED,
) -> Facts:
    """Facts for a letter that every rule lets through, changed only where a test says so."""
    return Facts(
        document=DocumentFacts(
            signed_at=signed_at,
            encounter=encounter,
            sensitive=sensitive,
            third_party_data=third_party_data,
            category=category,
            service=service,
        ),
        recipient=RecipientFacts(state=state),
        patient_deceased=deceased,
        consent=consent,
    )


# --- Each rule alone decides ------------------------------------------------------------------

EACH_RULE_ALONE = [
    pytest.param(make_facts(signed_at=None), Status.BLOCKED, Rule.UNSIGNED, id="unsigned"),
    pytest.param(
        make_facts(state=None), Status.BLOCKED, Rule.RECIPIENT_UNKNOWN, id="recipient_unknown"
    ),
    pytest.param(
        make_facts(state=DoctorState.PENDING),
        Status.BLOCKED,
        Rule.RECIPIENT_INACTIVE,
        id="recipient_inactive-never_activated",
    ),
    pytest.param(
        make_facts(state=DoctorState.DEACTIVATED),
        Status.BLOCKED,
        Rule.RECIPIENT_INACTIVE,
        id="recipient_inactive-deactivated",
    ),
    pytest.param(
        make_facts(deceased=True), Status.BLOCKED, Rule.PATIENT_DECEASED, id="patient_deceased"
    ),
    pytest.param(
        make_facts(consent=None), Status.BLOCKED, Rule.NO_CONSENT, id="no_consent-never_given"
    ),
    pytest.param(
        make_facts(consent=ConsentFacts(electronic_sending=False, revoked=False)),
        Status.BLOCKED,
        Rule.NO_CONSENT,
        id="no_consent-electronic_sending_refused",
    ),
    pytest.param(
        make_facts(consent=ConsentFacts(electronic_sending=True, revoked=True)),
        Status.BLOCKED,
        Rule.NO_CONSENT,
        id="no_consent-revoked",
    ),
    pytest.param(
        make_facts(third_party_data=True),
        Status.BLOCKED,
        Rule.THIRD_PARTY_DATA,
        id="third_party_data",
    ),
    pytest.param(
        make_facts(category=Category.FOLLOW_UP_NOTE),
        Status.BLOCKED,
        Rule.EXCLUDED_CATEGORY,
        id="excluded_category-follow_up_note",
    ),
    pytest.param(
        make_facts(service="pedopsychiatrie"),
        Status.BLOCKED,
        Rule.EXCLUDED_SERVICE,
        id="excluded_service-pedopsychiatrie",
    ),
    pytest.param(
        make_facts(sensitive=True), Status.HELD, Rule.SENSITIVE_DELAY, id="sensitive_delay"
    ),
    pytest.param(make_facts(), Status.DELIVERED, Rule.OK, id="ok"),
]


@pytest.mark.parametrize(("facts", "status", "rule"), EACH_RULE_ALONE)
def test_each_rule_alone_decides(facts: Facts, status: Status, rule: Rule) -> None:
    decision = decide(facts, DEFAULTS, SOON_AFTER)

    assert (decision.status, decision.rule) == (status, rule)
    assert (decision.release_at is not None) == (status is Status.HELD)


@pytest.mark.parametrize(("facts", "status", "rule"), EACH_RULE_ALONE)
def test_reason_is_a_sentence_without_patient_data(
    facts: Facts, status: Status, rule: Rule
) -> None:
    reason = decide(facts, DEFAULTS, SOON_AFTER).reason

    assert reason[:1].isupper()
    assert reason.endswith(".")
    # The service and category would tell a reader what the patient is treated for.
    assert "pedopsychiatrie" not in reason.lower()
    assert "follow_up_note" not in reason


# --- Rules in combination: the first in contract order wins ----------------------------------


@pytest.mark.parametrize(
    ("facts", "rule"),
    [
        pytest.param(make_facts(signed_at=None, state=None), Rule.UNSIGNED, id="unsigned+unknown"),
        pytest.param(
            make_facts(state=None, consent=None), Rule.RECIPIENT_UNKNOWN, id="unknown+no_consent"
        ),
        pytest.param(
            make_facts(state=DoctorState.PENDING, deceased=True),
            Rule.RECIPIENT_INACTIVE,
            id="inactive+deceased",
        ),
        pytest.param(
            make_facts(deceased=True, consent=None), Rule.PATIENT_DECEASED, id="deceased+no_consent"
        ),
        pytest.param(
            make_facts(deceased=True, third_party_data=True),
            Rule.PATIENT_DECEASED,
            id="deceased+third_party",
        ),
        pytest.param(
            make_facts(consent=None, third_party_data=True),
            Rule.NO_CONSENT,
            id="no_consent+third_party",
        ),
        pytest.param(
            make_facts(third_party_data=True, category=Category.FOLLOW_UP_NOTE),
            Rule.THIRD_PARTY_DATA,
            id="third_party+follow_up_note",
        ),
        pytest.param(
            make_facts(category=Category.FOLLOW_UP_NOTE, service="pedopsychiatrie"),
            Rule.EXCLUDED_CATEGORY,
            id="follow_up_note+excluded_service",
        ),
        pytest.param(
            make_facts(service="pedopsychiatrie", sensitive=True),
            Rule.EXCLUDED_SERVICE,
            id="excluded_service+sensitive",
        ),
        pytest.param(
            make_facts(
                signed_at=None,
                state=None,
                deceased=True,
                consent=None,
                third_party_data=True,
                category=Category.FOLLOW_UP_NOTE,
                service="pedopsychiatrie",
                sensitive=True,
            ),
            Rule.UNSIGNED,
            id="everything_wrong",
        ),
    ],
)
def test_first_rule_in_order_decides(facts: Facts, rule: Rule) -> None:
    decision = decide(facts, DEFAULTS, SOON_AFTER)

    assert (decision.status, decision.rule, decision.release_at) == (Status.BLOCKED, rule, None)


# --- Switches: turning a CARA rule off lets the next rule (or ok) decide ----------------------


@pytest.mark.parametrize(
    ("config", "facts", "status", "rule"),
    [
        pytest.param(
            PolicyConfig(block_deceased=False),
            make_facts(deceased=True),
            Status.DELIVERED,
            Rule.OK,
            id="block_deceased_off-ok",
        ),
        pytest.param(
            PolicyConfig(block_deceased=False),
            make_facts(deceased=True, consent=None),
            Status.BLOCKED,
            Rule.NO_CONSENT,
            id="block_deceased_off-next_is_no_consent",
        ),
        pytest.param(
            PolicyConfig(block_third_party_data=False),
            make_facts(third_party_data=True),
            Status.DELIVERED,
            Rule.OK,
            id="block_third_party_data_off-ok",
        ),
        pytest.param(
            PolicyConfig(block_third_party_data=False),
            make_facts(third_party_data=True, category=Category.FOLLOW_UP_NOTE),
            Status.BLOCKED,
            Rule.EXCLUDED_CATEGORY,
            id="block_third_party_data_off-next_is_excluded_category",
        ),
        pytest.param(
            PolicyConfig(excluded_categories=frozenset()),
            make_facts(category=Category.FOLLOW_UP_NOTE),
            Status.DELIVERED,
            Rule.OK,
            id="no_excluded_categories-ok",
        ),
        pytest.param(
            PolicyConfig(excluded_categories=frozenset()),
            make_facts(category=Category.FOLLOW_UP_NOTE, service="pedopsychiatrie"),
            Status.BLOCKED,
            Rule.EXCLUDED_SERVICE,
            id="no_excluded_categories-next_is_excluded_service",
        ),
        pytest.param(
            PolicyConfig(excluded_services=frozenset()),
            make_facts(service="pedopsychiatrie"),
            Status.DELIVERED,
            Rule.OK,
            id="no_excluded_services-ok",
        ),
        pytest.param(
            PolicyConfig(excluded_services=frozenset()),
            make_facts(service="pedopsychiatrie", sensitive=True),
            Status.HELD,
            Rule.SENSITIVE_DELAY,
            id="no_excluded_services-next_is_sensitive_delay",
        ),
        pytest.param(
            PolicyConfig(sensitive_delay=False),
            make_facts(sensitive=True),
            Status.DELIVERED,
            Rule.OK,
            id="sensitive_delay_off-ok",
        ),
        pytest.param(
            ALL_SWITCHES_OFF,
            make_facts(
                deceased=True,
                third_party_data=True,
                category=Category.FOLLOW_UP_NOTE,
                service="pedopsychiatrie",
                sensitive=True,
            ),
            Status.DELIVERED,
            Rule.OK,
            id="all_switches_off-every_cara_fact-ok",
        ),
    ],
)
def test_switching_a_rule_off_lets_the_next_decide(
    config: PolicyConfig, facts: Facts, status: Status, rule: Rule
) -> None:
    decision = decide(facts, config, SOON_AFTER)

    assert (decision.status, decision.rule) == (status, rule)


def test_other_excluded_categories_and_services_can_be_configured() -> None:
    config = PolicyConfig(
        excluded_categories=frozenset({"genetic_counselling"}),
        excluded_services=frozenset({"oncologie"}),
    )

    assert (
        decide(make_facts(category="genetic_counselling"), config, SOON_AFTER).rule
        is Rule.EXCLUDED_CATEGORY
    )
    assert decide(make_facts(service="oncologie"), config, SOON_AFTER).rule is Rule.EXCLUDED_SERVICE
    # Replacing the lists replaces the defaults too.
    assert decide(make_facts(category=Category.FOLLOW_UP_NOTE), config, SOON_AFTER).rule is Rule.OK
    assert decide(make_facts(service="pedopsychiatrie"), config, SOON_AFTER).rule is Rule.OK


# --- The fixed rules cannot be configured away ------------------------------------------------

FIXED_RULE_FAILURES = [
    pytest.param(make_facts(signed_at=None), Rule.UNSIGNED, id="unsigned"),
    pytest.param(make_facts(state=None), Rule.RECIPIENT_UNKNOWN, id="recipient_unknown"),
    pytest.param(
        make_facts(state=DoctorState.PENDING), Rule.RECIPIENT_INACTIVE, id="recipient_pending"
    ),
    pytest.param(
        make_facts(state=DoctorState.DEACTIVATED),
        Rule.RECIPIENT_INACTIVE,
        id="recipient_deactivated",
    ),
    pytest.param(make_facts(consent=None), Rule.NO_CONSENT, id="no_consent-never_given"),
    pytest.param(
        make_facts(consent=ConsentFacts(electronic_sending=False, revoked=False)),
        Rule.NO_CONSENT,
        id="no_consent-refused",
    ),
    pytest.param(
        make_facts(consent=ConsentFacts(electronic_sending=True, revoked=True)),
        Rule.NO_CONSENT,
        id="no_consent-revoked",
    ),
]


@pytest.mark.parametrize(("facts", "rule"), FIXED_RULE_FAILURES)
def test_fixed_rules_block_with_every_switch_off(facts: Facts, rule: Rule) -> None:
    # Given every CARA switch off and a sensitive letter long past any delay
    facts = dataclasses.replace(facts, document=dataclasses.replace(facts.document, sensitive=True))

    # When it is decided at ingest and re-checked at release
    at_ingest = decide(facts, ALL_SWITCHES_OFF, MUCH_LATER)
    at_release = decide_release(facts, ALL_SWITCHES_OFF, MUCH_LATER)

    # Then the fixed rule still stops it
    assert (at_ingest.status, at_ingest.rule, at_ingest.release_at) == (Status.BLOCKED, rule, None)
    assert (at_release.status, at_release.rule) == (Status.CANCELLED, rule)
    assert not can_deliver(facts, ALL_SWITCHES_OFF)


def test_policy_config_has_no_switch_for_the_fixed_rules() -> None:
    # The fixed rules are safe because there is nothing to configure: adding a field here must be a
    # deliberate change to this test, not a quiet new way to publish without consent.
    fields = {field.name for field in dataclasses.fields(PolicyConfig)}

    assert fields == {
        "block_deceased",
        "block_third_party_data",
        "excluded_categories",
        "excluded_services",
        "sensitive_delay",
        "outpatient_delay",
        "inpatient_delay",
    }


def test_defaults_are_the_cara_seed() -> None:
    assert PolicyConfig() == PolicyConfig(
        block_deceased=True,
        block_third_party_data=True,
        excluded_categories=frozenset({"follow_up_note"}),
        excluded_services=frozenset({"pedopsychiatrie"}),
        sensitive_delay=True,
        outpatient_delay=timedelta(days=7),
        inpatient_delay=timedelta(hours=24),
    )


# --- Sensitive documents: held from signature, 7 days outpatient, 24 hours inpatient ----------


@pytest.mark.parametrize(
    ("encounter", "config", "delay"),
    [
        pytest.param(Encounter.OUTPATIENT, DEFAULTS, timedelta(days=7), id="outpatient-7_days"),
        pytest.param(Encounter.INPATIENT, DEFAULTS, timedelta(hours=24), id="inpatient-24_hours"),
        pytest.param(
            Encounter.OUTPATIENT,
            PolicyConfig(outpatient_delay=timedelta(days=3), inpatient_delay=timedelta(hours=2)),
            timedelta(days=3),
            id="outpatient-custom_3_days",
        ),
        pytest.param(
            Encounter.INPATIENT,
            PolicyConfig(outpatient_delay=timedelta(days=3), inpatient_delay=timedelta(hours=2)),
            timedelta(hours=2),
            id="inpatient-custom_2_hours",
        ),
    ],
)
@pytest.mark.parametrize(
    ("now_after_release", "status", "rule"),
    [
        pytest.param(
            -timedelta(seconds=1), Status.HELD, Rule.SENSITIVE_DELAY, id="a_second_before"
        ),
        pytest.param(timedelta(0), Status.DELIVERED, Rule.OK, id="exactly_at_release"),
        pytest.param(timedelta(days=2), Status.DELIVERED, Rule.OK, id="already_passed_at_ingest"),
    ],
)
def test_sensitive_document_delay(
    encounter: Encounter,
    config: PolicyConfig,
    delay: timedelta,
    now_after_release: timedelta,
    status: Status,
    rule: Rule,
) -> None:
    facts = make_facts(sensitive=True, encounter=encounter)
    release_at = SIGNED_AT + delay

    decision = decide(facts, config, release_at + now_after_release)

    assert (decision.status, decision.rule) == (status, rule)
    assert decision.release_at == (release_at if status is Status.HELD else None)


def test_held_at_ingest_right_after_signature() -> None:
    decision = decide(make_facts(sensitive=True), DEFAULTS, SOON_AFTER)

    assert decision.release_at == datetime(2026, 11, 27, 15, 5, tzinfo=UTC)
    assert "7 days" in decision.reason


def test_delay_compares_instants_not_wall_clocks() -> None:
    # Signed at 16:05 in Geneva (+01:00) is 15:05 UTC; 24 hours later is due, whatever offset the
    # caller's clock uses.
    facts = make_facts(sensitive=True, encounter=Encounter.INPATIENT)

    held = decide(facts, DEFAULTS, datetime(2026, 11, 21, 15, 4, 59, tzinfo=UTC))
    due = decide(
        facts, DEFAULTS, datetime(2026, 11, 21, 10, 5, tzinfo=timezone(timedelta(hours=-5)))
    )

    assert held.status is Status.HELD
    assert due.status is Status.DELIVERED


def test_zero_delay_delivers_at_once() -> None:
    config = PolicyConfig(outpatient_delay=timedelta(0))

    assert decide(make_facts(sensitive=True), config, SIGNED_AT).status is Status.DELIVERED


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="outpatient_delay"):
        PolicyConfig(outpatient_delay=timedelta(days=-1))
    with pytest.raises(ValueError, match="inpatient_delay"):
        PolicyConfig(inpatient_delay=-timedelta(seconds=1))


# --- Service codes match whatever their case and surrounding spaces --------------------------


@pytest.mark.parametrize(
    ("service", "excluded_services", "rule"),
    [
        pytest.param("pedopsychiatrie", {"pedopsychiatrie"}, Rule.EXCLUDED_SERVICE, id="exact"),
        pytest.param(
            "PEDOPSYCHIATRIE", {"pedopsychiatrie"}, Rule.EXCLUDED_SERVICE, id="upper_case"
        ),
        pytest.param(
            " PedoPsychiatrie\n", {"pedopsychiatrie"}, Rule.EXCLUDED_SERVICE, id="mixed_case_spaces"
        ),
        pytest.param(
            "oncologie", {" Oncologie "}, Rule.EXCLUDED_SERVICE, id="configured_with_spaces"
        ),
        pytest.param(
            "pedopsychiatrie-adulte", {"pedopsychiatrie"}, Rule.OK, id="other_service_not_prefix"
        ),
        pytest.param("psychiatrie", {"pedopsychiatrie"}, Rule.OK, id="other_service_not_suffix"),
    ],
)
def test_service_matching(service: str, excluded_services: set[str], rule: Rule) -> None:
    config = PolicyConfig(excluded_services=frozenset(excluded_services))

    assert decide(make_facts(service=service), config, SOON_AFTER).rule is rule


# --- Release of held letters: re-check everything but the delay ------------------------------


@pytest.mark.parametrize(
    ("facts", "config", "rule"),
    [
        pytest.param(
            make_facts(sensitive=True, consent=ConsentFacts(electronic_sending=True, revoked=True)),
            DEFAULTS,
            Rule.NO_CONSENT,
            id="consent_revoked",
        ),
        pytest.param(
            make_facts(
                sensitive=True, consent=ConsentFacts(electronic_sending=False, revoked=False)
            ),
            DEFAULTS,
            Rule.NO_CONSENT,
            id="electronic_sending_withdrawn",
        ),
        pytest.param(
            make_facts(sensitive=True, consent=None), DEFAULTS, Rule.NO_CONSENT, id="consent_gone"
        ),
        pytest.param(
            make_facts(sensitive=True, deceased=True),
            DEFAULTS,
            Rule.PATIENT_DECEASED,
            id="deceased",
        ),
        pytest.param(
            make_facts(sensitive=True, state=DoctorState.DEACTIVATED),
            DEFAULTS,
            Rule.RECIPIENT_INACTIVE,
            id="recipient_deactivated",
        ),
        pytest.param(
            make_facts(sensitive=True, state=None),
            DEFAULTS,
            Rule.RECIPIENT_UNKNOWN,
            id="recipient_gone",
        ),
        pytest.param(
            make_facts(sensitive=True, service="oncologie"),
            PolicyConfig(excluded_services=frozenset({"oncologie"})),
            Rule.EXCLUDED_SERVICE,
            id="service_excluded_meanwhile",
        ),
    ],
)
def test_release_cancels_with_the_failing_rule(
    facts: Facts, config: PolicyConfig, rule: Rule
) -> None:
    decision = decide_release(facts, config, MUCH_LATER)

    assert (decision.status, decision.rule, decision.release_at) == (Status.CANCELLED, rule, None)
    assert decision.reason.startswith("Cancelled at release")


@pytest.mark.parametrize(
    ("facts", "config"),
    [
        pytest.param(make_facts(sensitive=True), DEFAULTS, id="still_all_good"),
        pytest.param(
            make_facts(sensitive=True, deceased=True),
            PolicyConfig(block_deceased=False),
            id="deceased_with_switch_off",
        ),
    ],
)
def test_release_delivers_when_every_rule_still_holds(facts: Facts, config: PolicyConfig) -> None:
    decision = decide_release(facts, config, MUCH_LATER)

    assert (decision.status, decision.rule, decision.release_at) == (
        Status.DELIVERED,
        Rule.OK,
        None,
    )


def test_release_does_not_apply_the_delay_again() -> None:
    # The worker decides when the time has come; the re-check only looks at the rules.
    decision = decide_release(make_facts(sensitive=True), DEFAULTS, SIGNED_AT)

    assert decision.status is Status.DELIVERED


def test_a_held_letter_goes_through_its_life_cycle() -> None:
    # Given a sensitive outpatient letter pushed right after signature
    facts = make_facts(sensitive=True)
    held = decide(facts, DEFAULTS, SOON_AFTER)
    assert held.status is Status.HELD
    assert held.release_at is not None

    # When its time comes and the patient revoked consent meanwhile
    revoked = dataclasses.replace(
        facts, consent=ConsentFacts(electronic_sending=True, revoked=True)
    )
    released = decide_release(revoked, DEFAULTS, held.release_at)

    # Then it is cancelled, not delivered, and says why
    assert (released.status, released.rule) == (Status.CANCELLED, Rule.NO_CONSENT)


# --- Times must carry an offset ---------------------------------------------------------------

#: Naive on purpose: the policy must refuse it.
NAIVE = datetime(2026, 11, 20, 16, 5)


@pytest.mark.parametrize("check", [decide, decide_release], ids=["decide", "decide_release"])
@pytest.mark.parametrize(
    ("facts", "now", "name"),
    [
        pytest.param(make_facts(), NAIVE, "now", id="naive_now"),
        pytest.param(make_facts(signed_at=NAIVE), MUCH_LATER, "signed_at", id="naive_signed_at"),
        pytest.param(
            make_facts(state=None), NAIVE, "now", id="naive_now_even_when_an_early_rule_blocks"
        ),
    ],
)
def test_naive_datetimes_are_refused(
    check: Callable[[Facts, PolicyConfig, datetime], Decision],
    facts: Facts,
    now: datetime,
    name: str,
) -> None:
    with pytest.raises(ValueError, match=name):
        check(facts, DEFAULTS, now)


def test_decision_invariants() -> None:
    with pytest.raises(ValueError, match="release_at"):
        Decision(Status.HELD, Rule.SENSITIVE_DELAY, "Held.", None)
    with pytest.raises(ValueError, match="release_at"):
        Decision(Status.BLOCKED, Rule.NO_CONSENT, "Blocked.", MUCH_LATER)
    with pytest.raises(ValueError, match="release_at"):
        Decision(Status.HELD, Rule.SENSITIVE_DELAY, "Held.", NAIVE)


def test_can_deliver_ignores_the_delay() -> None:
    assert can_deliver(make_facts(sensitive=True), DEFAULTS)
    assert not can_deliver(make_facts(third_party_data=True), DEFAULTS)


# --- Minors: who may give consent, by age on the day it is recorded ---------------------------

BIRTH = date(2010, 6, 15)
DAY_BEFORE_12TH = date(2022, 6, 14)
ON_12TH = date(2022, 6, 15)
DAY_BEFORE_16TH = date(2026, 6, 14)
ON_16TH = date(2026, 6, 15)
AT_17 = date(2027, 9, 1)
ADULT_BIRTH = date(1986, 1, 2)
AT_40 = date(2026, 11, 20)
PATIENT = GivenBy.PATIENT
REP = GivenBy.REPRESENTATIVE
PARENT = "Jeanne Muster"
NAME = "representative_name"

# Born on 29 February: the birthday counts on 1 March in common years. 12 and 16 are multiples of
# 4, so only a century year (1900, 2100) makes the 12th or 16th birthday fall in a common year.
LEAP_BIRTH_12 = date(2088, 2, 29)
LEAP_BIRTH_16 = date(1884, 2, 29)


@pytest.mark.parametrize(
    ("birth_date", "recorded_on", "given_by", "minor_agreement", "representative_name", "field"),
    [
        # age 0, on the day of birth
        pytest.param(BIRTH, BIRTH, REP, False, PARENT, None, id="0-representative"),
        pytest.param(BIRTH, BIRTH, PATIENT, False, None, "given_by", id="0-patient"),
        # age 11, the day before the 12th birthday
        pytest.param(BIRTH, DAY_BEFORE_12TH, REP, False, PARENT, None, id="11-representative"),
        pytest.param(BIRTH, DAY_BEFORE_12TH, PATIENT, True, None, "given_by", id="11-patient"),
        # age 12, on the 12th birthday
        pytest.param(BIRTH, ON_12TH, REP, True, PARENT, None, id="12-representative+agreement"),
        pytest.param(
            BIRTH, ON_12TH, REP, False, PARENT, "minor_agreement", id="12-representative_alone"
        ),
        pytest.param(BIRTH, ON_12TH, PATIENT, True, None, "given_by", id="12-patient"),
        # age 15, the day before the 16th birthday
        pytest.param(
            BIRTH, DAY_BEFORE_16TH, REP, True, PARENT, None, id="15-representative+agreement"
        ),
        pytest.param(
            BIRTH,
            DAY_BEFORE_16TH,
            REP,
            False,
            PARENT,
            "minor_agreement",
            id="15-representative_alone",
        ),
        pytest.param(BIRTH, DAY_BEFORE_16TH, PATIENT, True, None, "given_by", id="15-patient"),
        # age 16, on the 16th birthday: decides as an adult does
        pytest.param(BIRTH, ON_16TH, PATIENT, False, None, None, id="16-patient"),
        pytest.param(BIRTH, ON_16TH, REP, False, PARENT, None, id="16-representative"),
        # age 17 and 40
        pytest.param(BIRTH, AT_17, PATIENT, False, None, None, id="17-patient"),
        pytest.param(ADULT_BIRTH, AT_40, PATIENT, False, None, None, id="40-patient"),
        pytest.param(ADULT_BIRTH, AT_40, REP, False, "Curateur X", None, id="40-guardian"),
        # a representative must be named, at any age
        pytest.param(ADULT_BIRTH, AT_40, REP, False, None, NAME, id="40-representative_unnamed"),
        pytest.param(ADULT_BIRTH, AT_40, REP, False, "  ", NAME, id="40-representative_blank"),
        pytest.param(BIRTH, BIRTH, REP, False, "", NAME, id="0-representative_empty"),
        pytest.param(BIRTH, ON_12TH, REP, True, "\t", NAME, id="12-representative_blank"),
        # born on 29 February
        pytest.param(
            LEAP_BIRTH_12, date(2100, 2, 28), REP, False, PARENT, None, id="leap-11_on_28_february"
        ),
        pytest.param(
            LEAP_BIRTH_12,
            date(2100, 3, 1),
            REP,
            False,
            PARENT,
            "minor_agreement",
            id="leap-12_on_1_march",
        ),
        pytest.param(
            LEAP_BIRTH_16,
            date(1900, 2, 28),
            PATIENT,
            False,
            None,
            "given_by",
            id="leap-15_on_28_feb",
        ),
        pytest.param(
            LEAP_BIRTH_16, date(1900, 3, 1), PATIENT, False, None, None, id="leap-16_on_1_mar"
        ),
        # impossible dates
        pytest.param(
            date(2026, 11, 21),
            date(2026, 11, 20),
            REP,
            False,
            PARENT,
            "patient.birth_date",
            id="born_after_recording",
        ),
    ],
)
def test_consent_giver(
    birth_date: date,
    recorded_on: date,
    given_by: GivenBy,
    minor_agreement: bool,
    representative_name: str | None,
    field: str | None,
) -> None:
    if field is None:
        check_consent_giver(birth_date, recorded_on, given_by, minor_agreement, representative_name)
        return
    with pytest.raises(ConsentGiverError) as raised:
        check_consent_giver(birth_date, recorded_on, given_by, minor_agreement, representative_name)
    assert raised.value.field == field
    assert raised.value.message == str(raised.value)
    assert raised.value.message.endswith(".")
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("birth_date", "day", "age"),
    [
        pytest.param(BIRTH, BIRTH, 0, id="day_of_birth"),
        pytest.param(BIRTH, DAY_BEFORE_12TH, 11, id="day_before_12th_birthday"),
        pytest.param(BIRTH, ON_12TH, 12, id="12th_birthday"),
        pytest.param(BIRTH, DAY_BEFORE_16TH, 15, id="day_before_16th_birthday"),
        pytest.param(BIRTH, ON_16TH, 16, id="16th_birthday"),
        pytest.param(ADULT_BIRTH, AT_40, 40, id="40"),
        pytest.param(date(2008, 2, 29), date(2020, 2, 29), 12, id="leap_born-leap_year_birthday"),
        pytest.param(date(2008, 2, 29), date(2021, 2, 28), 12, id="leap_born-28_feb_common_year"),
        pytest.param(date(2008, 2, 29), date(2021, 3, 1), 13, id="leap_born-1_march_common_year"),
        pytest.param(LEAP_BIRTH_12, date(2100, 2, 28), 11, id="leap_born-28_feb_century_year"),
        pytest.param(LEAP_BIRTH_12, date(2100, 3, 1), 12, id="leap_born-1_march_century_year"),
    ],
)
def test_age_on(birth_date: date, day: date, age: int) -> None:
    assert age_on(birth_date, day) == age


def test_age_on_refuses_a_future_birth() -> None:
    with pytest.raises(ValueError, match="birth_date"):
        age_on(date(2026, 11, 21), date(2026, 11, 20))


# --- what revocation and death do to held deliveries ------------------------------------------


@pytest.mark.parametrize(
    ("event", "config", "cancels"),
    [
        (Rule.NO_CONSENT, PolicyConfig(), True),
        # Revocation is a fixed rule: no switch keeps a held letter alive after it.
        (Rule.NO_CONSENT, PolicyConfig(block_deceased=False, sensitive_delay=False), True),
        (Rule.PATIENT_DECEASED, PolicyConfig(), True),
        # With the CARA death rule off, held letters stay held (and are re-checked at release).
        (Rule.PATIENT_DECEASED, PolicyConfig(block_deceased=False), False),
    ],
    ids=["revocation", "revocation-all-switches-off", "death", "death-rule-off"],
)
def test_cancellation_of_held_deliveries(event: Rule, config: PolicyConfig, cancels: bool) -> None:
    decision = cancellation(event, config)
    if not cancels:
        assert decision is None
        return
    assert decision is not None
    assert decision.status is Status.CANCELLED
    assert decision.rule is event
    assert decision.release_at is None
    assert decision.reason.startswith("Cancelled before release")


def test_only_revocation_and_death_cancel_held_deliveries() -> None:
    with pytest.raises(ValueError, match="third_party_data"):
        cancellation(Rule.THIRD_PARTY_DATA, PolicyConfig())


# --- who may consent, as staff are told before they record a consent ----------------------------

_RECORDED = date(2026, 11, 23)


@pytest.mark.parametrize(("birth_date", "requirement"), [
    (date(2026, 11, 23), ConsentRequirement.REPRESENTATIVE),  # born today
    (date(2014, 11, 24), ConsentRequirement.REPRESENTATIVE),  # 11, 12 tomorrow
    (date(2014, 11, 23), ConsentRequirement.REPRESENTATIVE_WITH_AGREEMENT),  # 12 today
    (date(2010, 11, 24), ConsentRequirement.REPRESENTATIVE_WITH_AGREEMENT),  # 15, 16 tomorrow
    (date(2010, 11, 23), ConsentRequirement.PATIENT_OR_REPRESENTATIVE),  # 16 today
    (date(1961, 4, 2), ConsentRequirement.PATIENT_OR_REPRESENTATIVE),
])
def test_consent_requirement_by_age(birth_date: date, requirement: ConsentRequirement) -> None:
    assert consent_requirement(birth_date, _RECORDED) is requirement


def test_consent_requirement_refuses_a_future_birth() -> None:
    with pytest.raises(ValueError):
        consent_requirement(date(2026, 11, 24), _RECORDED)


@pytest.mark.parametrize("birth_date", [date(2026, 1, 1) - timedelta(days=n)
                                        for n in range(0, 20 * 366, 97)])
@pytest.mark.parametrize("given_by", list(GivenBy))
@pytest.mark.parametrize("minor_agreement", [True, False])
def test_check_consent_giver_follows_the_requirement(
    birth_date: date, given_by: GivenBy, minor_agreement: bool
) -> None:
    """The thresholds live in consent_requirement: check_consent_giver accepts exactly what it
    allows (a representative always named here)."""
    day = date(2026, 1, 1)
    requirement = consent_requirement(birth_date, day)
    allowed = {
        ConsentRequirement.REPRESENTATIVE: given_by is GivenBy.REPRESENTATIVE,
        ConsentRequirement.REPRESENTATIVE_WITH_AGREEMENT: (
            given_by is GivenBy.REPRESENTATIVE and minor_agreement),
        ConsentRequirement.PATIENT_OR_REPRESENTATIVE: True,
    }[requirement]
    try:
        check_consent_giver(birth_date, day, given_by, minor_agreement, "Jean Dupont")
    except ConsentGiverError:
        assert not allowed
    else:
        assert allowed
