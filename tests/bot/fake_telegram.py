"""A small fake Telegram Bot API server for tests: the real HTTP protocol on a loopback port.

It speaks what the bot uses of https://core.telegram.org/bots/api: methods are POSTed (url-encoded or
multipart, complex values as JSON strings) to ``/bot<token>/<method>`` and answered with
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description"}``; files are downloaded from
``/file/bot<token>/<file_path>``. Tests queue updates (a user sending text, photos, documents, albums,
pressing a button), and the server records every call the bot makes, with multipart uploads parsed, so a test
can read the messages and decode the pictures the bot sent.

The server runs an aiohttp application on its own event loop in a background thread, so a synchronous test
talks to it through thread-safe methods while the bot (a subprocess) long-polls it.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "diseaseid", "username": "diseaseid_test_bot"}
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
_JSONISH = re.compile(r"^(\{.*\}|\[.*\]|-?\d+|true|false)$", re.S)


@dataclass
class Call:
    """One Bot API request the bot made."""

    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]]  # form field -> (filename, content)
    at: float = field(default_factory=time.monotonic)

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")

    def media_files(self) -> list[tuple[dict[str, Any], bytes]]:
        """The items of a sendMediaGroup call with the uploaded bytes each ``attach://`` refers to."""
        items = []
        for item in self.params.get("media") or []:
            ref = item["media"]
            if not (isinstance(ref, str) and ref.startswith("attach://")):
                raise AssertionError(f"media item not uploaded with the request: {ref!r}")
            items.append((item, self.files[ref.removeprefix("attach://")][1]))
        return items


