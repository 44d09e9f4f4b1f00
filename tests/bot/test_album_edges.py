"""Albums beyond the happy path: the collector's wait, more slices than allowed, parts that are not
usable images, and an album with no usable image at all.

The collector is tested in process with real asyncio timing; the rest runs the real bot against the fake Bot
API and the real inference service (no explain service: the conclusion is what is checked here).
"""
from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import numpy as np
import pytest
from aiogram.types import Message
from PIL import Image

from services.bot.albums import AlbumCollector
from tests.bot.bot_process import BotProcess
from tests.bot.conftest import dementia_slices
from tests.bot.fake_telegram import make_user
from tests.helpers import free_port
from tests.services.conftest import run_server

API_KEY = "album-edges-key-0001"
MAX_ALBUM = 4
# Long enough that a loaded machine delivering the parts in several polls does not split an album.
WAIT_S = 3.0


def message(message_id: int, group: str | None = "g1") -> Message:
    return Message.model_validate({"message_id": message_id, "date": 0, "media_group_id": group,
                                   "chat": {"id": 1, "type": "private"}})


# ---- the collector's wait, in process ---------------------------------------------------------------------


def test_the_first_part_waits_until_no_part_came_for_wait_s_and_gets_all_in_order():
    async def scenario():
        albums = AlbumCollector(wait_s=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = asyncio.create_task(albums.collect(message(12)))
        await asyncio.sleep(0.2)
        later = [await albums.collect(message(11))]  # parts arrive out of order
        await asyncio.sleep(0.2)
        later.append(await albums.collect(message(13)))
        parts = await first
        return parts, later, loop.time() - t0, albums

    parts, later, elapsed, albums = asyncio.run(scenario())
    assert later == [None, None]  # later parts' handlers return at once
    assert [m.message_id for m in parts] == [11, 12, 13]
    # the last part came at 0.4 s: the album closes 0.3 s later, not 0.3 s after the first part
    assert 0.65 <= elapsed < 1.5, elapsed
    assert albums._parts == {} and albums._last == {}  # nothing left behind


def test_a_part_after_the_wait_starts_a_new_album_and_albums_do_not_mix():
    async def scenario():
        albums = AlbumCollector(wait_s=0.15)
        a = asyncio.create_task(albums.collect(message(1, "a")))
        b = asyncio.create_task(albums.collect(message(5, "b")))
        await asyncio.sleep(0.05)
        assert await albums.collect(message(2, "a")) is None
        assert await albums.collect(message(6, "b")) is None
        first_a, first_b = await a, await b
        late = await albums.collect(message(3, "a"))  # the album "a" was answered: a new one begins
        return first_a, first_b, late

    first_a, first_b, late = asyncio.run(scenario())
    assert [m.message_id for m in first_a] == [1, 2] and [m.message_id for m in first_b] == [5, 6]
    assert [m.message_id for m in late] == [3]


def test_a_message_outside_any_album_is_answered_alone_and_at_once():
    async def scenario():
        albums = AlbumCollector(wait_s=5.0)
        t0 = time.monotonic()
        parts = await albums.collect(message(7, None))
        return parts, time.monotonic() - t0

    parts, elapsed = asyncio.run(scenario())
    assert [m.message_id for m in parts] == [7] and elapsed < 1.0
    assert AlbumCollector().wait_s == 1.0


# ---- the bot end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inference():
    with run_server("services.inference.main:app", {"DISEASEID_API_KEYS": API_KEY}, ready_path="/readyz",
                    timeout=300) as server:  # loads the dementia models; slow on a loaded 2-core box
        yield server


@pytest.fixture(scope="module")
def bot(telegram, redis_server, inference):
    dead = f"http://127.0.0.1:{free_port()}"  # no explain service: heatmaps are not what these tests check
    process = BotProcess(telegram, INFERENCE_URL=inference.url, EXPLAIN_URL=dead, DISEASEID_API_KEY=API_KEY,
                         REDIS_URL=redis_server.url, BOT_DEFAULT_TASK="dementia", BOT_RATE_LIMIT_PER_MINUTE="0",
                         BOT_MAX_ALBUM_SIZE=str(MAX_ALBUM), BOT_ALBUM_WAIT_S=str(WAIT_S))
    process.start(ready_timeout=300)  # a loaded 2-core box may need more than the default 30 s to import
    try:
        yield process
        assert process.alive, f"the bot died:\n{process.log()}"
    finally:
        process.close()


def study_subject(inference, contents: list[bytes]) -> dict:
    """What the inference service answers for these slices as one study (the bot must say the same)."""
    response = httpx.post(f"{inference.url}/predict/study", data={"task": "dementia"},
                          files=[("files", (f"s{i}.jpg", c, "image/jpeg")) for i, c in enumerate(contents)],
                          headers={"X-API-Key": API_KEY}, timeout=120)
    response.raise_for_status()
    return response.json()["subject"]


def send_parts(telegram, user, parts: list[dict], gap_s: float = 0.0) -> None:
    """Album parts (photo or document contents) sharing one media_group_id, `gap_s` apart."""
    group = str(uuid.uuid4().int)[:18]
    for k, content in enumerate(parts):
        if k and gap_s:
            time.sleep(gap_s)
        telegram.send_message(user, media_group_id=group, **content)


def final_text(telegram, user, mark, timeout=90.0) -> tuple[list, str]:
    """The status messages the bot sent for an album, and the text it finally edited in."""
    final = telegram.wait_for(lambda c: c.method == "editMessageText" and c.chat_id == user["id"],
                              timeout=timeout, after=mark)
    sent = [c for c in telegram.calls_to(user["id"], after=mark) if c.method == "sendMessage"]
    return sent, final.text


def test_parts_a_little_apart_make_one_study(bot, telegram, inference):
    user = make_user(3001, "en")
    contents = [p.read_bytes() for p in dementia_slices("MildDemented-002")[:2]]
    mark = telegram.mark()
    send_parts(telegram, user, [telegram.photo_content(c) for c in contents], gap_s=1.0)  # < the wait
    sent, text = final_text(telegram, user, mark)
    assert len(sent) == 1 and "Analysing 2 slices as one study" in sent[0].text
    assert f"<b>{study_subject(inference, contents)['display_en']}</b>" in text
    assert "left out" not in text and "at most" not in text


def test_more_slices_than_allowed_are_cut_to_the_first_ones(bot, telegram, inference):
    user = make_user(3002, "en")
    slices = dementia_slices("MildDemented-002") + dementia_slices("MildDemented-003")
    contents = [p.read_bytes() for p in slices[:MAX_ALBUM + 2]]
    assert len(contents) == MAX_ALBUM + 2
    mark = telegram.mark()
    telegram.send_album(user, contents)
    sent, text = final_text(telegram, user, mark)
    assert len(sent) == 1 and f"Analysing {MAX_ALBUM} slices as one study" in sent[0].text
    assert f"The album has {MAX_ALBUM + 2} items; I analyse at most {MAX_ALBUM} of them together." in text
    # the conclusion is the study of the first MAX_ALBUM slices, in the album's order
    assert f"<b>{study_subject(inference, contents[:MAX_ALBUM])['display_en']}</b>" in text


def test_unusable_parts_are_skipped_and_counted(bot, telegram, inference):
    user = make_user(3003, "en")
    contents = [p.read_bytes() for p in dementia_slices("MildDemented-002")[:2]]
    parts = [telegram.photo_content(contents[0]),
             telegram.document_content(b"not a slice", file_name="notes.txt", mime_type="text/plain"),
             telegram.photo_content(contents[1]),
             telegram.photo_content(b"\x00" * 500)]  # a photo whose bytes are no image: skipped after download
    mark = telegram.mark()
    send_parts(telegram, user, parts)
    sent, text = final_text(telegram, user, mark)
    # the text document is left out before the analysis starts; the broken photo when it is downloaded
    assert len(sent) == 1 and "Analysing 3 slices as one study" in sent[0].text
    assert "2 item(s) of the album were not usable images and were left out." in text
    assert f"<b>{study_subject(inference, contents)['display_en']}</b>" in text


def test_an_album_without_a_usable_image_says_so(bot, telegram):
    user = make_user(3004, "en")
    mark = telegram.mark()
    send_parts(telegram, user, [telegram.document_content(b"a", file_name="a.txt", mime_type="text/plain"),
                                telegram.document_content(b"b", file_name="b.pdf", mime_type="application/pdf")])
    reply = telegram.wait_for(lambda c: c.method == "sendMessage" and c.chat_id == user["id"], timeout=30,
                              after=mark)
    assert reply.text == "None of the album's items is an image I can read (JPEG, PNG or DICOM)."
    time.sleep(1.5)  # nothing else follows: no status message, no analysis
    assert [c.method for c in telegram.calls_to(user["id"], after=mark) if c.method != "sendChatAction"] \
        == ["sendMessage"]

    # parts that look like photos but none of which downloads as an image: the status says the same
    user = make_user(3005, "en")
    mark = telegram.mark()
    send_parts(telegram, user, [telegram.photo_content(b"\x00" * 300), telegram.photo_content(b"\x01" * 300)])
    sent, text = final_text(telegram, user, mark, timeout=30)
    assert len(sent) == 1 and "Analysing 2 slices" in sent[0].text
    assert text == "None of the album's items is an image I can read (JPEG, PNG or DICOM)."


# ---- one study is one patient's series ----------------------------------------------------------------------


def test_an_album_of_two_patients_dicom_is_refused_in_the_users_language(bot, telegram):
    from tests.services.test_study_checks import README_STUDY, dicom_slice

    files = [dicom_slice(README_STUDY[0]), dicom_slice(README_STUDY[1]),
             dicom_slice(README_STUDY[2], PatientID="PID-0099-OTHER")]
    parts = [telegram.document_content(f, file_name=f"s{i}.dcm", mime_type="application/dicom")
             for i, f in enumerate(files)]
    note = telegram.document_content(b"notes", file_name="notes.txt", mime_type="text/plain")
    # In English with a text file as the album's second item: the items are counted as the user sees them.
    for lang, album, expected in (
            ("ru", parts, "элементы 1 и 3 относятся к разным пациентам (DICOM PatientID)"),
            ("en", [parts[0], note, *parts[1:]], "items 1 and 4 belong to different patients (DICOM PatientID)")):
        user = make_user(3010 if lang == "ru" else 3011, lang)
        mark = telegram.mark()
        send_parts(telegram, user, album)
        _, text = final_text(telegram, user, mark)
        assert expected in text, text
        assert "PID-" not in text


def test_an_album_with_a_slice_unlike_its_neighbours_is_answered_with_a_warning(bot, telegram):
    from tests.services.test_study_checks import README_STUDY, TUMOR, jpeg

    tumour = jpeg(np.asarray(Image.open(TUMOR[0]).convert("L").resize((176, 208))))
    contents = [README_STUDY[0].read_bytes(), tumour, README_STUDY[1].read_bytes()]
    user = make_user(3012, "ru")
    mark = telegram.mark()
    send_parts(telegram, user, [telegram.document_content(c, file_name=f"s{i}.jpg", mime_type="image/jpeg")
                                for i, c in enumerate(contents)])
    _, text = final_text(telegram, user, mark)
    assert "⚠ Элементы 1 и 2 похожи друг на друга гораздо меньше" in text, text
    assert "⚠ Элементы 1 и 3 похожи друг на друга больше, чем каждый из них на элемент 2" in text, text
