"""A test identity provider served over HTTPS: HIN's part in a browser test, with its own key.

It is what the development IdP (``app/auth/dev_idp.py``) is on a laptop, but outside the app
and with a key of the test's own (``tests.support.saml_idp.keypair(key_name)``), so that the
portal can run with its production settings, which refuse the development IdP. It speaks the
two SAML bindings Relais uses:

* ``GET /sso`` (HTTP-Redirect): checks the AuthnRequest's signature with the SP's certificate,
  then shows a sign-in page ("Identifiant HIN"); ``POST /sso/authenticate`` builds the
  Response with :mod:`tests.support.saml_idp` (assertion and response signed, RSA-SHA256) and
  shows the page a real IdP shows, a form that posts it to the ACS ("Continuer vers Relais",
  no script);
* ``GET /slo`` (HTTP-Redirect): checks the LogoutRequest's signature, then redirects to the
  SP's single logout service with a LogoutResponse signed in the query, as HIN does.

Every request it accepted is kept (:attr:`TestIdp.authn_requests`, :attr:`logout_requests`),
so that a test can check what the SP sent. Start it with ``with TestIdp(...) as idp``.
"""

from __future__ import annotations

import base64
import html
import secrets
import ssl
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.utils import OneLogin_Saml2_Utils as Utils

from tests.support.saml_idp import SAML, SAMLP, SUCCESS, Attack, build, encode, keypair, new_id

#: What a test identity looks like to the SP: its NameID and its attributes (gln, names ...).
Identity = tuple[str, dict[str, str]]


@dataclass
class ReceivedRequest:
    """An AuthnRequest or LogoutRequest the IdP accepted (its signature checked)."""

    id: str
    issuer: str
    destination: str
    xml: str
    relay_state: str | None
    details: dict[str, str] = field(default_factory=dict)


class SamlRefused(Exception):
    """A request the IdP will not answer (unsigned, badly signed, unknown)."""


def _saml_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _redirect_part(query: str, name: str) -> str | None:
    """``name=value`` exactly as it stands in the raw query (signatures are over those bytes)."""
    for part in query.split("&"):
        if part.split("=", 1)[0] == name:
            return part
    return None


