"""Middlewares: the allowlist gate, and the one that hands shared resources to every handler."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update, User

from services.bot.texts import lang_of, t

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class AllowlistMiddleware(BaseMiddleware):
    """Drops updates from users outside `allowed` (an empty set lets everyone in), telling them once why."""

    def __init__(self, allowed: frozenset[int]):
        self.allowed = allowed

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if not self.allowed or (user is not None and user.id in self.allowed):
            return await handler(event, data)
        log.info("ignored an update from user %s (not on the allowlist)", user.id if user else None)
        if isinstance(event, Update) and user is not None:
            text = t("not_allowed", lang_of(user), user_id=user.id)
            if event.message is not None:
                await event.message.answer(text)
            elif event.callback_query is not None:
                await event.callback_query.answer(text, show_alert=True)
        return None


class DependenciesMiddleware(BaseMiddleware):
    """Injects settings, the service client and other shared objects (by keyword) plus the user's language."""

    def __init__(self, **resources: Any):
        self.resources = resources

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        data.update(self.resources)
        data["lang"] = lang_of(data.get("event_from_user"))
        return await handler(event, data)
