"""HIN sign-in (SAML service provider): the happy path, then every attack we know of.

Responses come from ``tests/support/saml_idp.py`` (lxml + xmlsec directly, not the dev IdP).
Each attack test names the defence that stops it through the audited reason or python3-saml's
error code, so that removing that defence makes the test fail rather than another one pass it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree
from sqlalchemy import select, update

from app.auth.saml_settings import write_dev_settings
from app.extensions import db
from app.models import AuditEvent, Doctor, HinIdentity
from app.models.auth import SamlAssertion, SamlRequest
from app.models.base import utcnow
from tests.conftest import audit_text, sibling_app
from tests.support.factories import make_doctor
from tests.support.production import safe_production_settings
from tests.support.saml_idp import (
    ACS_URL,
    DS,
    IDP_ENTITY_ID,
    IDP_SLO_URL,
    SAML,
    SAMLP,
    SLS_URL,
    SP_BASE,
    SP_ENTITY_ID,
    SUCCESS,
    Attack,
    assertion_element,
    assertion_of,
    authn_request_id,
    build,
    encode,
    evil_copy,
    keypair,
    logout_request_url,
    new_id,
    redirect_message,
    set_attribute,
)

FAILED = "La connexion par HIN a échoué"


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def saml_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SP settings written by our own settings writer, trusting the test IdP's certificate."""
    directory = tmp_path_factory.mktemp("saml") / "sp"
    _, cert = keypair("idp")
    written = write_dev_settings(str(directory), SP_BASE, {
        "entity_id": IDP_ENTITY_ID, "sso": "https://idp.hin.test/sso",
        "slo": "https://idp.hin.test/slo", "cert": cert,
    })
    assert written
    return str(directory)


@pytest.fixture()
def hin(app: Flask, saml_dir: str) -> Flask:
    app.config.update(SAML_SETTINGS_DIR=saml_dir, PUBLIC_BASE_URL=SP_BASE)
    return app


def start(client: FlaskClient, next_path: str | None = None) -> str:
    """The doctor clicks "Se connecter avec HIN": returns the AuthnRequest's ID."""
    query = {"next": next_path} if next_path is not None else None
    answer = client.get("/auth/hin/login", query_string=query)
    assert answer.status_code == 303, answer.data
    assert answer.headers["Location"].startswith("https://idp.hin.test/sso?")
    return authn_request_id(answer.headers["Location"])


def post(client: FlaskClient, response: Any, relay_state: str | None = None) -> Any:
    data = {"SAMLResponse": response if isinstance(response, str) else encode(response)}
    if relay_state is not None:
        data["RelayState"] = relay_state
    return client.post("/auth/hin/acs", data=data)


def rejections() -> list[dict[str, Any]]:
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "auth.hin_rejected").order_by(AuditEvent.id)
    ).all()
    return [dict(e.details) for e in events]


def signed_in_as(client: FlaskClient) -> str | None:
    with client.session_transaction() as session:
        value = session.get("_user_id")
    return str(value) if value else None


def assert_refused(answer: Any, reason: str, code: str | None = None, status: int = 400) -> None:
    assert answer.status_code == status
    assert FAILED in answer.get_data(as_text=True)
    last = rejections()[-1]
    assert last["reason"] == reason, last
    if code is not None:
        assert code in last.get("codes", []), last
    db.session.expire_all()
    assert db.session.scalars(select(HinIdentity)).all() == []


# --- the happy path ---------------------------------------------------------------------------


def test_a_valid_response_activates_the_pending_doctor_and_signs_in(
    hin: Flask, client: FlaskClient
) -> None:
    # Given a pending doctor (the DPI recorded a consent for them) who signs in with HIN
    doctor = make_doctor(state="pending")
    request_id = start(client, "/documents")

    # When HIN answers with a valid, signed response
    answer = post(client, build(Attack(in_response_to=request_id)))

    # Then the doctor is signed in, active, and their HIN identity is linked
    assert answer.status_code == 303, rejections()
    assert answer.headers["Location"] == "/documents"
    assert signed_in_as(client) == f"doctor:{doctor.id}:0"
    db.session.expire_all()
    doctor = db.session.get(Doctor, doctor.id)
    assert doctor.state == "active" and doctor.activated_at is not None
    [identity] = doctor.identities
    assert (identity.provider, identity.subject) == (IDP_ENTITY_ID, "hin-subject-0001")
    actions = [e.action for e in db.session.scalars(select(AuditEvent)).all()]
    assert actions == ["doctor.activated", "hin.identity_linked", "auth.signed_in"]
    page = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Se déconnecter" in page and "Claire Muller" in page
    # The request is spent and the assertion remembered.
    assert db.session.get(SamlRequest, request_id).used_at is not None
    assert len(db.session.scalars(select(SamlAssertion)).all()) == 1


