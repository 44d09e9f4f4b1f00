"""API-key authentication by the ``X-API-Key`` header, compared in constant time.

Keys come from ``DISEASEID_API_KEYS`` (comma-separated, through the service's settings). With no key
configured the service runs in development mode, accepts every request, and says so loudly at start-up.
Keys are never logged: settings hold them as ``SecretStr`` and this module only logs how many there are.

Use: ``configure_auth(app, settings.api_keys)`` when building the app (services.common.app does both),
``log_auth_mode(...)`` at start-up, and ``dependencies=[Depends(require_api_key)]`` on every protected router,
in every service; the dependency also documents the header in OpenAPI. A route that needs to know who is
asking takes :data:`TenantDep`: a short digest of the key (never the key), so that what one key created
another cannot reach.

A key sent in the query string (``?api_key=...``) is refused with a 401 that says where it belongs: URLs
end up in access logs, proxies and browser histories. :func:`redact_query_secrets` keeps such a key (and
any other secret-looking query value) out of uvicorn's access log all the same.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from services.common.errors import Unauthorized

log = logging.getLogger("services.auth")

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="API key; required unless the service runs in development mode")


def _digest(value: str) -> bytes:
    # Comparing fixed-length digests hides the keys' lengths as well as their contents.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def configure_auth(app: FastAPI, keys: Sequence[SecretStr]) -> None:
    """Store the digests of the accepted keys on the app; an empty sequence means development mode."""
    app.state.api_key_digests = tuple(_digest(k.get_secret_value()) for k in keys)
    redact_query_secrets()


def key_is_valid(presented: str | None, digests: Sequence[bytes]) -> bool:
    """True when ``presented`` matches one of the keys; every key is compared, so timing reveals nothing."""
    if not digests:
        return True
    if not presented:
        return False
    candidate = _digest(presented)
    ok = False
    for d in digests:
        ok |= hmac.compare_digest(candidate, d)
    return ok


# Query parameters that look like credentials (api_key, apikey, x-api-key, key, token, access_token, ...).
_SECRET_PARAM = re.compile(r"^(x[-_]?)?(api[-_]?)?(key|token|secret|access[-_]?token|password)$", re.I)


def _secret_params(request: Request) -> list[str]:
    return [name for name in request.query_params if _SECRET_PARAM.match(name)]


def tenant_id(key: str | None, auth_enabled: bool = True) -> str:
    """Who is asking, for keeping their jobs apart: 16 hex digits of the key's digest; "" in development
    mode (every caller is the same tenant there)."""
    if not auth_enabled or not key:
        return ""
    return hashlib.sha256(b"diseaseid-tenant:" + _digest(key)).hexdigest()[:16]


async def require_api_key(request: Request,
                          key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    """FastAPI dependency: 401 with the JSON error body unless the key is valid (or no keys are set)."""
    if _secret_params(request):
        raise Unauthorized("API keys are not accepted in the query string (it ends up in logs); "
                           "send the key in the X-API-Key header")
    if not key_is_valid(key, getattr(request.app.state, "api_key_digests", ())):
        raise Unauthorized("invalid X-API-Key header" if key else "the X-API-Key header is required")


async def require_tenant(request: Request, _: Annotated[None, Depends(require_api_key)],
                         key: Annotated[str | None, Security(api_key_header)] = None) -> str:
    """:func:`require_api_key` (run once per request, however many times it is named), then the caller's
    :func:`tenant_id`."""
    return tenant_id(key, bool(getattr(request.app.state, "api_key_digests", ())))


# Routers that need a key say so once: ``APIRouter(..., dependencies=[Depends(require_api_key)])``; a route
# that needs to know who is asking takes ``tenant: TenantDep`` as well.
TenantDep = Annotated[str, Depends(require_tenant)]


def _redact_target(target: str) -> str:
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        parts.append(f"{name}=***" if eq and _SECRET_PARAM.match(name) else item)
    return f"{path}?{'&'.join(parts)}"


class RedactQuerySecrets(logging.Filter):
    """Rewrites uvicorn access-log records so that secret-looking query values read ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], _redact_target(args[2]), *args[3:])
        return True


def redact_query_secrets(logger_name: str = "uvicorn.access") -> None:
    """Install :class:`RedactQuerySecrets` on the access logger (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactQuerySecrets) for f in logger.filters):
        logger.addFilter(RedactQuerySecrets())


def log_auth_mode(keys: Sequence[SecretStr], service: str) -> None:
    """One start-up line: how many keys are active, or a warning that there is no authentication."""
    if keys:
        log.info("%s: API-key authentication on (%d keys configured)", service, len(keys))
    else:
        log.warning("%s: DEVELOPMENT MODE - DISEASEID_API_KEYS is empty, every request is accepted "
                    "without authentication; set it before exposing this service", service)
