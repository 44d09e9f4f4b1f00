"""Runs the real bot (`python -m services.bot`) as a subprocess pointed at a fake Bot API server."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bot.fake_telegram import FakeTelegram

REPO = Path(__file__).resolve().parents[2]


class BotProcess:
    def __init__(self, telegram: FakeTelegram, **env: str):
        self.telegram = telegram
        self.env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_URL": telegram.url,
            "BOT_POLLING_TIMEOUT_S": "1",
            "BOT_ALBUM_WAIT_S": "0.5",
            "BOT_LOG_LEVEL": "DEBUG",  # the most verbose level, so the token check below sees every line
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self._log = tempfile.NamedTemporaryFile(prefix="diseaseid-bot-", suffix=".log", delete=False)
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 30.0) -> BotProcess:
        """Returns once the bot polls (or sets its webhook), within ``ready_timeout`` or
        ``$DISEASEID_TEST_READY_S`` where set (tests/services/conftest.py.run_server reads it too)."""
        ready_timeout = float(os.environ.get("DISEASEID_TEST_READY_S") or ready_timeout)
        mark = self.telegram.mark()
        self.proc = subprocess.Popen([sys.executable, "-m", "services.bot"], cwd=REPO, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self.telegram.wait_for(lambda c: c.method == "getUpdates" or c.method == "setWebhook",
                                   timeout=ready_timeout, after=mark)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"the bot did not start polling:\n{self.log()}") from None
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # aiogram stops polling and closes its sessions
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> BotProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
