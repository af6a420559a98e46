"""The development identity provider: HIN's stand-in on a laptop, never in production.

Registered only when ``SAML_DEV_IDP`` is on (the configuration refuses that in production).
It speaks real SAML to our service provider: it reads the signed AuthnRequest (HTTP-Redirect),
lets the developer pick a demo doctor or type attributes, and posts back a SAMLResponse whose
assertion and response are both signed (RSA-SHA256) with its own key, generated on first use
in ``instance/dev-idp/`` (or ``SAML_DEV_IDP_DIR``). The SP checks it exactly as it would check
HIN's: nothing in the service provider knows this module exists.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
)
from lxml import etree  # type: ignore[import-untyped]
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C  # type: ignore[import-untyped]
from onelogin.saml2.utils import OneLogin_Saml2_Utils as Utils  # type: ignore[import-untyped]
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML  # type: ignore[import-untyped]
from werkzeug.wrappers import Response as BaseResponse

from app.auth.saml_settings import ensure_keypair, pem_body
from app.auth.session import public
from app.config.saml_trust import SettingsError, load_sp_settings

bp = Blueprint("dev_idp", __name__, url_prefix="/dev-idp")

SAMLP, SAML, MD, DS = C.NS_SAMLP, C.NS_SAML, C.NS_MD, C.NS_DS
#: How long an assertion of ours may be presented to the SP.
ASSERTION_LIFETIME = timedelta(minutes=5)
#: Largest SAMLRequest accepted (deflated and base64), against decompression bombs.
MAX_MESSAGE = 16 * 1024


# --- identity and keys ------------------------------------------------------------------------


def key_dir(app: Flask) -> Path:
    configured = app.config.get("SAML_DEV_IDP_DIR")
    return Path(configured) if configured else Path(app.instance_path) / "dev-idp"


def idp_keys(app: Flask) -> tuple[str, str]:
    """The IdP's private key and certificate (PEM), generated on first use."""
    return ensure_keypair(key_dir(app), "idp", "Relais development IdP")


def idp_urls(public_base_url: str) -> dict[str, str]:
    base = public_base_url.rstrip("/")
    return {
        "entity_id": f"{base}/dev-idp/metadata",
        "sso": f"{base}/dev-idp/sso",
        "slo": f"{base}/dev-idp/slo",
    }


def idp_description(app: Flask) -> dict[str, str]:
    """What the SP settings need to know of this IdP: entity id, URLs and certificate."""
    _, cert = idp_keys(app)
    return {**idp_urls(app.config["PUBLIC_BASE_URL"]), "cert": cert}


# --- SAML messages ----------------------------------------------------------------------------


def _saml_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _el(parent: Any, ns: str, tag: str, text: str | None = None, **attrs: str) -> Any:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def build_response(
    *,
    key: str,
    cert: str,
    issuer: str,
    destination: str,
    audience: str,
    in_response_to: str,
    name_id: str,
    attributes: dict[str, str],
    now: datetime | None = None,
) -> str:
    """A SAML 2.0 Response with one assertion, the assertion signed, then the response."""
    now = now or datetime.now(UTC)
    until = _saml_time(now + ASSERTION_LIFETIME)
    issued = _saml_time(now)
    nsmap = {"saml": SAML}

    assertion = etree.Element(f"{{{SAML}}}Assertion", nsmap=nsmap, ID=Utils.generate_unique_id(),
                              Version="2.0", IssueInstant=issued)
    _el(assertion, SAML, "Issuer", issuer)
    subject = _el(assertion, SAML, "Subject")
    _el(subject, SAML, "NameID", name_id, Format=C.NAMEID_PERSISTENT,
        SPNameQualifier=audience)
    confirmation = _el(subject, SAML, "SubjectConfirmation", Method=C.CM_BEARER)
    _el(confirmation, SAML, "SubjectConfirmationData", NotOnOrAfter=until,
        Recipient=destination, InResponseTo=in_response_to)
    conditions = _el(assertion, SAML, "Conditions", NotBefore=_saml_time(now - timedelta(
        seconds=30)), NotOnOrAfter=until)
    restriction = _el(conditions, SAML, "AudienceRestriction")
    _el(restriction, SAML, "Audience", audience)
    statement = _el(assertion, SAML, "AuthnStatement", AuthnInstant=issued,
                    SessionIndex=Utils.generate_unique_id(),
                    SessionNotOnOrAfter=_saml_time(now + timedelta(hours=10)))
    context = _el(statement, SAML, "AuthnContext")
    _el(context, SAML, "AuthnContextClassRef", C.AC_PASSWORD_PROTECTED)
    attribute_statement = _el(assertion, SAML, "AttributeStatement")
    for name, value in attributes.items():
        attribute = _el(attribute_statement, SAML, "Attribute", Name=name,
                        NameFormat=C.ATTRNAME_FORMAT_BASIC)
        _el(attribute, SAML, "AttributeValue", value)
    signed_assertion = Utils.add_sign(assertion, key, cert, sign_algorithm=C.RSA_SHA256,
                                      digest_algorithm=C.SHA256)

    response = etree.Element(f"{{{SAMLP}}}Response", nsmap={"samlp": SAMLP, "saml": SAML},
                             ID=Utils.generate_unique_id(), Version="2.0", IssueInstant=issued,
                             Destination=destination, InResponseTo=in_response_to)
    _el(response, SAML, "Issuer", issuer)
    status = _el(response, SAMLP, "Status")
    _el(status, SAMLP, "StatusCode", Value=C.STATUS_SUCCESS)
    response.append(OneLogin_Saml2_XML.to_etree(signed_assertion))
    signed: bytes = Utils.add_sign(response, key, cert, sign_algorithm=C.RSA_SHA256,
                                   digest_algorithm=C.SHA256)
    return signed.decode() if isinstance(signed, bytes) else str(signed)


