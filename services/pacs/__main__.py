"""``python -m services.pacs``: run the PACS bridge until SIGTERM/SIGINT (``--once``: one pass, then exit)."""
from .bridge import main

raise SystemExit(main())
