"""Gathers the messages of one Telegram album: each arrives as its own update, sharing a media_group_id."""
from __future__ import annotations

import asyncio

from aiogram.types import Message


class AlbumCollector:
    """The first handler of an album waits until no new part arrived for `wait_s`, then gets all parts;
    handlers of later parts get None and return. Relies on updates being handled concurrently (aiogram's
    default for polling and webhooks)."""

    def __init__(self, wait_s: float = 1.0):
        self.wait_s = wait_s
        self._parts: dict[str, list[Message]] = {}
        self._last: dict[str, float] = {}

    async def collect(self, message: Message) -> list[Message] | None:
        group = message.media_group_id
        if group is None:
            return [message]
        loop = asyncio.get_running_loop()
        self._last[group] = loop.time()
        if group in self._parts:
            self._parts[group].append(message)
            return None
        self._parts[group] = [message]
        try:
            while (remaining := self._last[group] + self.wait_s - loop.time()) > 0:
                await asyncio.sleep(remaining)
            return sorted(self._parts[group], key=lambda m: m.message_id)
        finally:
            self._parts.pop(group, None)
            self._last.pop(group, None)
