"""Webhook mode: the bot registers its URL (with a secret) and answers updates POSTed to it."""
from __future__ import annotations

import time

import httpx
import pytest

from tests.bot.bot_process import BotProcess
from tests.bot.fake_telegram import FakeTelegram, make_user
from tests.helpers import free_port

SECRET = "webhook-secret-0123456789"


@pytest.fixture(scope="module")
def webhook_bot():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with FakeTelegram() as telegram, BotProcess(
        telegram, BOT_MODE="webhook", BOT_WEBHOOK_URL=url, BOT_WEBHOOK_HOST="127.0.0.1",
        BOT_WEBHOOK_PORT=str(port), BOT_WEBHOOK_SECRET=SECRET,
    ) as bot:
        # setWebhook is sent on start-up, just before the server listens.
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield telegram, bot, url
        assert telegram.token not in bot.log()


def test_webhook_is_registered_and_updates_are_answered(webhook_bot):
    telegram, bot, url = webhook_bot
    registered = telegram.wait_for(lambda c: c.method == "setWebhook")
    assert registered.params["url"] == f"{url}/telegram/webhook"
    assert registered.params["secret_token"] == SECRET
    assert set(registered.params["allowed_updates"]) == {"message", "callback_query"}
    assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}

    user = make_user(3001, "en")
    update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "from": user, "text": "/start",
                                          "chat": {"id": user["id"], "type": "private"},
                                          "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}
    refused = httpx.post(f"{url}/telegram/webhook", json=update, timeout=5,
                         headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
    assert refused.status_code == 401

    mark = telegram.mark()
    accepted = httpx.post(f"{url}/telegram/webhook", json=update, timeout=5,
                          headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert accepted.status_code == 200
    reply = telegram.wait_for(lambda c: c.method == "sendMessage" and c.chat_id == user["id"], after=mark)
    assert "not a medical device" in reply.text
    assert len([c for c in telegram.calls if c.method == "sendMessage" and c.chat_id == user["id"]]) == 1
