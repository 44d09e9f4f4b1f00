"""Who may use the page: an ASGI gate in front of every route but the probes.

- ``DISEASEID_WEB_USERS`` set: HTTP Basic authentication, every configured user compared in constant time
  (digests of ``name:password``, so neither lengths nor contents leak through timing). Basic sends the
  password with every request: once the page leaves this machine it belongs behind a TLS proxy.
- no users (the default): only this machine. The client must come from a loopback address *and* ask for a
  loopback host name (``127.0.0.1``, ``localhost``, ``[::1]``): the second check stops a web site that rebinds
  its own domain name to 127.0.0.1 from reading the page through the visitor's browser.
- ``DISEASEID_WEB_ALLOW_ANONYMOUS=true`` and no users: anyone who reaches it (a reverse proxy that does the
  login itself).

In every case a ``POST`` whose ``Origin`` is another site is refused: another page cannot make a logged-in
browser upload to this one. Refusals are the services' JSON error body (401 ``unauthorized``, 403
``forbidden``); ``/healthz``, ``/readyz`` and ``/metrics`` stay open for probes and scrapers, as on the APIs.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.errors import error_response

log = logging.getLogger("services.web")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def _digest(name: str, password: str) -> bytes:
    return hashlib.sha256(f"{name}\x00{password}".encode("utf-8", "surrogatepass")).digest()


def is_loopback_address(host: str | None) -> bool:
    try:
        address = ipaddress.ip_address((host or "").strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def host_name(host_header: str) -> str:
    """The name in a Host header, without the port: ``[::1]:8080`` -> ``::1``."""
    return (urlsplit(f"//{host_header}").hostname or "").lower()


def is_loopback_host(host_header: str) -> bool:
    name = host_name(host_header)
    return name in LOOPBACK_NAMES or name.endswith(".localhost") or is_loopback_address(name)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


class PageAccess:
    """The gate; ``users`` are ``(name, password)`` pairs (:class:`WebSettings.web_users`)."""

    def __init__(self, app: ASGIApp, users: Sequence[tuple[str, SecretStr]] = (), allow_anonymous: bool = False):
        self.app = app
        self.digests = tuple(_digest(name, password.get_secret_value()) for name, password in users)
        self.allow_anonymous = allow_anonymous

    def user_ok(self, authorization: str | None) -> bool:
        credentials = basic_credentials(authorization)
        if credentials is None:
            return False
        candidate = _digest(*credentials)
        ok = False
        for digest in self.digests:  # all of them, every time
            ok |= hmac.compare_digest(candidate, digest)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope, headers: Headers):
        host = headers.get("host", "")
        if self.digests:
            if not self.user_ok(headers.get("authorization")):
                return error_response(401, "unauthorized", "log in to use this page",
                                      {"WWW-Authenticate": 'Basic realm="diseaseid", charset="UTF-8"'})
        elif not self.allow_anonymous:
            client = scope.get("client") or (None, None)
            if not (is_loopback_address(client[0]) and is_loopback_host(host)):
                log.warning("refused a page request from outside this machine (no DISEASEID_WEB_USERS set)")
                return error_response(
                    403, "forbidden", "this page answers only its own machine (open it as http://127.0.0.1); "
                    "its operator can set DISEASEID_WEB_USERS for logins, or DISEASEID_WEB_ALLOW_ANONYMOUS "
                    "behind a proxy that logs people in")
        origin = headers.get("origin")
        # "null" too: a sandboxed frame on another site sends that.
        if scope["method"] == "POST" and origin is not None:
            if origin == "null" or (urlsplit(origin).netloc or "").lower() != host.lower():
                return error_response(403, "forbidden", "uploads are accepted from this page only")
        return None


def describe(users: Sequence[object], allow_anonymous: bool) -> str:
    """The start-up line that says how the page is protected."""
    if users:
        return f"web: page login on (HTTP Basic, {len(users)} user(s) from DISEASEID_WEB_USERS)"
    if allow_anonymous:
        return ("web: DISEASEID_WEB_ALLOW_ANONYMOUS is set and DISEASEID_WEB_USERS is empty: the page serves "
                "anyone who reaches it; keep it behind a proxy that logs people in")
    return ("web: no DISEASEID_WEB_USERS: the page serves this machine only (loopback clients); set users for "
            "logins")
