"""A single slice, as a photo or as an image document."""
from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from services.bot.analysis import analyse_slice
from services.bot.client import DiseaseIdClient
from services.bot.ratelimit import RateLimiter
from services.bot.settings import BotSettings
from services.bot.tasks import current_task

router = Router(name="images")


@router.message(F.media_group_id.is_(None), F.photo | F.document)
async def on_image(message: Message, bot: Bot, client: DiseaseIdClient, settings: BotSettings,
                   limiter: RateLimiter, lang: str, state: FSMContext) -> None:
    task = await current_task(state, settings.default_task)
    await analyse_slice(message, bot, client, settings, limiter, lang, task)