def strip_html(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class FakeTelegram:
    """One fake Bot API server for one bot token. Use as a context manager or call start()/stop()."""

    def __init__(self, token: str = "123456:TEST-token-do-not-log", host: str = "127.0.0.1"):
        self.host = host  # the address it listens on (the compose test uses the network's gateway)
        self.token = token
        self.port: int | None = None
        self.calls: list[Call] = []
        self._updates: list[dict[str, Any]] = []
        self._files: dict[str, tuple[str, bytes, int]] = {}  # file_id -> (file_path, content, declared size)
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.webhook: dict[str, Any] | None = None

    # ---- server life cycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeTelegram:
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._start_site())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="fake-telegram", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _start_site(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the Bot API --------------------------------------------------------------------------------
    async def _handle_method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params, files = await _read_params(request)
        with self._changed:
            self.calls.append(Call(method, params, files))
            self._changed.notify_all()
        handler = getattr(self, f"_api_{method.lower()}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        outcome = handler(params, files)
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if isinstance(outcome, web.Response):
            return outcome
        return web.json_response({"ok": True, "result": outcome})

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        for file_path, content, _ in self._files.values():
            if file_path == path:
                return web.Response(body=content, content_type="application/octet-stream")
        return web.Response(status=404, text="Not Found")

    def _api_getme(self, params, files):
        return BOT_USER

    def _api_deletewebhook(self, params, files):
        self.webhook = None
        return True

    def _api_setwebhook(self, params, files):
        self.webhook = params
        return True

    def _api_getwebhookinfo(self, params, files):
        return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                "pending_update_count": 0}

    async def _api_getupdates(self, params, files):
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        # Long polling: wait for updates up to the requested timeout, but briefly, so the bot stops quickly.
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 1.0)
        while True:
            with self._lock:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                pending = self._updates[:limit]
            if pending or time.monotonic() >= deadline:
                return pending
            await asyncio.sleep(0.02)

    def _api_getfile(self, params, files):
        file_id = params.get("file_id")
        if file_id not in self._files:
            return _error(400, "Bad Request: invalid file_id")
        path, content, size = self._files[file_id]
        if size > TELEGRAM_DOWNLOAD_LIMIT:
            return _error(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": file_id[:16], "file_size": size, "file_path": path}

    def _bot_message(self, params, **content) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        return {"message_id": next(self._message_ids), "date": int(time.time()), "from": BOT_USER,
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"}, **content}

    def _api_sendmessage(self, params, files):
        markup = params.get("reply_markup")
        extra = {"reply_markup": markup} if isinstance(markup, dict) else {}
        return self._bot_message(params, text=strip_html(str(params["text"])), **extra)

    def _api_editmessagetext(self, params, files):
        if "inline_message_id" in params:
            return True
        message = self._bot_message(params, text=strip_html(str(params["text"])))
        message["message_id"] = int(params["message_id"])
        message["edit_date"] = int(time.time())
        return message

    def _photo_sizes(self) -> list[dict[str, Any]]:
        file_id = "sent-" + uuid.uuid4().hex
        return [{"file_id": file_id, "file_unique_id": file_id[:16], "width": 224, "height": 224}]

    def _api_sendphoto(self, params, files):
        return self._bot_message(params, photo=self._photo_sizes())

    def _api_senddocument(self, params, files):
        file_id = "sent-" + uuid.uuid4().hex
        return self._bot_message(params, document={"file_id": file_id, "file_unique_id": file_id[:16]})

    def _api_sendmediagroup(self, params, files):
        group = uuid.uuid4().hex[:12]
        return [self._bot_message(params, media_group_id=group, photo=self._photo_sizes(),
                                  caption=item.get("caption"))
                for item in params.get("media") or []]

    def _api_sendchataction(self, params, files):
        return True

    def _api_answercallbackquery(self, params, files):
        return True

    def _api_deletemessage(self, params, files):
        return True

    def _api_close(self, params, files):
        return True

    # ---- what a test does: users act ----------------------------------------------------------------
    def _push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self._changed:
            update = {"update_id": next(self._update_ids), kind: payload}
            self._updates.append(update)
            self._changed.notify_all()
        return update

    def _user_message(self, user: dict[str, Any], **content: Any) -> dict[str, Any]:
        return {"message_id": next(self._message_ids), "date": int(time.time()), "from": user,
                "chat": {"id": user["id"], "type": "private", "first_name": user["first_name"]}, **content}

    def add_file(self, content: bytes, *, size: int | None = None, suffix: str = "") -> str:
        """Store a file as if a user had uploaded it; `size` may claim more than is stored (a huge file)."""
        file_id = "in-" + uuid.uuid4().hex
        size = size if size is not None else len(content)
        self._files[file_id] = (f"uploads/{file_id}{suffix}", content, size)
        return file_id

    def send_text(self, user: dict[str, Any], text: str) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return self._push("message", self._user_message(user, **content))["message"]

    def photo_content(self, content: bytes, *, size: int | None = None) -> dict[str, Any]:
        file_id = self.add_file(content, size=size, suffix=".jpg")
        thumb = self.add_file(content[:64], suffix=".jpg")
        size = size if size is not None else len(content)
        return {"photo": [
            {"file_id": thumb, "file_unique_id": thumb[:16], "width": 90, "height": 90,
             "file_size": 64},
            {"file_id": file_id, "file_unique_id": file_id[:16], "width": 512, "height": 512,
             "file_size": size},
        ]}

    def document_content(self, content: bytes, *, file_name: str, mime_type: str | None,
                         size: int | None = None) -> dict[str, Any]:
        file_id = self.add_file(content, size=size)
        document = {"file_id": file_id, "file_unique_id": file_id[:16], "file_name": file_name,
                    "file_size": size if size is not None else len(content)}
        if mime_type:
            document["mime_type"] = mime_type
        return {"document": document}

    def send_photo(self, user: dict[str, Any], content: bytes, *, size: int | None = None) -> dict[str, Any]:
        photo = self.photo_content(content, size=size)
        return self._push("message", self._user_message(user, **photo))["message"]

    def send_document(self, user: dict[str, Any], content: bytes, *, file_name: str, mime_type: str | None,
                      size: int | None = None) -> dict[str, Any]:
        doc = self.document_content(content, file_name=file_name, mime_type=mime_type, size=size)
        return self._push("message", self._user_message(user, **doc))["message"]

    def send_album(self, user: dict[str, Any], contents: list[bytes]) -> list[dict[str, Any]]:
        """An album of photos: one update per photo sharing a media_group_id, as Telegram delivers it."""
        group = str(uuid.uuid4().int)[:18]
        return [self._push("message", self._user_message(user, media_group_id=group,
                                                         **self.photo_content(c)))["message"]
                for c in contents]

    def send_message(self, user: dict[str, Any], **content: Any) -> dict[str, Any]:
        """Any other message content, e.g. ``sticker={...}`` or ``video={...}``."""
        return self._push("message", self._user_message(user, **content))["message"]

    def press(self, user: dict[str, Any], message: dict[str, Any], data: str) -> dict[str, Any]:
        """Press an inline button of a message the bot sent."""
        query = {"id": uuid.uuid4().hex, "from": user, "chat_instance": str(user["id"]), "data": data,
                 "message": message}
        return self._push("callback_query", query)["callback_query"]

    # ---- what a test does: watch the bot ------------------------------------------------------------
    def wait_for(self, predicate: Callable[[Call], bool], timeout: float = 20.0, *, after: int = 0) -> Call:
        """The first recorded call from index `after` on that satisfies `predicate`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for call in self.calls[after:]:
                    if predicate(call):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(c.method, c.text[:60]) for c in self.calls[after:] if c.method != "getUpdates"]
                    raise TimeoutError(f"no matching Bot API call within {timeout} s; saw {seen}")
                self._changed.wait(remaining)

    def mark(self) -> int:
        """An index into the call log: pass it as `after=` to only look at calls made from now on."""
        with self._lock:
            return len(self.calls)

    def calls_to(self, chat_id: int, *, after: int = 0, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls[after:]
                    if c.chat_id == chat_id and (method is None or c.method == method)]

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)


def make_user(user_id: int, language_code: str = "en", name: str = "Test") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name, "language_code": language_code}


def _error(code: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)


def _decode(value: str) -> Any:
    if _JSONISH.match(value):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    """Query string plus url-encoded or multipart form; file parts are kept apart with their bytes."""
    params: dict[str, Any] = {k: _decode(v) for k, v in request.query.items()}
    files: dict[str, tuple[str, bytes]] = {}
    if request.method == "POST":
        if request.content_type == "application/json":
            params.update(await request.json())
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = (value.filename, value.file.read())
                else:
                    params[key] = _decode(value)
    return params, files