def test_a_new_doctor_is_created_active(hin: Flask, client: FlaskClient) -> None:
    request_id = start(client)
    answer = post(client, build(Attack(in_response_to=request_id, attributes={
        "gln": "7601000000026", "givenName": "Luc", "surname": "Rochat",
        "email": "luc.rochat@example.ch"})))
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == "7601000000026"))
    assert doctor is not None
    assert (doctor.state, doctor.given_name, doctor.family_name, doctor.email) == (
        "active", "Luc", "Rochat", "luc.rochat@example.ch")
    assert doctor.activated_at is not None
    created = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "doctor.created"))
    assert created is not None and created.details == {"via": "hin", "state": "active"}


def test_later_sign_ins_find_the_doctor_by_identity(hin: Flask, client: FlaskClient) -> None:
    doctor = make_doctor()
    post(client, build(Attack(in_response_to=start(client))))
    other = hin.test_client()
    answer = post(other, build(Attack(in_response_to=start(other))))
    assert answer.status_code == 303
    assert signed_in_as(other) == f"doctor:{doctor.id}:0"
    assert len(db.session.scalars(select(HinIdentity)).all()) == 1


def test_no_personal_data_reaches_the_audit_trail(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    post(client, build(Attack(in_response_to=start(client))))
    tampered = build(Attack(in_response_to=start(client)))
    set_attribute(assertion_of(tampered), "surname", "Evil")
    post(client, tampered)
    text = audit_text()
    for secret in ("Claire", "Muller", "Evil", "claire.muller@example.ch", "hin-subject-0001"):
        assert secret not in text


# --- forged and tampered signatures -------------------------------------------------------


def test_a_forged_unsigned_response_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    forged = build(Attack(in_response_to=start(client), sign_assertion=False,
                          sign_response=False))
    assert_refused(post(client, forged), "invalid_response", "NO_SIGNED_ASSERTION")
    assert signed_in_as(client) is None


def test_an_unsigned_assertion_in_a_signed_response_is_refused(
    hin: Flask, client: FlaskClient
) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), sign_assertion=False))
    assert_refused(post(client, response), "invalid_response", "NO_SIGNED_ASSERTION")


def test_a_response_signed_with_another_key_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), key_name="attacker"))
    assert_refused(post(client, response), "invalid_response", "INVALID_SIGNATURE")


@pytest.mark.parametrize("sign_response", [True, False])
def test_a_signed_response_modified_afterwards_is_refused(
    hin: Flask, client: FlaskClient, sign_response: bool
) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), sign_response=sign_response))
    set_attribute(assertion_of(response), "gln", "7601000000026")
    assert_refused(post(client, response), "invalid_response", "INVALID_SIGNATURE")


def test_sha1_signatures_are_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), sha1=True))
    assert_refused(post(client, response), "invalid_response", "DEPRECATED_SIGNATURE_METHOD")


def test_a_response_signed_by_another_saml_implementation_is_accepted(
    hin: Flask, client: FlaskClient
) -> None:
    # Interoperability: signxml (pure Python) signs; python3-saml (xmlsec) verifies.
    from signxml import XMLSigner

    make_doctor()
    request_id = start(client)
    attack = Attack(in_response_to=request_id, sign_assertion=False, sign_response=False)
    assertion = assertion_element(attack)
    # signxml puts the signature where this placeholder stands (after Issuer, as SAML wants).
    placeholder = etree.Element(f"{{{DS}}}Signature", Id="placeholder")
    assertion.find(f"{{{SAML}}}Issuer").addnext(placeholder)
    key, cert = keypair("idp")
    signer = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    signed = signer.sign(assertion, key=key, cert=cert, reference_uri=assertion.get("ID"),
                         id_attribute="ID")
    response = build(Attack(in_response_to=request_id, sign_assertion=False,
                            sign_response=False))
    response.replace(assertion_of(response), signed)
    answer = post(client, response)
    assert answer.status_code == 303, rejections()
    assert signed_in_as(client) is not None


# --- XML signature wrapping ---------------------------------------------------------------