class _TlsServer(ThreadingHTTPServer):
    """HTTPS, the handshake in each connection's own thread (a stalled client blocks no one)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that gave up on the handshake
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


class TestIdp:
    """The IdP on ``https://<host>:<port>`` (``localhost`` by default: another *site* than the
    portal on 127.0.0.1, as HIN is, so that the ACS POST is a cross-site one)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, *, tls: tuple[Path, Path], sp_cert: str, sp_base: str,
                 identities: Mapping[str, Identity], host: str = "localhost",
                 key_name: str = "hin-idp") -> None:
        self.host = host
        self.tls = tls
        self.sp_cert = sp_cert
        self.sp_base = sp_base.rstrip("/")
        self.identities = dict(identities)
        self.key_name = key_name
        self.authn_requests: list[ReceivedRequest] = []
        self.logout_requests: list[ReceivedRequest] = []
        self.refusals: list[str] = []
        self._pending: dict[str, ReceivedRequest] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what the SP settings need ----------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the IdP first"
        return f"https://{self.host}:{self._server.server_address[1]}"

    @property
    def entity_id(self) -> str:
        return f"{self.url}/metadata"

    @property
    def cert(self) -> str:
        """The IdP's signing certificate (PEM), which the SP settings must trust."""
        return keypair(self.key_name)[1]

    def description(self) -> dict[str, str]:
        """``entity_id``, ``sso``, ``slo`` and ``cert``, as ``write_settings`` takes them."""
        return {"entity_id": self.entity_id, "sso": f"{self.url}/sso",
                "slo": f"{self.url}/slo", "cert": self.cert}

    # --- the SAML work ----------------------------------------------------------------------

    def _verified_request(self, query: str, kind: str) -> ReceivedRequest:
        """The signed ``SAMLRequest`` of an HTTP-Redirect query, its signature checked."""
        values = parse_qs(query)
        if "SAMLRequest" not in values or "Signature" not in values:
            raise SamlRefused(f"{kind}: unsigned or missing")
        algorithm = values.get("SigAlg", [""])[0]
        if algorithm != C.RSA_SHA256:
            raise SamlRefused(f"{kind}: signature algorithm {algorithm!r}")
        signed = "&".join(part for part in (_redirect_part(query, name) for name in
                                            ("SAMLRequest", "RelayState", "SigAlg")) if part)
        signature = base64.b64decode(values["Signature"][0])
        if not Utils.validate_binary_sign(signed, signature, self.sp_cert, algorithm):
            raise SamlRefused(f"{kind}: bad signature")
        xml = zlib.decompress(base64.b64decode(values["SAMLRequest"][0]), -15).decode()
        root = etree.fromstring(xml.encode())
        issuer = root.find(f"{{{SAML}}}Issuer")
        request = ReceivedRequest(
            id=str(root.get("ID")), issuer=issuer.text if issuer is not None else "",
            destination=str(root.get("Destination")), xml=xml,
            relay_state=values.get("RelayState", [None])[0],
        )
        if kind == "AuthnRequest":
            request.details["acs"] = str(root.get("AssertionConsumerServiceURL"))
        else:
            name_id = root.find(f"{{{SAML}}}NameID")
            index = root.find(f"{{{SAMLP}}}SessionIndex")
            request.details["name_id"] = name_id.text if name_id is not None else ""
            request.details["session_index"] = index.text if index is not None else ""
        return request

    def _signed_response(self, request: ReceivedRequest, login: str) -> str:
        name_id, attributes = self.identities[login]
        attack = Attack(
            in_response_to=request.id, destination=request.details["acs"],
            recipient=request.details["acs"], audience=request.issuer, issuer=self.entity_id,
            name_id=name_id, attributes=attributes, key_name=self.key_name,
        )
        return encode(build(attack))

    def _logout_redirect(self, request: ReceivedRequest) -> str:
        """The SP's SLS address with a signed LogoutResponse (HTTP-Redirect binding)."""
        destination = f"{self.sp_base}/auth/hin/logout"
        response = etree.Element(
            f"{{{SAMLP}}}LogoutResponse", nsmap={"samlp": SAMLP, "saml": SAML},
            ID=new_id(), Version="2.0", IssueInstant=_saml_time(datetime.now(UTC)),
            Destination=destination, InResponseTo=request.id,
        )
        etree.SubElement(response, f"{{{SAML}}}Issuer").text = self.entity_id
        status = etree.SubElement(response, f"{{{SAMLP}}}Status")
        etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value=SUCCESS)
        deflated = zlib.compress(etree.tostring(response))[2:-4]  # raw DEFLATE (RFC 1951)
        parts = [f"SAMLResponse={quote(base64.b64encode(deflated).decode(), safe='')}"]
        if request.relay_state is not None:
            parts.append(f"RelayState={quote(request.relay_state, safe='')}")
        parts.append(f"SigAlg={quote(C.RSA_SHA256, safe='')}")
        query = "&".join(parts)
        signature = Utils.sign_binary(query, keypair(self.key_name)[0])
        return f"{destination}?{query}&Signature={quote(base64.b64encode(signature), safe='')}"

    # --- HTTP -------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads what it needs from the IdP's lists

            def _page(self, status: int, title: str, body: str) -> None:
                page = (f'<!doctype html><html lang="fr"><head><meta charset="utf-8">'
                        f"<title>{html.escape(title)}</title></head><body>"
                        f"<h1>{html.escape(title)}</h1>{body}</body></html>").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(page)

            def _refuse(self, reason: str) -> None:
                with idp._lock:
                    idp.refusals.append(reason)
                self._page(400, "Requête refusée", "")

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                try:
                    if parts.path == "/sso":
                        self._sso(idp._verified_request(parts.query, "AuthnRequest"))
                    elif parts.path == "/slo":
                        request = idp._verified_request(parts.query, "LogoutRequest")
                        with idp._lock:
                            idp.logout_requests.append(request)
                        self.send_response(303)
                        self.send_header("Location", idp._logout_redirect(request))
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        self._page(404, "Introuvable", "")
                except SamlRefused as refused:
                    self._refuse(str(refused))

            def _sso(self, request: ReceivedRequest) -> None:
                handle = secrets.token_urlsafe(16)
                with idp._lock:
                    idp.authn_requests.append(request)
                    idp._pending[handle] = request
                self._page(200, "HIN (test) : connexion", (
                    '<form method="post" action="/sso/authenticate">'
                    f'<input type="hidden" name="handle" value="{handle}">'
                    '<label for="hin-login">Identifiant HIN</label>'
                    '<input id="hin-login" name="login" autocomplete="username">'
                    '<button type="submit">Se connecter</button></form>'))

            def do_POST(self) -> None:
                if urlsplit(self.path).path != "/sso/authenticate":
                    self._page(404, "Introuvable", "")
                    return
                length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
                form = parse_qs(self.rfile.read(length).decode())
                handle = form.get("handle", [""])[0]
                login = form.get("login", [""])[0]
                with idp._lock:
                    request = idp._pending.pop(handle, None)
                if request is None or login not in idp.identities:
                    self._refuse("unknown request or identity")
                    return
                response = idp._signed_response(request, login)
                relay = "" if request.relay_state is None else (
                    f'<input type="hidden" name="RelayState" '
                    f'value="{html.escape(request.relay_state)}">')
                self._page(200, "HIN (test) : retour vers le service", (
                    f'<form method="post" action="{html.escape(request.details["acs"])}">'
                    f'<input type="hidden" name="SAMLResponse" value="{response}">{relay}'
                    '<button type="submit">Continuer vers Relais</button></form>'))

        return Handler

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> TestIdp:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        server = _TlsServer((self.host, 0), self._handler(), context)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="test-idp",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "the test IdP did not stop"
        self._server = self._thread = None

    def __enter__(self) -> TestIdp:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
