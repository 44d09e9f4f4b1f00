"""The last line of defence: log the failure, apologise, keep polling."""
from __future__ import annotations

import logging

from aiogram import Router
from aiogram.types import ErrorEvent

from services.bot.texts import lang_of, t

log = logging.getLogger(__name__)

router = Router(name="errors")


@router.errors()
async def on_error(event: ErrorEvent) -> bool:
    log.exception("update %s failed", event.update.update_id, exc_info=event.exception)
    message = event.update.message or (event.update.callback_query.message
                                       if event.update.callback_query else None)
    if message is not None and hasattr(message, "answer"):
        user = message.from_user if event.update.message else event.update.callback_query.from_user
        try:
            await message.answer(t("error", lang_of(user)))
        except Exception:  # noqa: BLE001 - Telegram itself may be what failed
            log.warning("could not tell the user about the failure")
    return True
