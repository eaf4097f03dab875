#!/usr/bin/env bash
# Installs Debian's chromium package, the headless browser the console's tests (test/gui/) drive
# with playwright-core (never a browser download): /usr/bin/chromium. Idempotent: does nothing
# when it is already there. Needs root and apt-get (as ./dev runs on the project's machines).
#
#   bash scripts/install-chromium.sh        install (or confirm) and print where Chromium is
set -euo pipefail

CHROMIUM=${CHROMIUM_BIN:-/usr/bin/chromium}
say() { echo "install-chromium: $*" >&2; }

if [ -x "$CHROMIUM" ]; then
  echo "$CHROMIUM"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "error: $CHROMIUM is missing and this is not root with apt-get: install Debian's chromium package (apt-get install chromium) for test/gui/"
  exit 1
fi
say "installing Debian's chromium package with apt-get (for test/gui/)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
[ -x "$CHROMIUM" ] || {
  say "error: apt-get install chromium did not provide $CHROMIUM"
  exit 1
}
echo "$CHROMIUM"