def _logout_response(*, issuer: str, destination: str, in_response_to: str) -> str:
    root = etree.Element(f"{{{SAMLP}}}LogoutResponse", nsmap={"samlp": SAMLP, "saml": SAML},
                         ID=Utils.generate_unique_id(), Version="2.0",
                         IssueInstant=_saml_time(datetime.now(UTC)), Destination=destination,
                         InResponseTo=in_response_to)
    _el(root, SAML, "Issuer", issuer)
    status = _el(root, SAMLP, "Status")
    _el(status, SAMLP, "StatusCode", Value=C.STATUS_SUCCESS)
    return str(etree.tostring(root).decode())


def redirect_binding_url(url: str, field: str, xml: str, relay_state: str | None,
                         key: str) -> str:
    """``url`` with a deflated message, signed with RSA-SHA256 (HTTP-Redirect binding)."""
    params = [(field, Utils.deflate_and_base64_encode(xml))]
    if relay_state is not None:
        params.append(("RelayState", relay_state))
    params.append(("SigAlg", C.RSA_SHA256))
    query = urlencode(params)
    signature = Utils.sign_binary(query.encode(), key)
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{query}&{urlencode({'Signature': Utils.b64encode(signature)})}"


def _read_redirect_message(field: str) -> Any:
    """The SP's message on this HTTP-Redirect request, its signature checked with the SP cert."""
    try:
        settings = load_sp_settings(current_app.config["SAML_SETTINGS_DIR"])
    except SettingsError:
        abort(503)
    raw = request.args.get(field, "")
    signature = request.args.get("Signature")
    if not raw or len(raw) > MAX_MESSAGE or not signature:
        abort(400)
    if request.args.get("SigAlg") in C.DEPRECATED_ALGORITHMS:
        abort(400)
    args = (f"{field}=", "RelayState=", "SigAlg=")
    parts = request.query_string.decode("ascii", "replace").split("&")
    signed_query = "&".join(part for arg in args for part in parts if part.startswith(arg))
    try:
        valid = Utils.validate_binary_sign(
            signed_query, Utils.b64decode(signature), settings.get_sp_cert(),
            request.args.get("SigAlg", C.RSA_SHA256),
        )
        message = OneLogin_Saml2_XML.to_etree(Utils.decode_base64_and_inflate(raw))
    except Exception:  # a malformed message: base64, deflate or XML
        abort(400)
    if not valid:
        abort(400)
    issuer = message.find(f"{{{SAML}}}Issuer")
    if issuer is None or issuer.text != settings.get_sp_data()["entityId"]:
        abort(400)
    return message, settings


# --- pages -------------------------------------------------------------------------------------


#: Where create_app puts the people this IdP offers (the demo's doctors: ``app.demo``).
PEOPLE = "relais.dev_idp.people"


def _demo_doctors() -> list[dict[str, str]]:
    people: list[dict[str, str]] = current_app.extensions.get(PEOPLE, [])
    return people


