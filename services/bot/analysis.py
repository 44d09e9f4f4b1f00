"""The two flows behind the image routers: one slice (conclusion, then heatmaps) and one study (an album)."""
from __future__ import annotations

import logging
import re
from html import escape

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, InputMediaPhoto, Message
from aiogram.utils.chat_action import ChatActionSender

from services.bot.client import DiseaseIdClient, InputRejected, ServiceCallError, ServiceTimeout
from services.bot.formatting import conclusion_text
from services.bot.media import Rejection, download, image_ref
from services.bot.ratelimit import RateLimiter
from services.bot.settings import BotSettings
from services.bot.texts import TEXTS, t, task_name
from services.bot.views import ConclusionView, Upload

log = logging.getLogger(__name__)


async def show(status: Message, text: str) -> None:
    """Replace the status message; if Telegram refuses the edit, say it in a new message."""
    try:
        await status.edit_text(text)
    except TelegramBadRequest as exc:
        log.warning("could not edit the status message: %s", exc.message)
        await status.answer(text)


_SLICE_PAIR = re.compile(r"slices (\d+) and (\d+)")


def _item(index: int, positions: list[int] | None) -> int:
    """The album item (from 1) of the service's slice ``index`` (from 0); ``positions``: each slice sent, its
    place in the album (items that were not images were left out before sending)."""
    return positions[index] if positions is not None and 0 <= index < len(positions) else index + 1


def study_refusal_text(exc: InputRejected, lang: str, positions: list[int] | None = None) -> str | None:
    """A study refused as not one patient's series (422 ``mixed_*``), in the user's language; None otherwise."""
    code = exc.code or ""
    if not code.startswith("mixed_") or f"study_why_{code}" not in TEXTS:
        return None
    pair = _SLICE_PAIR.search(exc.message or "")
    if pair is None:
        return t("study_refused_generic", lang)
    a, b = (_item(int(i), positions) for i in pair.groups())
    return t("study_refused", lang, a=a, b=b, why=t(f"study_why_{code}", lang))


def study_warning_texts(conclusion: ConclusionView, lang: str, positions: list[int] | None = None) -> list[str]:
    """The study's warnings (slices that may not be one stack), in the user's language."""
    notes = []
    for warning in conclusion.warnings:
        key = f"study_warning_{warning.code}"
        items = [_item(i, positions) for i in warning.slices]
        if key in TEXTS and len(items) >= (3 if warning.code == "out_of_order" else 2):
            notes.append(t(key, lang, a=items[0], b=items[1], c=items[-1]))
        else:
            notes.append(t("study_warning_other", lang, message=escape(warning.message)))
    return notes


def failure_text(exc: Exception, lang: str) -> str:
    if isinstance(exc, Rejection):
        return t(exc.key, lang, **exc.values)
    if isinstance(exc, InputRejected) and (refusal := study_refusal_text(exc, lang)) is not None:
        return refusal
    if isinstance(exc, InputRejected):
        return t("input_rejected", lang, reason=escape(exc.message or str(exc.code or "")))
    if isinstance(exc, ServiceTimeout):
        return t("service_slow", lang)
    if isinstance(exc, ServiceCallError):
        return t("service_down", lang)
    return t("error", lang)


def rate_limited(message: Message, limiter: RateLimiter, settings: BotSettings, lang: str) -> str | None:
    """The text to answer when the sender is over the limit (the hit is recorded otherwise)."""
    user_id = message.from_user.id if message.from_user else message.chat.id
    wait = limiter.hit(user_id)
    if not wait:
        return None
    log.info("user %s is rate limited for %.1f s", user_id, wait)
    return t("rate_limited", lang, limit=settings.rate_limit_per_minute, seconds=RateLimiter.seconds(wait))