def _wrapped(client: FlaskClient, variant: str) -> Any:
    attack = Attack(in_response_to=start(client), sign_response=False)
    response = build(attack)
    signed = assertion_of(response)
    evil = evil_copy(signed)
    if variant == "evil_before":
        signed.addprevious(evil)
    elif variant == "evil_after":
        signed.addnext(evil)
    elif variant == "evil_wraps_signed":
        # The evil assertion takes the signed one's place and hides it inside itself.
        response.replace(signed, evil)
        evil.find(f"{{{SAML}}}Subject").append(signed)
    elif variant == "signed_in_extensions":
        # The signed assertion moves into Extensions; an evil one stands where it was.
        response.replace(signed, evil)
        extensions = etree.Element(f"{{{SAMLP}}}Extensions")
        response.find(f"{{{SAML}}}Issuer").addnext(extensions)
        extensions.append(signed)
    elif variant == "evil_same_id":
        # The evil copy takes the signed assertion's ID, the signed one hides after it.
        evil.set("ID", signed.get("ID"))
        signed.addprevious(evil)
    elif variant == "response_wraps_signed_response":
        # A fully signed genuine response hidden in a new, unsigned one.
        genuine = build(Attack(in_response_to=attack.in_response_to))
        outer = build(Attack(in_response_to=attack.in_response_to, sign_assertion=False,
                             sign_response=False))
        set_attribute(assertion_of(outer), "gln", "7601000000026")
        extensions = etree.Element(f"{{{SAMLP}}}Extensions")
        outer.find(f"{{{SAML}}}Issuer").addnext(extensions)
        extensions.append(genuine)
        return outer
    return response


@pytest.mark.parametrize("variant", [
    "evil_before", "evil_after", "evil_wraps_signed", "signed_in_extensions", "evil_same_id",
    "response_wraps_signed_response",
])
def test_signature_wrapping_is_refused(hin: Flask, client: FlaskClient, variant: str) -> None:
    make_doctor()
    make_doctor("7601000000026")
    answer = post(client, _wrapped(client, variant))
    assert_refused(answer, "invalid_response")
    assert signed_in_as(client) is None


# --- audience, destination, time --------------------------------------------------------------


def test_another_audience_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), audience="https://other-sp.example"))
    assert_refused(post(client, response), "invalid_response", "WRONG_AUDIENCE")


def test_another_destination_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client),
                            destination="https://other-sp.example/acs"))
    assert_refused(post(client, response), "invalid_response", "WRONG_DESTINATION")


# python3-saml accepts an assertion without AudienceRestriction, a Destination that only starts
# with the ACS URL (or none), and a Recipient that only contains it (or none). Each of these,
# signed by the IdP, is refused by our own exact checks (the reason names which).


def test_an_assertion_without_audience_restriction_is_refused(
    hin: Flask, client: FlaskClient
) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), audience=None))
    assert_refused(post(client, response), "wrong_audience", "MISSING_AUDIENCE")
    assert signed_in_as(client) is None


def test_an_audience_restriction_for_another_sp_beside_ours_is_refused(
    hin: Flask, client: FlaskClient
) -> None:
    # Two AudienceRestrictions must both hold (SAML core 2.5.1.4): the second excludes us.
    make_doctor()
    response = build(Attack(in_response_to=start(client),
                            other_audience_restriction="https://other-sp.example"))
    assert_refused(post(client, response), "wrong_audience", "WRONG_AUDIENCE")


@pytest.mark.parametrize("recipient", [
    f"{ACS_URL}/../evil", f"{ACS_URL}?x", f"https://evil.example/?{ACS_URL}", f"{ACS_URL}x",
    None,
])
def test_a_recipient_other_than_the_acs_exactly_is_refused(
    hin: Flask, client: FlaskClient, recipient: str | None
) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), recipient=recipient))
    code = "MISSING_RECIPIENT" if recipient is None else "WRONG_RECIPIENT"
    assert_refused(post(client, response), "wrong_recipient", code)
    assert signed_in_as(client) is None


@pytest.mark.parametrize("destination", [
    f"{ACS_URL}/../evil", f"{ACS_URL}?x", f"{ACS_URL}/x", f"{ACS_URL}x",
    ACS_URL.replace("relais.test", "RELAIS.TEST"), None,
])
def test_a_destination_other_than_the_acs_exactly_is_refused(
    hin: Flask, client: FlaskClient, destination: str | None
) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), destination=destination))
    code = "MISSING_DESTINATION" if destination is None else "WRONG_DESTINATION"
    assert_refused(post(client, response), "wrong_destination", code)
    assert signed_in_as(client) is None


def test_an_expired_assertion_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), age=timedelta(minutes=20)))
    assert_refused(post(client, response), "invalid_response", "ASSERTION_EXPIRED")


def test_another_issuer_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    response = build(Attack(in_response_to=start(client), issuer="https://evil-idp.example"))
    assert_refused(post(client, response), "invalid_response", "WRONG_ISSUER")


# --- InResponseTo, browser binding, replay -------------------------------------------------


def test_an_unsolicited_response_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    start(client)  # a request exists, but the response does not answer it
    response = build(Attack(in_response_to=None))
    assert_refused(post(client, response), "unsolicited")


def test_an_unknown_request_id_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    start(client)
    assert_refused(post(client, build(Attack(in_response_to=new_id()))), "unknown_request")


