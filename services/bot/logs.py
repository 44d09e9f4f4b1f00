"""Logging set-up that keeps the bot token out of every log line (it sits in each Bot API URL)."""
from __future__ import annotations

import logging


class RedactFilter(logging.Filter):
    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if any(s in message or (record.exc_text and s in record.exc_text) for s in self.secrets):
            for s in self.secrets:
                message = message.replace(s, "<redacted>")
                if record.exc_text:
                    record.exc_text = record.exc_text.replace(s, "<redacted>")
            record.msg, record.args = message, None
        return True


def setup_logging(level: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per request from httpx is enough; httpcore's connection chatter is not.
    logging.getLogger("httpcore").setLevel(max(logging.INFO, root.level))
