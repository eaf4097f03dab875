#!/usr/bin/env bash
# Builds a real Jaeger v2 for the tracing tests (issue 18) into the project:
#   .tools/jaeger/jaeger   (v1.75.0 of the Go module: Jaeger v2, an OpenTelemetry Collector build
#                           with OTLP and Zipkin receivers, memory storage and the query API)
# from the Go module proxy: no container, no binary download. Idempotent: does nothing when the
# pinned version is already built (about 4 minutes cold on two cores, 9 beside another Go build;
# an 85 MB binary; nothing after). Needs Go (>= 1.24; the module's toolchain line is honoured).
# test/support/jaeger.ts starts it; JAEGER_BIN=/path/to/jaeger points the tests at another build.
# The module proxy's copy has no UI assets (the release build embeds them), so the query port serves
# the API and a placeholder page: the tests only use the API.
#
# Built inside a small wrapper module that requires github.com/jaegertracing/jaeger as a tool, like
# scripts/install-kubernetes.sh builds its binaries, so the module's own go.mod settles the
# dependency versions.
#
#   bash scripts/install-jaeger.sh              build (or confirm) and print the directory
#   JAEGER_TOOLS=/dir bash scripts/...          build elsewhere (tests then need JAEGER_BIN=/dir/jaeger)
set -euo pipefail

JAEGER_VERSION=v1.75.0
JAEGER_MODULE=github.com/jaegertracing/jaeger

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${JAEGER_TOOLS:-$ROOT/.tools/jaeger}
# The module cache and build cache stay in the project too, so a rebuild reuses them.
export GOPATH=${GOPATH:-$ROOT/.tools/go}
export GOCACHE=${GOCACHE:-$ROOT/.tools/go-build-cache}
export GOFLAGS=-mod=mod
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}

say() { echo "install-jaeger: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

command -v go >/dev/null 2>&1 || die "go not found; install Go >= 1.24 (https://go.dev/dl/) to build the Jaeger test binary"

# The version the binary reports, or nothing.
jaeger_version() { [ -x "$TOOLS/jaeger" ] && "$TOOLS/jaeger" version 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n 1; }

if [ "$(jaeger_version || true)" = "$JAEGER_VERSION" ]; then
  say "jaeger $JAEGER_VERSION already built"
  echo "$TOOLS"
  exit 0
fi

say "building jaeger $JAEGER_VERSION (about 4 minutes cold on two cores)"
mkdir -p "$TOOLS"
work=$(mktemp -d "${TMPDIR:-/tmp}/wasmesh-jaeger-build-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init wasmesh.local/jaeger-build >/dev/null 2>&1
go get -tool "$JAEGER_MODULE/cmd/jaeger@$JAEGER_VERSION" >&2
# `jaeger version` reads the version from these variables, which the release build stamps.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
  -X $JAEGER_MODULE/internal/version.latestVersion=$JAEGER_VERSION" \
  -o "$TOOLS/jaeger.tmp" "$JAEGER_MODULE/cmd/jaeger"
mv "$TOOLS/jaeger.tmp" "$TOOLS/jaeger"
[ "$(jaeger_version || true)" = "$JAEGER_VERSION" ] ||
  die "the jaeger built reports '$(jaeger_version || true)', not $JAEGER_VERSION"

echo "$TOOLS"
