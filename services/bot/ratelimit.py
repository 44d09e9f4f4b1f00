"""Per-user sliding-window limit on analyses, so one user cannot keep the CPU-bound services busy."""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """At most `limit` hits per `window_s` seconds per key; `limit == 0` switches the limit off.

    In-process state: fine for one bot process (polling allows only one anyway); a webhook deployment with
    several replicas would move this to Redis.
    """

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._hits: dict[int, deque[float]] = {}

    def hit(self, key: int) -> float:
        """Record a hit and return 0, or return the seconds to wait (and record nothing) if over the limit."""
        if self.limit <= 0:
            return 0.0
        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(hits[0] + self.window_s - now, 0.001)
        hits.append(now)
        return 0.0

    @staticmethod
    def seconds(wait: float) -> int:
        return max(1, math.ceil(wait))
