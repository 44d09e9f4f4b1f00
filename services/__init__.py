"""HTTP services around the ML core: inference, explain (with its worker) and the Telegram bot.

``services.common`` holds what every service shares (settings base, upload reading and image decoding,
JSON errors, API-key auth, Prometheus helpers); each service lives in its own package and never imports
another service's modules.
"""
