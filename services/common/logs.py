"""Logging for services: one stderr handler on the ``services`` logger, level from settings.

Per-request logging is left to the access log (which uvicorn can switch off); our own loggers speak at
start-up, on errors and on security-relevant events only, and never log keys, uploads or DICOM tags.
"""
from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> logging.Logger:
    logger = logging.getLogger("services")
    if not any(getattr(h, "_diseaseid", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._diseaseid = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())
    return logger
