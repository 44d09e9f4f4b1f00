"""Moved to services.common.logs (one logging set-up for every service); kept only until the bot tests
being edited import it from there."""
from services.common.logs import RedactFilter, setup_logging

__all__ = ["RedactFilter", "setup_logging"]
