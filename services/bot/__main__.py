"""`python -m services.bot`: run the Telegram bot (long polling; a webhook server with BOT_MODE=webhook)."""
from services.bot.bot import main

main()