def test_a_request_started_in_another_browser_is_refused(
    hin: Flask, client: FlaskClient
) -> None:
    # Given the attacker starts a sign-in in their own browser and gets a valid response ...
    make_doctor()
    attacker = hin.test_client()
    response = build(Attack(in_response_to=start(attacker)))
    # ... when they make the victim's browser post it (login CSRF), it is refused.
    start(client)
    assert_refused(post(client, response), "other_browser")
    assert signed_in_as(client) is None


def test_the_signed_assertion_must_answer_the_request_too(
    hin: Flask, client: FlaskClient
) -> None:
    # The envelope (unsigned here) names this browser's request; the signed assertion another.
    make_doctor()
    request_id = start(client)
    response = build(Attack(in_response_to=request_id, assertion_in_response_to=None,
                            sign_response=False))
    assert_refused(post(client, response), "assertion_not_for_request", "WRONG_INRESPONSETO")


def test_an_envelope_rewritten_to_this_request_is_refused(
    hin: Flask, client: FlaskClient
) -> None:
    make_doctor()
    other_request = start(hin.test_client())
    response = build(Attack(in_response_to=other_request, sign_response=False))
    request_id = start(client)
    response.set("InResponseTo", request_id)
    assert_refused(post(client, response), "invalid_response")


def test_the_same_response_twice_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    response = encode(build(Attack(in_response_to=start(client))))
    assert post(client, response).status_code == 303
    # Again from the same browser: the request was used.
    assert_refused_keep_identity(post(client, response), "request_used")
    # Again from a fresh browser: it never started that request.
    assert_refused_keep_identity(post(hin.test_client(), response), "other_browser")


def assert_refused_keep_identity(answer: Any, reason: str) -> None:
    assert answer.status_code == 400
    assert rejections()[-1]["reason"] == reason


def test_an_assertion_id_is_accepted_once(hin: Flask, client: FlaskClient) -> None:
    # An IdP (or a thief of its output) reusing an assertion for a second request: refused.
    make_doctor()
    assertion_id = new_id()
    first = build(Attack(in_response_to=start(client), assertion_id=assertion_id))
    assert post(client, first).status_code == 303
    second = build(Attack(in_response_to=start(client), assertion_id=assertion_id))
    assert_refused_keep_identity(post(client, second), "replayed_assertion")


