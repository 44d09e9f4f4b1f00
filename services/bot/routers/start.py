"""/start and /help."""
from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from services.bot.settings import BotSettings
from services.bot.tasks import current_task
from services.bot.texts import t, task_name

router = Router(name="start")


@router.message(CommandStart())
async def start(message: Message, lang: str) -> None:
    await message.answer(t("start", lang))


@router.message(Command("help"))
async def help_(message: Message, lang: str, state: FSMContext, settings: BotSettings) -> None:
    task = await current_task(state, settings.default_task)
    limit = settings.rate_limit_per_minute or "∞"
    await message.answer(t("help", lang, limit=limit, task=task_name(task, lang)))
