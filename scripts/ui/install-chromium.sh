#!/usr/bin/env bash
# Installs Debian's chromium and the fonts its pages are drawn with, when missing: what the web
# UI's browser tests (test/ui/) and `npm run screenshots` drive, through Playwright's library API
# (never a browser Playwright downloads). Idempotent; runs as root (apt-get), as .ci/run does.
set -euo pipefail
if command -v chromium >/dev/null && dpkg -s fonts-liberation >/dev/null 2>&1; then exit 0; fi
echo "install-chromium.sh: apt-get install chromium fonts-liberation" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null 2>&1 ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }
