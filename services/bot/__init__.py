"""Telegram bot: a clinician sends an MRI slice, gets a conclusion and the heatmaps behind it.

Talks to the inference and explain services over HTTP only (``client.py``); never imports the models.

Run it::

    TELEGRAM_BOT_TOKEN=... INFERENCE_URL=http://127.0.0.1:8000 EXPLAIN_URL=http://127.0.0.1:8001 \\
    DISEASEID_API_KEY=... REDIS_URL=redis://127.0.0.1:6379/0 python -m services.bot

Environment (``settings.py`` has them all): ``TELEGRAM_BOT_TOKEN`` (required), ``TELEGRAM_API_URL`` (a local
Bot API server instead of api.telegram.org), ``INFERENCE_URL``, ``EXPLAIN_URL``, ``DISEASEID_API_KEY`` (sent
as ``X-API-Key``), ``REDIS_URL`` (FSM storage: the task chosen per chat; memory when unset),
``BOT_RATE_LIMIT_PER_MINUTE`` (5; 0 = off), ``BOT_ALLOWED_USER_IDS`` (comma-separated; empty = everyone),
``BOT_EXPLAIN_TIMEOUT_S`` (120), ``BOT_REQUEST_TIMEOUT_S`` (30), ``BOT_MODE`` (``polling`` or ``webhook``
with ``BOT_WEBHOOK_URL``, ``BOT_WEBHOOK_SECRET``, ``BOT_WEBHOOK_HOST``/``PORT``/``PATH``), ``BOT_LOG_LEVEL``.

Layout: ``bot.py`` wires; ``routers/`` holds one Router per feature (start/help, task keyboard, albums,
single images, fallback, errors); ``analysis.py`` runs the slice and study flows; ``middlewares.py`` injects
settings, the client, the rate limiter and the album collector, and enforces the allowlist.
"""
