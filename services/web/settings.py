"""Web page settings: the shared ``DISEASEID_*`` ones, the services' addresses and key as the bot names them,
and the page's own as ``DISEASEID_WEB_*``:

- ``INFERENCE_URL``, ``EXPLAIN_URL``: where the services are (the page's server calls them, never the browser);
- ``DISEASEID_API_KEY``: the key the page's server sends them (``X-API-Key``); it never reaches a browser;
- ``DISEASEID_WEB_USERS``: ``name:password`` pairs, comma-separated: every page and API route then asks for
  HTTP Basic authentication (over TLS, through a reverse proxy, once it leaves the machine);
- ``DISEASEID_WEB_ALLOW_ANONYMOUS``: without users the page answers only this machine (clients on the loopback
  address, asking for a loopback host name); ``true`` serves anyone who can reach it, for a reverse proxy that
  does the login itself;
- ``DISEASEID_WEB_MAX_FILES`` (64, as the inference service's study limit), ``DISEASEID_MAX_UPLOAD_BYTES`` (per
  file, shared) and ``DISEASEID_WEB_MAX_REQUEST_BYTES`` (a whole upload, zips unpacked);
- ``DISEASEID_WEB_REQUEST_TIMEOUT_S``, ``DISEASEID_WEB_EXPLAIN_WAIT_S`` (one long poll of the explain job).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.common.settings import MB, ServiceSettings


class WebSettings(ServiceSettings):
    # A malformed DISEASEID_WEB_USERS must not end up in a traceback with its passwords.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    inference_url: str = Field("http://127.0.0.1:8000", validation_alias="INFERENCE_URL")
    explain_url: str = Field("http://127.0.0.1:8001", validation_alias="EXPLAIN_URL")
    api_key: SecretStr | None = Field(None, validation_alias="DISEASEID_API_KEY")

    web_users: Annotated[tuple[tuple[str, SecretStr], ...], NoDecode] = ()
    web_allow_anonymous: bool = False
    web_max_files: int = Field(64, ge=1)
    web_max_request_bytes: int = Field(256 * MB, ge=1)
    web_request_timeout_s: float = Field(120.0, gt=0)  # a 64-slice study on a busy CPU takes a while
    web_explain_wait_s: float = Field(10.0, ge=0)

    @field_validator("web_users", mode="before")
    @classmethod
    def _split_users(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        users = []
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, password = item.strip().partition(":")
            if not sep or not name or not password:
                # Never echo the item: it holds a password.
                raise ValueError("DISEASEID_WEB_USERS takes name:password pairs separated by commas")
            users.append((name, SecretStr(password)))
        return tuple(users)


@lru_cache(maxsize=1)
def get_settings() -> WebSettings:
    """The settings read from the environment, once per process."""
    return WebSettings()