async def analyse_slice(message: Message, bot: Bot, client: DiseaseIdClient, settings: BotSettings,
                        limiter: RateLimiter, lang: str, task: str) -> None:
    """Status message, conclusion edited in, then the heatmap album once the explain job is done."""
    try:
        ref = image_ref(message, settings.max_file_bytes)
    except Rejection as exc:
        await message.reply(failure_text(exc, lang))
        return
    if (refusal := rate_limited(message, limiter, settings, lang)) is not None:
        await message.reply(refusal)
        return
    status = await message.reply(t("analysing", lang, task=task_name(task, lang)))
    try:
        async with ChatActionSender.typing(bot=bot, chat_id=message.chat.id):
            upload = await download(bot, ref, settings.max_file_bytes)
            conclusion = await client.predict(upload, task)
    except (Rejection, ServiceCallError) as exc:
        log.info("slice not analysed: %r", exc)
        await show(status, failure_text(exc, lang))
        return
    except Exception:  # e.g. Telegram refusing the download: apologise in place of the status
        log.exception("slice not analysed")
        await show(status, t("error", lang))
        return
    await show(status, conclusion_text(conclusion, lang))
    if conclusion.diagnosis:  # no heatmaps of a diagnosis that was not given
        await send_heatmaps(message, bot, client, settings, lang, upload, conclusion)


async def send_heatmaps(message: Message, bot: Bot, client: DiseaseIdClient, settings: BotSettings, lang: str,
                        upload: Upload, conclusion: ConclusionView, note: str | None = None) -> None:
    """The explain job's pictures as an album replying to ``message``; ``note`` heads the first caption."""
    try:
        async with ChatActionSender.upload_photo(bot=bot, chat_id=message.chat.id):
            result = await client.explain(upload, conclusion.task, role=conclusion.model_role,
                                          timeout_s=settings.explain_timeout_s,
                                          poll_s=settings.explain_poll_s)
    except ServiceCallError as exc:  # failed, timed out, or the explain service is down
        log.warning("no heatmaps for this slice: %r", exc)
        await message.reply(t("heatmaps_failed", lang))
        return
    label = escape(result.target(lang) or conclusion.display(lang))
    captions = [t(f"caption_{name}", lang, label=label) for name in result.images]
    if note and captions:
        captions[0] = f"{escape(note)}\n{captions[0]}"
    media = [InputMediaPhoto(media=BufferedInputFile(png, filename=f"{name}.png"), caption=caption)
             for (name, png), caption in zip(result.images.items(), captions, strict=True)]
    await message.reply_media_group(media=media)


async def analyse_study(messages: list[Message], bot: Bot, client: DiseaseIdClient, settings: BotSettings,
                        limiter: RateLimiter, lang: str, task: str) -> None:
    """An album of slices of one subject: one subject-level conclusion from `/predict/study`."""
    first = messages[0]
    notes: list[str] = []
    if len(messages) > settings.max_album_size:
        notes.append(t("album_trimmed", lang, n=len(messages), limit=settings.max_album_size))
        messages = messages[: settings.max_album_size]
    refs, skipped = [], 0
    for part in messages:
        try:
            refs.append((part, image_ref(part, settings.max_file_bytes)))
        except Rejection:
            skipped += 1
    if not refs:
        await first.reply(t("album_empty", lang))
        return
    if (refusal := rate_limited(first, limiter, settings, lang)) is not None:
        await first.reply(refusal)
        return
    status = await first.reply(t("analysing_study", lang, n=len(refs), task=task_name(task, lang)))
    positions: list[int] | None = None
    try:
        async with ChatActionSender.typing(bot=bot, chat_id=first.chat.id):
            parts, uploads = [], []
            for part, ref in refs:
                try:
                    uploads.append(await download(bot, ref, settings.max_file_bytes))
                    parts.append(part)
                except Rejection:
                    skipped += 1
            if not uploads:
                raise Rejection("album_empty")
            positions = [messages.index(part) + 1 for part in parts]  # album items, from 1
            conclusion = await client.predict_study(uploads, task)
    except (Rejection, ServiceCallError) as exc:
        log.info("study not analysed: %r", exc)
        refusal = study_refusal_text(exc, lang, positions) if isinstance(exc, InputRejected) else None
        await show(status, refusal or failure_text(exc, lang))
        return
    except Exception:
        log.exception("study not analysed")
        await show(status, t("error", lang))
        return
    if skipped:
        notes.append(t("album_skipped", lang, n=skipped))
    notes += study_warning_texts(conclusion, lang, positions)
    await show(status, "\n\n".join([conclusion_text(conclusion, lang, study=True), *notes]))
    k = conclusion.key_slice
    if k is not None and 0 <= k < len(uploads):
        # Heatmaps of the slice that weighed most, as a reply to that slice's message.
        await send_heatmaps(parts[k], bot, client, settings, lang, uploads[k], conclusion,
                            note=t("key_slice", lang, k=k + 1, n=len(uploads)))