def test_an_expired_request_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    request_id = start(client)
    db.session.execute(update(SamlRequest).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert_refused(post(client, build(Attack(in_response_to=request_id))), "request_expired")


def test_expired_requests_and_assertions_are_purged(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    post(client, build(Attack(in_response_to=start(client))))
    past = utcnow() - timedelta(seconds=1)
    db.session.execute(update(SamlRequest).values(expires_at=past))
    db.session.execute(update(SamlAssertion).values(expires_at=past))
    db.session.commit()
    fresh = start(client)
    assert [r.id for r in db.session.scalars(select(SamlRequest))] == [fresh]
    assert db.session.scalars(select(SamlAssertion)).all() == []


# --- who may sign in ------------------------------------------------------------------------


def test_a_deactivated_doctor_is_refused_with_a_clear_message(
    hin: Flask, client: FlaskClient
) -> None:
    make_doctor(state="deactivated", activated_at=utcnow(), deactivated_at=utcnow())
    answer = post(client, build(Attack(in_response_to=start(client))))
    assert_refused(answer, "doctor_deactivated", status=403)
    assert "Votre compte Relais est désactivé" in answer.get_data(as_text=True)
    assert signed_in_as(client) is None


def test_a_locked_doctor_is_refused(hin: Flask, client: FlaskClient) -> None:
    make_doctor(sign_in_locked_at=utcnow(), sign_in_locked=True)
    answer = post(client, build(Attack(in_response_to=start(client))))
    assert_refused(answer, "locked", status=403)
    assert "temporairement bloqué" in answer.get_data(as_text=True)


@pytest.mark.parametrize("gln", [None, "", "7601000000010", "760100000001"])
def test_no_valid_gln_is_refused_with_a_clear_message(
    hin: Flask, client: FlaskClient, gln: str | None
) -> None:
    attributes = {"givenName": "Claire", "surname": "Muller"}
    if gln is not None:
        attributes["gln"] = gln
    answer = post(client, build(Attack(in_response_to=start(client), attributes=attributes)))
    assert_refused(answer, "no_gln", status=403)
    assert "GLN valable" in answer.get_data(as_text=True)
    assert db.session.scalars(select(Doctor)).all() == []


def test_a_gln_changed_on_a_known_identity_is_refused_not_relinked(
    hin: Flask, client: FlaskClient
) -> None:
    doctor = make_doctor()
    make_doctor("7601000000026")
    post(client, build(Attack(in_response_to=start(client))))
    other = hin.test_client()
    answer = post(other, build(Attack(in_response_to=start(other), attributes={
        "gln": "7601000000026", "givenName": "Luc", "surname": "Rochat"})))
    assert answer.status_code == 403
    assert rejections()[-1]["reason"] == "gln_mismatch"
    assert signed_in_as(other) is None
    [identity] = db.session.scalars(select(HinIdentity)).all()
    assert identity.doctor_id == doctor.id


# --- where to go next ---------------------------------------------------------------------


@pytest.mark.parametrize("evil", [
    "//evil.example", "https://evil.example", "/\\evil.example", "/\t/evil.example",
    "javascript:alert(1)",
])
def test_next_cannot_leave_the_site(hin: Flask, client: FlaskClient, evil: str) -> None:
    make_doctor()
    request_id = start(client, evil)
    assert db.session.get(SamlRequest, request_id).next_path == "/"
    answer = post(client, build(Attack(in_response_to=request_id)), relay_state=evil)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/"


@pytest.mark.parametrize("evil", ["//evil.example", "https://evil.example", "/\\evil.example"])
def test_relay_state_is_never_the_next_path(hin: Flask, client: FlaskClient, evil: str) -> None:
    make_doctor()
    request_id = start(client, "/documents?page=2")
    answer = post(client, build(Attack(in_response_to=request_id)), relay_state=evil)
    assert answer.headers["Location"] == "/documents?page=2"


def test_the_authn_request_carries_no_next_path(hin: Flask, client: FlaskClient) -> None:
    answer = client.get("/auth/hin/login", query_string={"next": "/documents/42"})
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["RelayState"] == ["/"]
    # Our AuthnRequests are signed with RSA-SHA256.
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]


# --- the binding cookie, CSRF, rate limit ------------------------------------------------------


def test_the_binding_cookie_is_lax_on_plain_http(hin: Flask, client: FlaskClient) -> None:
    cookie = client.get("/auth/hin/login").headers["Set-Cookie"]
    assert cookie.startswith("relais-hin=")
    assert "HttpOnly" in cookie and "Path=/auth/hin" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_the_binding_cookie_reaches_the_cross_site_post_over_https(
    hin: Flask, client: FlaskClient
) -> None:
    answer = client.get("/auth/hin/login", base_url="https://relais.test")
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("__Secure-relais-hin=")
    assert "Secure" in cookie and "SameSite=None" in cookie and "HttpOnly" in cookie
    hashes = [r.browser_hash for r in db.session.scalars(select(SamlRequest))]
    assert len(hashes) == 1 and len(hashes[0]) == 64


def test_the_acs_needs_no_csrf_token_but_the_logout_does(
    hin: Flask, client: FlaskClient
) -> None:
    assert hin.config["WTF_CSRF_ENABLED"]
    make_doctor()
    assert post(client, build(Attack(in_response_to=start(client)))).status_code == 303
    # The signed-in doctor's SP-initiated logout is a POST that needs our CSRF token.
    assert client.post("/auth/hin/logout").status_code == 400
    assert signed_in_as(client) is not None


def test_the_acs_is_rate_limited_per_address(hin: Flask, client: FlaskClient) -> None:
    hin.config["RATELIMIT_SIGNIN_PER_ADDRESS"] = "2 per minute"
    for _ in range(2):
        assert client.post("/auth/hin/acs", data={"SAMLResponse": "x"}).status_code == 400
    assert client.post("/auth/hin/acs", data={"SAMLResponse": "x"}).status_code == 429


def test_starting_sign_ins_is_rate_limited_per_address(hin: Flask, client: FlaskClient) -> None:
    hin.config["RATELIMIT_SIGNIN_PER_ADDRESS"] = "2 per minute"
    for _ in range(2):
        assert client.get("/auth/hin/login").status_code == 303
    assert client.get("/auth/hin/login").status_code == 429
    assert len(db.session.scalars(select(SamlRequest)).all()) == 2


def test_garbage_is_refused_without_a_trace_of_it(hin: Flask, client: FlaskClient) -> None:
    for body in ({}, {"SAMLResponse": "not base64 !"}, {"SAMLResponse": "PGEvPg=="},
                 {"SAMLResponse": "A" * 300_000}):
        answer = client.post("/auth/hin/acs", data=body)
        assert answer.status_code == 400
        assert FAILED in answer.get_data(as_text=True)
    assert [r["reason"] for r in rejections()] == [
        "no_response", "malformed_response", "unsolicited", "no_response"]


def test_a_doctype_is_refused(hin: Flask, client: FlaskClient) -> None:
    start(client)
    xml = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&e;'
           b'</samlp:Response>')
    import base64

    answer = client.post("/auth/hin/acs", data={"SAMLResponse": base64.b64encode(xml).decode()})
    assert answer.status_code == 400
    assert rejections()[-1]["reason"] == "malformed_response"


