"""The bot's conversation without the analysis services: commands, the task keyboard and its persistence in
Redis, friendly answers to unsupported content, an inference outage, the rate limit and the allowlist.

The bot runs as a real subprocess against the fake Bot API; INFERENCE_URL points at a closed port.
"""
from __future__ import annotations

import json

import pytest
import redis

from tests.bot.bot_process import BotProcess
from tests.bot.conftest import tumor_slice
from tests.bot.fake_telegram import make_user, strip_html
from tests.helpers import free_port

ALLOWED = make_user(1001, "en")
ALLOWED_RU = make_user(1002, "ru")
THIRD = make_user(1003, "en")
STRANGER = make_user(1999, "en")


@pytest.fixture(scope="module")
def bot(telegram, redis_server):
    dead = f"http://127.0.0.1:{free_port()}"
    with BotProcess(telegram, INFERENCE_URL=dead, EXPLAIN_URL=dead, REDIS_URL=redis_server.url,
                    BOT_RATE_LIMIT_PER_MINUTE="1",
                    BOT_ALLOWED_USER_IDS=f"{ALLOWED['id']},{ALLOWED_RU['id']},{THIRD['id']}") as process:
        yield process
        assert process.alive, f"the bot died:\n{process.log()}"
        assert telegram.token not in process.log(), "the bot token leaked into the log"
        assert telegram.token.split(":")[1] not in process.log()


def reply_to(telegram, user, send, *, method: str = "sendMessage", timeout: float = 15.0):
    """Do `send()` and return the bot's first `method` call to that user's chat afterwards."""
    mark = telegram.mark()
    send()
    return telegram.wait_for(lambda c: c.method == method and c.chat_id == user["id"], timeout, after=mark)


def test_start_explains_the_bot_and_disclaims_in_the_users_language(bot, telegram):
    english = strip_html(reply_to(telegram, ALLOWED, lambda: telegram.send_text(ALLOWED, "/start")).text)
    assert "research tool, not a medical device" in english
    assert "/task" in english and "DICOM" in english
    user = ALLOWED_RU
    russian = strip_html(reply_to(telegram, user, lambda: telegram.send_text(user, "/start")).text)
    assert "не медицинское изделие" in russian


def test_help_lists_commands_and_the_limit(bot, telegram):
    text = strip_html(reply_to(telegram, ALLOWED, lambda: telegram.send_text(ALLOWED, "/help")).text)
    assert "/task" in text and "1 analyses per minute" in text


def test_task_keyboard_choice_is_kept_in_redis_across_restarts(bot, telegram, redis_server):
    user = ALLOWED_RU
    prompt = reply_to(telegram, user, lambda: telegram.send_text(user, "/task"))
    buttons = [b for row in prompt.params["reply_markup"]["inline_keyboard"] for b in row]
    assert [b["text"] for b in buttons] == ["✓ Опухоль мозга", "Деменция"]  # Russian, current task marked

    sent = {"message_id": 77, "date": 0, "chat": {"id": user["id"], "type": "private"}, "text": "…"}
    mark = telegram.mark()
    telegram.press(user, sent, buttons[1]["callback_data"])
    answer = telegram.wait_for(lambda c: c.method == "answerCallbackQuery", after=mark)
    assert "Деменция" in answer.params["text"]
    edited = telegram.wait_for(lambda c: c.method == "editMessageText" and c.chat_id == user["id"],
                               after=mark)
    assert int(edited.params["message_id"]) == 77 and "Деменция" in edited.text

    # aiogram's RedisStorage keeps per-chat FSM data under fsm:<chat>:<chat>:data (FSMStrategy.CHAT).
    stored = redis.Redis.from_url(redis_server.url).get(f"fsm:{user['id']}:{user['id']}:data")
    assert json.loads(stored)["task"] == "dementia"

    bot.stop()
    bot.start()
    text = strip_html(reply_to(telegram, user, lambda: telegram.send_text(user, "/help")).text)
    assert "Текущая задача: Деменция" in text


def test_a_typed_task_name_answers_the_open_keyboard(bot, telegram, redis_server):
    user = make_user(ALLOWED["id"], "en")
    reply_to(telegram, user, lambda: telegram.send_text(user, "/task"))
    text = strip_html(reply_to(telegram, user, lambda: telegram.send_text(user, "Dementia")).text)
    assert "Task: Dementia" in text
    reply_to(telegram, user, lambda: telegram.send_text(user, "/task"))
    reply_to(telegram, user, lambda: telegram.send_text(user, "tumor"))
    stored = redis.Redis.from_url(redis_server.url).get(f"fsm:{user['id']}:{user['id']}:data")
    assert json.loads(stored)["task"] == "tumor"