@bp.get("/metadata")
@public
def metadata() -> Response:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    description = idp_description(app)
    root = etree.Element(f"{{{MD}}}EntityDescriptor", nsmap={"md": MD, "ds": DS},
                         entityID=description["entity_id"])
    idp = _el(root, MD, "IDPSSODescriptor", WantAuthnRequestsSigned="true",
              protocolSupportEnumeration=C.NS_SAMLP)
    key_descriptor = _el(idp, MD, "KeyDescriptor", use="signing")
    key_info = _el(key_descriptor, DS, "KeyInfo")
    x509_data = _el(key_info, DS, "X509Data")
    _el(x509_data, DS, "X509Certificate", pem_body(description["cert"]))
    _el(idp, MD, "SingleLogoutService", Binding=C.BINDING_HTTP_REDIRECT,
        Location=description["slo"])
    _el(idp, MD, "NameIDFormat", C.NAMEID_PERSISTENT)
    _el(idp, MD, "SingleSignOnService", Binding=C.BINDING_HTTP_REDIRECT,
        Location=description["sso"])
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return Response(body, mimetype="application/samlmetadata+xml")


@bp.get("/sso")
@public
def sso() -> str:
    message, _ = _read_redirect_message("SAMLRequest")
    if etree.QName(message).localname != "AuthnRequest" or not message.get("ID"):
        abort(400)
    # Kept in this browser's session until the developer chooses whom to sign in as.
    session["dev_idp"] = {
        "request_id": message.get("ID"),
        "relay_state": request.args.get("RelayState"),
    }
    return render_template("dev_idp/choose.html", doctors=_demo_doctors())


def _clean(value: str | None, limit: int = 200) -> str:
    return (value or "").strip()[:limit]


@bp.post("/sso")
@public
def sso_answer() -> str:
    pending = session.pop("dev_idp", None)
    if not isinstance(pending, dict) or not pending.get("request_id"):
        abort(400)
    try:
        settings = load_sp_settings(current_app.config["SAML_SETTINGS_DIR"])
    except SettingsError:
        abort(503)
    config = current_app.config
    choice = request.form.get("doctor", "")
    demo = {d["gln"]: d for d in _demo_doctors()}
    if choice in demo:
        chosen = demo[choice]
        values = {"gln": chosen["gln"], "given_name": chosen["given_name"],
                  "family_name": chosen["family_name"], "email": chosen["email"],
                  "subject": f"dev-idp-{chosen['gln']}"}
    else:
        values = {name: _clean(request.form.get(name)) for name in
                  ("gln", "given_name", "family_name", "email", "subject")}
        values["subject"] = values["subject"] or f"dev-idp-{secrets.token_hex(8)}"
    attributes = {
        config["SAML_ATTR_GLN"]: values["gln"],
        config["SAML_ATTR_GIVEN_NAME"]: values["given_name"],
        config["SAML_ATTR_FAMILY_NAME"]: values["family_name"],
        config["SAML_ATTR_EMAIL"]: values["email"],
    }
    key, cert = idp_keys(current_app._get_current_object())  # type: ignore[attr-defined]
    sp = settings.get_sp_data()
    acs = sp["assertionConsumerService"]["url"]
    xml = build_response(
        key=key, cert=cert,
        issuer=idp_urls(config["PUBLIC_BASE_URL"])["entity_id"],
        destination=acs, audience=sp["entityId"],
        in_response_to=str(pending["request_id"]),
        name_id=values["subject"],
        # An empty attribute is left out, as an IdP that has no value would do.
        attributes={name: value for name, value in attributes.items() if value},
    )
    return render_template(
        "dev_idp/post.html", acs=acs, saml_response=Utils.b64encode(xml),
        relay_state=pending.get("relay_state"),
    )


@bp.get("/slo")
@public
def slo() -> BaseResponse:
    message, settings = _read_redirect_message("SAMLRequest")
    if etree.QName(message).localname != "LogoutRequest" or not message.get("ID"):
        abort(400)
    config = current_app.config
    sls = settings.get_sp_data()["singleLogoutService"]["url"]
    key, _ = idp_keys(current_app._get_current_object())  # type: ignore[attr-defined]
    xml = _logout_response(
        issuer=idp_urls(config["PUBLIC_BASE_URL"])["entity_id"], destination=sls,
        in_response_to=str(message.get("ID")),
    )
    url = redirect_binding_url(sls, "SAMLResponse", xml, request.args.get("RelayState"), key)
    return redirect(url, code=303)
