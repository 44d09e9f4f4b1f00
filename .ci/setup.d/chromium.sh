#!/usr/bin/env bash
# Chromium from Debian's packages for the web page's browser tests (tests/web/test_browser.py): Playwright
# from PyPI drives it (Playwright's own browser download is not reachable). Without it those tests skip.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
chromium --version
