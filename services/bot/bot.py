"""Wiring only: the Bot and its session, the dispatcher (storage, middlewares, routers), start-up."""
from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramNetworkError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.fsm.strategy import FSMStrategy

from services.bot.albums import AlbumCollector
from services.bot.client import DiseaseIdClient
from services.bot.middlewares import AllowlistMiddleware, DependenciesMiddleware
from services.bot.ratelimit import RateLimiter
from services.bot.routers import ROUTERS
from services.bot.settings import BotSettings
from services.common.logs import setup_logging

log = logging.getLogger(__name__)


def create_bot(settings: BotSettings) -> Bot:
    api = TelegramAPIServer.from_base(settings.telegram_api_url) if settings.telegram_api_url else None
    session = AiohttpSession(api=api) if api else AiohttpSession()
    return Bot(settings.token.get_secret_value(), session=session,
               default=DefaultBotProperties(parse_mode=ParseMode.HTML))


def create_storage(settings: BotSettings) -> BaseStorage:
    if settings.redis_url:
        return RedisStorage.from_url(settings.redis_url)
    log.warning("REDIS_URL is not set: task choices live in memory and are lost on restart")
    return MemoryStorage()


def create_client(settings: BotSettings) -> DiseaseIdClient:
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return DiseaseIdClient(settings.inference_url, settings.explain_url, api_key=key,
                           timeout_s=settings.request_timeout_s)


def create_dispatcher(settings: BotSettings, client: DiseaseIdClient) -> Dispatcher:
    # FSMStrategy.CHAT: the chosen task belongs to the chat, so a group shares one choice.
    dp = Dispatcher(storage=create_storage(settings), fsm_strategy=FSMStrategy.CHAT)
    dp.update.outer_middleware(AllowlistMiddleware(settings.allowed_user_ids))
    dp.update.middleware(DependenciesMiddleware(
        settings=settings, client=client, limiter=RateLimiter(settings.rate_limit_per_minute),
        albums=AlbumCollector(settings.album_wait_s),
    ))
    dp.include_routers(*ROUTERS)
    dp.shutdown.register(client.aclose)
    return dp


async def run_polling(settings: BotSettings) -> None:
    bot = create_bot(settings)
    dp = create_dispatcher(settings, create_client(settings))
    try:
        await bot.delete_webhook()  # getUpdates is refused while a webhook is set
    except TelegramNetworkError as exc:  # polling retries with backoff; no reason to die here
        log.warning("could not reach Telegram to delete the webhook: %s", exc)
    await dp.start_polling(bot, polling_timeout=settings.polling_timeout_s)


def run_webhook(settings: BotSettings) -> None:
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    if not settings.webhook_endpoint:
        raise SystemExit("BOT_MODE=webhook needs BOT_WEBHOOK_URL (the public base URL Telegram should call)")
    bot = create_bot(settings)
    dp = create_dispatcher(settings, create_client(settings))
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None

    async def register_webhook(bot: Bot) -> None:
        await bot.set_webhook(settings.webhook_endpoint, secret_token=secret,
                              allowed_updates=dp.resolve_used_update_types())

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    dp.startup.register(register_webhook)
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    handler = SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret)
    handler.register(app, path=settings.webhook_path)
    setup_application(app, dp, bot=bot)
    web.run_app(app, host=settings.webhook_host, port=settings.webhook_port, print=None)


def main() -> None:
    settings = BotSettings()
    setup_logging(settings.log_level, [settings.token.get_secret_value()])
    log.info("starting in %s mode; inference %s, explain %s", settings.mode, settings.inference_url,
             settings.explain_url)
    if settings.mode == "webhook":
        run_webhook(settings)
    else:
        asyncio.run(run_polling(settings))