# --- settings -------------------------------------------------------------------------------


def test_the_metadata_is_valid_xml_with_our_acs(hin: Flask, client: FlaskClient) -> None:
    answer = client.get("/auth/hin/metadata")
    assert answer.status_code == 200
    assert answer.mimetype == "application/samlmetadata+xml"
    root = etree.fromstring(answer.data)
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    assert root.get("entityID") == SP_ENTITY_ID
    acs = root.find(f".//{{{md}}}AssertionConsumerService")
    assert acs.get("Location") == ACS_URL
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    sp = root.find(f"{{{md}}}SPSSODescriptor")
    assert sp.get("WantAssertionsSigned") == "true" and sp.get("AuthnRequestsSigned") == "true"


def test_without_settings_hin_says_it_is_not_configured(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    app.config["SAML_SETTINGS_DIR"] = str(tmp_path / "none")
    answer = client.get("/auth/hin/login")
    assert answer.status_code == 503
    assert "HIN n'est pas configuré" in answer.get_data(as_text=True)
    assert client.post("/auth/hin/acs", data={"SAMLResponse": "x"}).status_code == 503
    assert client.get("/auth/hin/metadata").status_code == 503


@pytest.mark.parametrize(("section", "name", "value"), [
    ("security", "wantAssertionsSigned", False),
    ("security", "rejectDeprecatedAlgorithm", False),
    ("security", "wantNameId", False),
    (None, "strict", False),
    ("idp", "certFingerprint", "00:11"),
])
def test_weakened_settings_are_refused(
    app: Flask, client: FlaskClient, saml_dir: str, tmp_path: Path, section: str | None,
    name: str, value: Any,
) -> None:
    import shutil

    weak = tmp_path / "weak"
    shutil.copytree(saml_dir, weak)
    target = weak / ("settings.json" if section == "idp" else "advanced_settings.json")
    data = json.loads(target.read_text())
    (data[section] if section else data)[name] = value
    target.write_text(json.dumps(data))
    app.config.update(SAML_SETTINGS_DIR=str(weak), PUBLIC_BASE_URL=SP_BASE)
    assert client.get("/auth/hin/login").status_code == 503


def test_the_dev_idp_is_absent_when_switched_off(app: Flask, client: FlaskClient) -> None:
    assert app.config["SAML_DEV_IDP"] is False
    for path in ("/dev-idp/sso", "/dev-idp/metadata", "/dev-idp/slo"):
        assert client.get(path).status_code == 404


def test_dev_settings_are_refused_in_production(app: Flask, tmp_path: Path) -> None:
    import base64

    key = base64.b64encode(b"p" * 32).decode()
    with sibling_app(app, **safe_production_settings(
            SECRET_KEY="s" * 40, DOCUMENT_KEYS=f"prod1:{key}",
            SAML_SETTINGS_DIR=str(tmp_path / "s"), SAML_DEV_IDP="0"),
    ) as production, production.app_context():
        result = production.test_cli_runner().invoke(args=["hin", "dev-settings"])
    assert result.exit_code == 1
    assert "refused in production" in result.output
    assert not (tmp_path / "s").exists()


# --- the development IdP, end to end in the test client --------------------------------------


@pytest.fixture()
def dev_app(app: Flask, tmp_path: Path) -> Any:
    with sibling_app(app, SAML_DEV_IDP="1", SAML_DEV_IDP_DIR=str(tmp_path / "dev-idp"),
                     SAML_SETTINGS_DIR=str(tmp_path / "saml"),
                     PUBLIC_BASE_URL=SP_BASE) as dev:
        with dev.app_context():
            result = dev.test_cli_runner().invoke(args=["hin", "dev-settings"])
        assert result.exit_code == 0, result.output
        assert "written" in result.output
        yield dev


def _hidden(page: str, name: str) -> str:
    root = etree.HTML(page)
    values = {str(v) for v in root.xpath(f'//input[@name="{name}"]/@value')}
    assert len(values) == 1, values
    return values.pop()


def test_the_dev_idp_signs_in_a_demo_doctor_and_logs_out(dev_app: Flask, tmp_path: Path) -> None:
    with dev_app.app_context():
        make_doctor(state="pending")
    client = dev_app.test_client()
    # Keys and settings: private files, written once.
    for private in (tmp_path / "dev-idp" / "idp.key", tmp_path / "saml" / "certs" / "sp.key"):
        assert private.stat().st_mode & 0o777 == 0o600
    with dev_app.app_context():
        again = dev_app.test_cli_runner().invoke(args=["hin", "dev-settings"])
    assert "already present" in again.output

    login = client.get("/auth/hin/login", query_string={"next": "/profile"})
    assert login.headers["Location"].startswith(f"{SP_BASE}/dev-idp/sso?SAMLRequest=")
    choose = client.get(login.headers["Location"])
    assert choose.status_code == 200
    page = choose.get_data(as_text=True)
    assert "Claire Muller" in page and "7601000000019" in page
    posted = client.post("/dev-idp/sso", data={
        "csrf_token": _hidden(page, "csrf_token"), "doctor": "7601000000019"})
    assert posted.status_code == 200
    autopost = posted.get_data(as_text=True)
    assert "dev-idp-autopost.js" in autopost and "<script>" not in autopost
    saml_response = _hidden(autopost, "SAMLResponse")
    # Both the response and its assertion carry a signature.
    import base64

    xml = etree.fromstring(base64.b64decode(saml_response))
    assert xml.find(f"{{{DS}}}Signature") is not None
    assert assertion_of(xml).find(f"{{{DS}}}Signature") is not None

    answer = client.post("/auth/hin/acs", data={"SAMLResponse": saml_response})
    assert answer.status_code == 303 and answer.headers["Location"] == "/profile"
    with dev_app.app_context():
        doctor = db.session.scalar(select(Doctor).where(Doctor.gln == "7601000000019"))
        assert doctor.state == "active"

    # Single logout: here, then at the IdP, whose signed LogoutResponse comes back.
    home = client.get("/", follow_redirects=True).get_data(as_text=True)
    logout = client.post("/auth/hin/logout", data={"csrf_token": _hidden(home, "csrf_token")})
    assert logout.status_code == 303
    assert logout.headers["Location"].startswith(f"{SP_BASE}/dev-idp/slo?SAMLRequest=")
    assert signed_in_as(client) is None
    idp_answer = client.get(logout.headers["Location"])
    assert idp_answer.headers["Location"].startswith(f"{SP_BASE}/auth/hin/logout?SAMLResponse=")
    back = client.get(idp_answer.headers["Location"])
    assert back.status_code == 303 and back.headers["Location"] == "/"
    with dev_app.app_context():
        assert rejections() == []


def test_the_dev_idp_can_send_typed_attributes(dev_app: Flask) -> None:
    client = dev_app.test_client()
    page = client.get(client.get("/auth/hin/login").headers["Location"]).get_data(as_text=True)
    posted = client.post("/dev-idp/sso", data={
        "csrf_token": _hidden(page, "csrf_token"), "doctor": "custom", "gln": "",
        "given_name": "Sans", "family_name": "Gln"})
    answer = client.post("/auth/hin/acs", data={
        "SAMLResponse": _hidden(posted.get_data(as_text=True), "SAMLResponse")})
    assert answer.status_code == 403
    assert "GLN valable" in answer.get_data(as_text=True)


def test_the_dev_idp_refuses_an_unsigned_authn_request(dev_app: Flask) -> None:
    client = dev_app.test_client()
    location = client.get("/auth/hin/login").headers["Location"]
    unsigned = location.split("&SigAlg=")[0]
    assert client.get(unsigned).status_code == 400


def test_the_dev_idp_metadata(dev_app: Flask) -> None:
    answer = dev_app.test_client().get("/dev-idp/metadata")
    root = etree.fromstring(answer.data)
    assert root.get("entityID") == f"{SP_BASE}/dev-idp/metadata"


def test_an_unsigned_logout_request_signs_nobody_out(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    post(client, build(Attack(in_response_to=start(client))))
    answer = client.get("/auth/hin/logout", query_string={"SAMLRequest": "x"})
    assert answer.status_code == 400
    assert signed_in_as(client) is not None
    assert rejections()[-1]["reason"] == "logout_unsigned"


def hin_sign_in(client: FlaskClient, **attack: Any) -> Attack:
    """A HIN sign-in of the active doctor Claire Muller; returns what the IdP asserted."""
    used = Attack(in_response_to=start(client), **attack)
    answer = post(client, build(used))
    assert answer.status_code == 303, rejections()
    return used


def logout_status(answer: Any, request_id: str) -> str:
    """The status of our LogoutResponse, sent back to the IdP signed."""
    location = answer.headers["Location"]
    assert location.startswith(f"{IDP_SLO_URL}?SAMLResponse="), location
    assert "Signature=" in location and "SigAlg=" in location
    message = redirect_message(location)
    assert message.get("InResponseTo") == request_id
    return str(message.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode").get("Value"))


def test_a_logout_request_for_this_session_ends_it(hin: Flask, client: FlaskClient) -> None:
    make_doctor()
    signed = hin_sign_in(client)
    request_id, url = logout_request_url(signed.name_id, [new_id(), signed.session_index],
                                         name_qualifier=IDP_ENTITY_ID)
    answer = client.get(url)
    assert answer.status_code == 303, rejections()
    assert logout_status(answer, request_id) == SUCCESS
    assert signed_in_as(client) is None
    assert rejections() == []
    ended = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "auth.signed_out")).all()
    assert [e.details["reason"] for e in ended] == ["hin_logout"]


@pytest.mark.parametrize(("case", "reason"), [
    ("another person", "logout_other_person"),
    ("another session of the same person", "logout_other_session"),
    ("no session index", "logout_other_session"),
    ("another NameID format", "logout_other_person"),
    ("another IdP's NameQualifier", "logout_other_person"),
])
def test_a_logout_request_for_someone_or_something_else_ends_nothing(
    hin: Flask, client: FlaskClient, case: str, reason: str
) -> None:
    # Given Claire Muller signed in through HIN in this browser
    doctor = make_doctor()
    signed = hin_sign_in(client)
    name_id, indexes, options = signed.name_id, [signed.session_index], {}
    if case == "another person":
        name_id = "hin-subject-0002"
    elif case == "another session of the same person":
        indexes = [new_id()]
    elif case == "no session index":
        indexes = []
    elif case == "another NameID format":
        options = {"name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"}
    else:
        options = {"name_qualifier": "https://other-idp.example/idp"}
    # When the IdP (really: its signature) asks to end a session that is not this one
    request_id, url = logout_request_url(name_id, indexes, **options)
    answer = client.get(url)
    # Then this session goes on, the IdP is told no, and the refusal is audited
    assert answer.status_code == 303
    assert logout_status(answer, request_id) == "urn:oasis:names:tc:SAML:2.0:status:Requester"
    assert signed_in_as(client) == f"doctor:{doctor.id}:0"
    assert client.get("/documents").status_code == 200
    last = rejections()[-1]
    assert last["reason"] == reason, last
    refused = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "auth.hin_rejected")).all()[-1]
    assert refused.target == "doctor:7601000000019"
    assert "hin-subject" not in audit_text()  # no NameID in the trail