STICKER = {"file_id": "stk", "file_unique_id": "stk", "type": "regular", "width": 512, "height": 512,
           "is_animated": False, "is_video": False}
VIDEO = {"file_id": "vid", "file_unique_id": "vid", "width": 640, "height": 480, "duration": 3}
VOICE = {"file_id": "voc", "file_unique_id": "voc", "duration": 2}
LOCATION = {"latitude": 55.75, "longitude": 37.62}


@pytest.mark.parametrize(("send", "expected"), [
    (lambda tg, u: tg.send_text(u, "what is this?"), "rather than text"),
    (lambda tg, u: tg.send_message(u, sticker=STICKER), "sticker"),
    (lambda tg, u: tg.send_message(u, video=VIDEO), "cannot analyse videos"),
    (lambda tg, u: tg.send_message(u, voice=VOICE), "audio"),
    (lambda tg, u: tg.send_message(u, location=LOCATION), "cannot use this kind of message"),
    (lambda tg, u: tg.send_document(u, b"%PDF-1.4 ...", file_name="report.pdf", mime_type="application/pdf"),
     "this file is application/pdf"),
    (lambda tg, u: tg.send_document(u, b"\xff\xd8\xff", file_name="huge.jpg", mime_type="image/jpeg",
                                    size=25 * 1024 * 1024),
     "This file is 25 MB; I can download files up to 20 MB"),
    (lambda tg, u: tg.send_document(u, b"not an image at all", file_name="slice.png", mime_type="image/png"),
     "does not look like a readable JPEG, PNG or DICOM"),
], ids=["text", "sticker", "video", "voice", "location", "pdf", "too-large", "corrupt"])
def test_unsupported_content_gets_a_specific_answer(bot, telegram, send, expected):
    user = make_user(ALLOWED["id"], "en")
    mark = telegram.mark()
    send(telegram, user)
    call = telegram.wait_for(lambda c: c.method in ("sendMessage", "editMessageText")
                             and c.chat_id == user["id"] and "nalysing" not in c.text, after=mark)
    assert expected in strip_html(call.text)


def test_outage_is_answered_politely_then_rate_limit_then_bot_keeps_running(bot, telegram):
    """INFERENCE_URL is a closed port; BOT_RATE_LIMIT_PER_MINUTE=1."""
    user = make_user(ALLOWED_RU["id"], "en")
    mark = telegram.mark()
    telegram.send_photo(user, tumor_slice().read_bytes())
    status = telegram.wait_for(lambda c: c.method == "sendMessage" and c.chat_id == user["id"], after=mark)
    assert "Analysing the slice" in status.text
    final = telegram.wait_for(lambda c: c.method == "editMessageText" and c.chat_id == user["id"], after=mark)
    assert "service is not reachable right now" in final.text

    limited = reply_to(telegram, user, lambda: telegram.send_photo(user, tumor_slice().read_bytes()))
    assert "1 analyses per minute" in limited.text and "wait" in limited.text
    # The limit covers analyses only: the bot still talks.
    assert "/task" in reply_to(telegram, user, lambda: telegram.send_text(user, "/help")).text
    assert bot.alive


def test_a_failing_update_gets_an_apology_and_the_bot_carries_on(bot, telegram):
    """A photo whose file the Bot API cannot find: getFile fails inside the handler."""
    user = THIRD
    missing = [{"file_id": "no-such-file", "file_unique_id": "x", "width": 512, "height": 512}]
    mark = telegram.mark()
    telegram.send_message(user, photo=missing)
    final = telegram.wait_for(lambda c: c.method == "editMessageText" and c.chat_id == user["id"], after=mark)
    assert "Something went wrong on my side" in final.text
    assert telegram.wait_for(lambda c: c.method == "getFile", after=mark).params["file_id"] == "no-such-file"
    assert "research tool" in reply_to(telegram, user, lambda: telegram.send_text(user, "/start")).text
    assert bot.alive


def test_users_outside_the_allowlist_are_turned_away(bot, telegram):
    text = reply_to(telegram, STRANGER, lambda: telegram.send_text(STRANGER, "/start")).text
    assert "private" in text and str(STRANGER["id"]) in text
    photo = tumor_slice().read_bytes()
    text = reply_to(telegram, STRANGER, lambda: telegram.send_photo(STRANGER, photo)).text
    assert "private" in text
