"""An album (media group) of slices: one study, one subject-level conclusion."""
from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from services.bot.albums import AlbumCollector
from services.bot.analysis import analyse_study
from services.bot.client import DiseaseIdClient
from services.bot.ratelimit import RateLimiter
from services.bot.settings import BotSettings
from services.bot.tasks import current_task

router = Router(name="albums")


@router.message(F.media_group_id)
async def on_album_part(message: Message, bot: Bot, client: DiseaseIdClient, settings: BotSettings,
                        limiter: RateLimiter, albums: AlbumCollector, lang: str, state: FSMContext) -> None:
    parts = await albums.collect(message)
    if parts is None:  # a later part: the album's first handler answers for all of them
        return
    task = await current_task(state, settings.default_task)
    await analyse_study(parts, bot, client, settings, limiter, lang, task)
