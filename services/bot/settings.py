"""Bot settings from the environment: names shared with the services as they are, the bot's own as BOT_*."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TELEGRAM_FILE_LIMIT = 20 * 1024 * 1024  # the cloud Bot API refuses getFile above 20 MB


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOT_", extra="ignore", validate_by_name=True)

    token: SecretStr = Field(validation_alias="TELEGRAM_BOT_TOKEN")
    # A local Bot API server (tests, or a self-hosted server); None means api.telegram.org.
    telegram_api_url: str | None = Field(None, validation_alias="TELEGRAM_API_URL")
    inference_url: str = Field("http://127.0.0.1:8000", validation_alias="INFERENCE_URL")
    explain_url: str = Field("http://127.0.0.1:8001", validation_alias="EXPLAIN_URL")
    api_key: SecretStr | None = Field(None, validation_alias="DISEASEID_API_KEY")
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")

    request_timeout_s: float = 30.0
    explain_timeout_s: float = 120.0
    explain_poll_s: float = 0.5
    default_task: str = "tumor"
    # Analyses (a photo, a document or an album) per user per minute; 0 switches the limit off.
    rate_limit_per_minute: int = Field(5, ge=0)
    # Comma-separated user ids; empty lets everyone use the bot.
    allowed_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    max_file_bytes: int = TELEGRAM_FILE_LIMIT
    # How long to wait for more parts of an album after the last one arrived.
    album_wait_s: float = 1.0
    max_album_size: int = 10

    mode: Literal["polling", "webhook"] = "polling"
    polling_timeout_s: int = 10
    webhook_url: str | None = None  # the public base URL Telegram calls
    webhook_path: str = "/telegram/webhook"
    webhook_secret: SecretStr | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080

    log_level: str = "INFO"

    @field_validator("allowed_user_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.replace(";", ",").split(",") if part.strip())
        return value

    @property
    def webhook_endpoint(self) -> str | None:
        return self.webhook_url.rstrip("/") + self.webhook_path if self.webhook_url else None