def test_a_logout_request_ends_no_session_signed_in_by_password(
    hin: Flask, client: FlaskClient
) -> None:
    from tests.support.signin import sign_in_as

    doctor = make_doctor(login="cmuller")
    sign_in_as(client, doctor)
    request_id, url = logout_request_url("hin-subject-0001", [new_id()])
    answer = client.get(url)
    assert logout_status(answer, request_id) == "urn:oasis:names:tc:SAML:2.0:status:Requester"
    assert signed_in_as(client) is not None
    assert rejections()[-1]["reason"] == "logout_not_hin_session"


@pytest.mark.parametrize("destination", [f"{SLS_URL}/../evil", f"{SLS_URL}?x", None])
def test_a_logout_request_to_another_destination_is_refused(
    hin: Flask, client: FlaskClient, destination: str | None
) -> None:
    make_doctor()
    signed = hin_sign_in(client)
    _, url = logout_request_url(signed.name_id, [signed.session_index],
                                destination=destination)
    answer = client.get(url)
    assert answer.status_code == 400
    assert FAILED in answer.get_data(as_text=True)
    assert rejections()[-1]["reason"] == "logout_wrong_destination"
    assert signed_in_as(client) is not None


def test_a_logout_request_signed_by_another_key_is_refused(
    hin: Flask, client: FlaskClient
) -> None:
    make_doctor()
    signed = hin_sign_in(client)
    _, url = logout_request_url(signed.name_id, [signed.session_index], key_name="attacker")
    answer = client.get(url)
    assert answer.status_code == 400
    assert rejections()[-1]["reason"] == "logout_invalid"
    assert signed_in_as(client) is not None


def test_without_a_session_a_logout_request_is_answered_success(
    hin: Flask, client: FlaskClient
) -> None:
    # The IdP ends a session this browser no longer has here: nothing to end, and it is told so.
    request_id, url = logout_request_url("hin-subject-0001", [new_id()])
    answer = client.get(url)
    assert logout_status(answer, request_id) == SUCCESS
    assert rejections() == []


def test_the_test_idp_signs_verifiably() -> None:
    # Sanity check of the test IdP itself: a valid response verifies with xmlsec.
    import xmlsec

    response = build(Attack(in_response_to="_x"))
    _, cert = keypair("idp")
    xmlsec.tree.add_ids(response, ["ID"])
    for signed in (response, assertion_of(response)):
        context = xmlsec.SignatureContext()
        context.key = xmlsec.Key.from_memory(cert.encode(), xmlsec.KeyFormat.CERT_PEM)
        context.verify(signed.find(f"{{{DS}}}Signature"))
