"""Logging for every service process, one format: ``configure_logging`` for the HTTP services (one stderr
handler on the ``services`` logger, level from settings; ``build_app`` calls it), ``setup_logging`` for a
process of its own (the explain worker, the bot, the PACS bridge: the root logger, with secrets redacted).

Per-request logging is left to the access log (which uvicorn can switch off); our own loggers speak at
start-up, on errors and on security-relevant events only, and never log keys, uploads or DICOM tags.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> logging.Logger:
    logger = logging.getLogger("services")
    if not any(getattr(h, "_diseaseid", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._diseaseid = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())
    return logger


class RedactFilter(logging.Filter):
    """Replaces each secret (e.g. the bot token, which sits in every Bot API URL) in a record's message and
    traceback with ``<redacted>``."""

    def __init__(self, secrets: Sequence[str]):
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


def setup_logging(level: str, secrets: Sequence[str] = ()) -> None:
    """The root logger of a process of its own: one stderr handler in ``FORMAT``, ``secrets`` redacted."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per request from httpx is enough; httpcore's connection chatter is not.
    logging.getLogger("httpcore").setLevel(max(logging.INFO, root.level))
