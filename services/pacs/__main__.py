"""``python -m services.pacs``: run the PACS bridge until SIGTERM/SIGINT (``--once``: one pass, then exit)."""
from services.pacs.bridge import main

raise SystemExit(main())
