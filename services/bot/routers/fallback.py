"""Everything that is not a command or an image gets a specific, friendly answer."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from services.bot.texts import t

router = Router(name="fallback")


@router.message(F.text)
async def on_text(message: Message, lang: str) -> None:
    await message.answer(t("text_reply", lang))


@router.message(F.sticker)
async def on_sticker(message: Message, lang: str) -> None:
    await message.answer(t("sticker_reply", lang))


@router.message(F.video | F.video_note | F.animation)
async def on_video(message: Message, lang: str) -> None:
    await message.answer(t("video_reply", lang))


@router.message(F.voice | F.audio)
async def on_audio(message: Message, lang: str) -> None:
    await message.answer(t("audio_reply", lang))


@router.message()
async def on_anything(message: Message, lang: str) -> None:
    await message.answer(t("other_reply", lang))
