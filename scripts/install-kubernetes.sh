#!/usr/bin/env bash
# Builds a real Kubernetes API server and etcd for the Kubernetes tests (issue 12) into the project:
#   .tools/kubernetes/kube-apiserver   (v1.34.4)
#   .tools/kubernetes/etcd             (v3.6.17)
#   .tools/kubernetes/kubectl          (v1.34.4: `kubectl kustomize`, `apply --dry-run=server` and
#                                       `auth can-i` in test/kubernetes/deploy.test.ts)
# from the Go module proxy: no kubelet, no container runtime, no binary download. Idempotent: does
# nothing when the pinned versions are already built (about 10 minutes cold on two cores, a few
# seconds after). Needs Go (>= 1.24; the toolchain line of each module is honoured).
#
# Neither builds with `go install module@version`: k8s.io/kubernetes replaces each of its staging
# modules (k8s.io/api, k8s.io/client-go, ...) with a directory of its own repository, and etcd's
# server replaces its sibling modules the same way, and `go install` refuses replace directives. So
# each is built inside a small wrapper module that requires it and replaces those modules with
# their published versions (v0.34.4 for Kubernetes' staging modules, read from its own go.mod).
#
#   bash scripts/install-kubernetes.sh          build (or confirm) and print the directory
#   KUBERNETES_TOOLS=/dir bash scripts/...      build elsewhere (tests then need KUBERNETES_TOOLS=/dir)
set -euo pipefail

KUBERNETES_VERSION=v1.34.4
STAGING_VERSION=v0.34.4
ETCD_VERSION=v3.6.17

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${KUBERNETES_TOOLS:-$ROOT/.tools/kubernetes}
# The module cache and build cache stay in the project too, so a rebuild reuses them.
export GOPATH=${GOPATH:-$ROOT/.tools/go}
export GOCACHE=${GOCACHE:-$ROOT/.tools/go-build-cache}
export GOFLAGS=-mod=mod
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}

say() { echo "install-kubernetes: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

command -v go >/dev/null 2>&1 || die "go not found; install Go >= 1.24 (https://go.dev/dl/) to build the Kubernetes test binaries"

# The version a binary reports, or nothing.
apiserver_version() { [ -x "$TOOLS/kube-apiserver" ] && "$TOOLS/kube-apiserver" --version 2>/dev/null | awk '{print $2}'; }
kubectl_version() { [ -x "$TOOLS/kubectl" ] && "$TOOLS/kubectl" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(.*\)",*/\1/p'; }
etcd_version() { [ -x "$TOOLS/etcd" ] && "$TOOLS/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: /v/p'; }

mkdir -p "$TOOLS"
work=$(mktemp -d "${TMPDIR:-/tmp}/wasmesh-kube-build-XXXXXX")
trap 'rm -rf "$work"' EXIT

# The wrapper module for k8s.io/kubernetes' commands, made once per run: kube-apiserver and kubectl
# share it, so the second reuses the first's modules and build cache.
kubernetes_module() {
  [ -f "$work/kubernetes/go.mod" ] && { cd "$work/kubernetes"; return; }
  mkdir -p "$work/kubernetes" && cd "$work/kubernetes"
  go mod init wasmesh.local/kubernetes-build >/dev/null 2>&1
  # Kubernetes' own go.mod names its staging modules: replace each with its published version.
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION's go.mod"
  staging=$(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/.*|\1|p' "$gomod")
  [ -n "$staging" ] || die "found no staging modules in k8s.io/kubernetes@$KUBERNETES_VERSION's go.mod"
  for module in $staging; do go mod edit -replace "$module=$module@$STAGING_VERSION"; done
}

# Builds k8s.io/kubernetes/cmd/$1 into $TOOLS/$1, stamped with the version (kubectl reports
# client-go's, kube-apiserver component-base's).
build_kubernetes_command() {
  kubernetes_module
  go get "k8s.io/kubernetes/cmd/$1@$KUBERNETES_VERSION" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
    -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
    -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION" \
    -o "$TOOLS/$1.tmp" "k8s.io/kubernetes/cmd/$1"
  mv "$TOOLS/$1.tmp" "$TOOLS/$1"
}

if [ "$(apiserver_version || true)" != "$KUBERNETES_VERSION" ]; then
  say "building kube-apiserver $KUBERNETES_VERSION (about 9 minutes cold on two cores)"
  build_kubernetes_command kube-apiserver
  [ "$(apiserver_version || true)" = "$KUBERNETES_VERSION" ] ||
    die "the kube-apiserver built reports '$(apiserver_version || true)', not $KUBERNETES_VERSION"
else
  say "kube-apiserver $KUBERNETES_VERSION already built"
fi

if [ "$(kubectl_version || true)" != "$KUBERNETES_VERSION" ]; then
  say "building kubectl $KUBERNETES_VERSION (a few minutes more, sharing kube-apiserver's build cache)"
  build_kubernetes_command kubectl
  [ "$(kubectl_version || true)" = "$KUBERNETES_VERSION" ] ||
    die "the kubectl built reports '$(kubectl_version || true)', not $KUBERNETES_VERSION"
else
  say "kubectl $KUBERNETES_VERSION already built"
fi

if [ "$(etcd_version || true)" != "$ETCD_VERSION" ]; then
  say "building etcd $ETCD_VERSION"
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init wasmesh.local/etcd-build >/dev/null 2>&1
  for module in api/v3 client/pkg/v3 client/v3 pkg/v3; do
    go mod edit -replace "go.etcd.io/etcd/$module=go.etcd.io/etcd/$module@$ETCD_VERSION"
  done
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$TOOLS/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$TOOLS/etcd.tmp" "$TOOLS/etcd"
  [ "$(etcd_version || true)" = "$ETCD_VERSION" ] ||
    die "the etcd built reports '$(etcd_version || true)', not $ETCD_VERSION"
else
  say "etcd $ETCD_VERSION already built"
fi

echo "$TOOLS"
