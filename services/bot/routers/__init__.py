"""One Router per feature; `bot.py` includes them in this order (first match wins)."""
from services.bot.routers import albums, errors, fallback, images, start, task

ROUTERS = (start.router, task.router, albums.router, images.router, fallback.router, errors.router)
