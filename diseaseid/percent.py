"""How every text shows a probability: a model's probability is never a certainty, so it never reads
as 100% or 0%. Kept free of heavy imports: the bot and the services use it too."""
from __future__ import annotations

import math


def percent(p: float, decimals: int = 0) -> str:
    """``p`` (a probability, 0 to 1) as a percentage with ``decimals`` decimals, never ``100%`` nor ``0%``:
    what would round to 100 reads ``>99%`` (``>99.9%`` with one decimal), what would round to 0 reads ``<1%``
    (``<0.1%``), exact 1 and 0 included (a calibrated softmax reaches them only by floating-point rounding).
    ``0.9972`` -> ``>99%``, or ``99.7%`` with one decimal; ``0.0004`` -> ``<1%``; NaN -> ``?%``."""
    if decimals < 0:
        raise ValueError(f"decimals must be 0 or more, not {decimals}")
    p = float(p)
    if math.isnan(p):
        return "?%"
    text = f"{min(max(p, 0.0), 1.0) * 100:.{decimals}f}"
    step = 10.0 ** -decimals  # the smallest step shown, in percent
    if float(text) >= 100:
        return f">{100 - step:.{decimals}f}%"
    if float(text) <= 0:
        return f"<{step:.{decimals}f}%"
    return f"{text}%"
