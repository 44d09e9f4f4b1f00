"""API-key authentication by the ``X-API-Key`` header, compared in constant time.

Keys come from ``DISEASEID_API_KEYS`` (comma-separated, through the service's settings). With no key
configured the service runs in development mode, accepts every request, and says so loudly at start-up.
Keys are never logged: settings hold them as ``SecretStr`` and this module only logs how many there are.

Use: ``configure_auth(app, settings.api_keys)`` when building the app, ``log_auth_mode(...)`` at start-up,
and ``dependencies=[Depends(require_api_key)]`` (or the :data:`ApiKey` alias) on protected routers; the
dependency also documents the header in OpenAPI.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
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


async def require_api_key(request: Request,
                          key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    """FastAPI dependency: 401 with the JSON error body unless the key is valid (or no keys are set)."""
    if not key_is_valid(key, getattr(request.app.state, "api_key_digests", ())):
        raise Unauthorized("invalid X-API-Key header" if key else "the X-API-Key header is required")


ApiKey = Annotated[None, Depends(require_api_key)]


def log_auth_mode(keys: Sequence[SecretStr], service: str) -> None:
    """One start-up line: how many keys are active, or a warning that there is no authentication."""
    if keys:
        log.info("%s: API-key authentication on (%d keys configured)", service, len(keys))
    else:
        log.warning("%s: DEVELOPMENT MODE - DISEASEID_API_KEYS is empty, every request is accepted "
                    "without authentication; set it before exposing this service", service)
