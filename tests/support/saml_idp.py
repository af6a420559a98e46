"""A test identity provider: SAML responses built with lxml and signed with xmlsec directly.

Independent of the development IdP (``app/auth/dev_idp.py``), so that a bug there cannot hide
one in the service provider. Every part an attacker could change is a parameter, and the
built tree can be changed after signing (wrapping, tampering) before :func:`encode`.
"""

from __future__ import annotations

import base64
import copy
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}

IDP_ENTITY_ID = "https://idp.hin.test/idp"
SP_BASE = "http://relais.test"
SP_ENTITY_ID = f"{SP_BASE}/auth/hin/metadata"
ACS_URL = f"{SP_BASE}/auth/hin/acs"
SLS_URL = f"{SP_BASE}/auth/hin/logout"
IDP_SLO_URL = "https://idp.hin.test/slo"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"


@cache
def keypair(name: str = "idp") -> tuple[str, str]:
    """An RSA key and self-signed certificate (PEM), one per name and test session."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test {name}")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def saml_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return "_" + uuid.uuid4().hex


def _sub(parent: Any, ns: str, tag: str, text: str | None = None, **attrs: str) -> Any:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def sign(element: Any, *, key_name: str = "idp", sha1: bool = False) -> None:
    """Sign ``element`` (a Response or an Assertion) in place, the Signature after its Issuer."""
    key_pem, cert_pem = keypair(key_name)
    method = xmlsec.Transform.RSA_SHA1 if sha1 else xmlsec.Transform.RSA_SHA256
    digest = xmlsec.Transform.SHA1 if sha1 else xmlsec.Transform.SHA256
    signature = xmlsec.template.create(element, xmlsec.Transform.EXCL_C14N, method, ns="ds")
    element.find(f"{{{SAML}}}Issuer").addnext(signature)
    reference = xmlsec.template.add_reference(signature, digest, uri="#" + element.get("ID"))
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.add_x509_data(key_info)
    key = xmlsec.Key.from_memory(key_pem.encode(), xmlsec.KeyFormat.PEM)
    key.load_cert_from_memory(cert_pem.encode(), xmlsec.KeyFormat.PEM)
    context = xmlsec.SignatureContext()
    context.key = key
    xmlsec.tree.add_ids(element.getroottree().getroot(), ["ID"])
    context.sign(signature)


@dataclass
class Attack:
    """How to build a response: every field an attacker (or a broken IdP) could choose."""

    in_response_to: str | None
    #: The signed assertion's own InResponseTo; defaults to ``in_response_to``.
    assertion_in_response_to: str | None = "same"
    #: The Response's Destination; None leaves the attribute out.
    destination: str | None = ACS_URL
    #: The SubjectConfirmationData's Recipient; None leaves the attribute out.
    recipient: str | None = ACS_URL
    #: The AudienceRestriction's Audience; None leaves the AudienceRestriction out.
    audience: str | None = SP_ENTITY_ID
    #: A second AudienceRestriction, for this other audience only.
    other_audience_restriction: str | None = None
    #: The AuthnStatement's SessionIndex (what a LogoutRequest names later).
    session_index: str = field(default_factory=new_id)
    issuer: str = IDP_ENTITY_ID
    name_id: str = "hin-subject-0001"
    attributes: dict[str, str] = field(default_factory=lambda: {
        "gln": "7601000000019", "givenName": "Claire", "surname": "Muller",
        "email": "claire.muller@example.ch",
    })
    assertion_id: str | None = None
    lifetime: timedelta = timedelta(minutes=5)
    #: How long ago the assertion was issued (a positive value puts it in the past).
    age: timedelta = timedelta(0)
    sign_assertion: bool = True
    sign_response: bool = True
    key_name: str = "idp"
    sha1: bool = False


def assertion_element(attack: Attack) -> Any:
    now = datetime.now(UTC) - attack.age
    until = saml_time(now + attack.lifetime)
    irt = attack.in_response_to if attack.assertion_in_response_to == "same" \
        else attack.assertion_in_response_to
    assertion = etree.Element(f"{{{SAML}}}Assertion", nsmap={"saml": SAML},
                              ID=attack.assertion_id or new_id(), Version="2.0",
                              IssueInstant=saml_time(now))
    _sub(assertion, SAML, "Issuer", attack.issuer)
    subject = _sub(assertion, SAML, "Subject")
    _sub(subject, SAML, "NameID", attack.name_id, Format=PERSISTENT)
    confirmation = _sub(subject, SAML, "SubjectConfirmation", Method=BEARER)
    data = {"NotOnOrAfter": until}
    if attack.recipient is not None:
        data["Recipient"] = attack.recipient
    if irt is not None:
        data["InResponseTo"] = irt
    _sub(confirmation, SAML, "SubjectConfirmationData", **data)
    conditions = _sub(assertion, SAML, "Conditions",
                      NotBefore=saml_time(now - timedelta(seconds=30)), NotOnOrAfter=until)
    for audience in (attack.audience, attack.other_audience_restriction):
        if audience is not None:
            restriction = _sub(conditions, SAML, "AudienceRestriction")
            _sub(restriction, SAML, "Audience", audience)
    statement = _sub(assertion, SAML, "AuthnStatement", AuthnInstant=saml_time(now),
                     SessionIndex=attack.session_index)
    context = _sub(statement, SAML, "AuthnContext")
    _sub(context, SAML, "AuthnContextClassRef",
         "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport")
    attributes = _sub(assertion, SAML, "AttributeStatement")
    for name, value in attack.attributes.items():
        attribute = _sub(attributes, SAML, "Attribute", Name=name)
        _sub(attribute, SAML, "AttributeValue", value)
    return assertion


def response_element(attack: Attack, assertion: Any | None = None) -> Any:
    """A Response around ``assertion`` (built from ``attack`` when None), signed as asked."""
    now = datetime.now(UTC) - attack.age
    attrs = {"ID": new_id(), "Version": "2.0", "IssueInstant": saml_time(now)}
    if attack.destination is not None:
        attrs["Destination"] = attack.destination
    if attack.in_response_to is not None:
        attrs["InResponseTo"] = attack.in_response_to
    response = etree.Element(f"{{{SAMLP}}}Response", nsmap={"samlp": SAMLP, "saml": SAML},
                             **attrs)
    _sub(response, SAML, "Issuer", attack.issuer)
    status = _sub(response, SAMLP, "Status")
    _sub(status, SAMLP, "StatusCode", Value=SUCCESS)
    if assertion is None:
        assertion = assertion_element(attack)
    response.append(assertion)
    if attack.sign_assertion:
        sign(assertion, key_name=attack.key_name, sha1=attack.sha1)
    if attack.sign_response:
        sign(response, key_name=attack.key_name, sha1=attack.sha1)
    return response


def build(attack: Attack) -> Any:
    return response_element(attack)


def encode(element: Any) -> str:
    return base64.b64encode(etree.tostring(element)).decode()


def assertion_of(response: Any) -> Any:
    return response.find(f"{{{SAML}}}Assertion")


def evil_copy(assertion: Any, gln: str = "7601000000026") -> Any:
    """An unsigned copy of ``assertion`` claiming another GLN, with a fresh ID."""
    evil = copy.deepcopy(assertion)
    for signature in evil.findall(f"{{{DS}}}Signature"):
        evil.remove(signature)
    evil.set("ID", new_id())
    set_attribute(evil, "gln", gln)
    return evil


def set_attribute(assertion: Any, name: str, value: str) -> None:
    for attribute in assertion.iter(f"{{{SAML}}}Attribute"):
        if attribute.get("Name") == name:
            attribute.find(f"{{{SAML}}}AttributeValue").text = value


def authn_request_id(location: str) -> str:
    """The ID of the AuthnRequest carried by an HTTP-Redirect URL."""
    query = parse_qs(urlsplit(location).query)
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
    root = etree.fromstring(xml)
    return str(root.get("ID"))


# --- single logout: the IdP's LogoutRequest (HTTP-Redirect binding) -------------------------


def logout_request_xml(name_id: str, session_indexes: list[str], *,
                       destination: str | None = SLS_URL, issuer: str = IDP_ENTITY_ID,
                       name_id_format: str | None = PERSISTENT,
                       name_qualifier: str | None = None) -> tuple[str, str]:
    """A LogoutRequest from the IdP naming ``name_id`` and its sessions: (its ID, the XML)."""
    request_id = new_id()
    attrs = {"ID": request_id, "Version": "2.0", "IssueInstant": saml_time(datetime.now(UTC))}
    if destination is not None:
        attrs["Destination"] = destination
    root = etree.Element(f"{{{SAMLP}}}LogoutRequest", nsmap={"samlp": SAMLP, "saml": SAML},
                         **attrs)
    _sub(root, SAML, "Issuer", issuer)
    name_id_attrs = {"Format": name_id_format} if name_id_format is not None else {}
    if name_qualifier is not None:
        name_id_attrs["NameQualifier"] = name_qualifier
    _sub(root, SAML, "NameID", name_id, **name_id_attrs)
    for index in session_indexes:
        _sub(root, SAMLP, "SessionIndex", index)
    return request_id, etree.tostring(root).decode()


def redirect_url(url: str, field_name: str, xml: str, *, key_name: str = "idp",
                 relay_state: str | None = None) -> str:
    """``url`` carrying ``xml`` in the HTTP-Redirect binding, signed with RSA-SHA256 by the key
    ``key_name`` (signed with ``cryptography`` here, not with the app's helpers)."""
    from cryptography.hazmat.primitives.asymmetric import padding

    deflated = zlib.compress(xml.encode())[2:-4]  # raw DEFLATE, as the binding wants
    params = [(field_name, base64.b64encode(deflated).decode())]
    if relay_state is not None:
        params.append(("RelayState", relay_state))
    params.append(("SigAlg", RSA_SHA256))
    query = urlencode(params)
    key_pem, _ = keypair(key_name)
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(query.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{url}?{query}&{urlencode({'Signature': base64.b64encode(signature).decode()})}"


def logout_request_url(name_id: str, session_indexes: list[str], *, key_name: str = "idp",
                       **options: Any) -> tuple[str, str]:
    """The IdP sends the browser to our logout service: (the request's ID, the URL)."""
    request_id, xml = logout_request_xml(name_id, session_indexes, **options)
    return request_id, redirect_url(SLS_URL, "SAMLRequest", xml, key_name=key_name)


def redirect_message(location: str, field_name: str = "SAMLResponse") -> Any:
    """The message an HTTP-Redirect URL carries, parsed."""
    query = parse_qs(urlsplit(location).query)
    return etree.fromstring(zlib.decompress(base64.b64decode(query[field_name][0]), -15))
