#!/usr/bin/env bash
# Build the helm CLI from source through the Go module proxy and cache it.
#
#   hack/build-helm.sh            # prints the path of the helm binary on stdout
#   HELM_VERSION=v4.3.2 hack/build-helm.sh
#
# The binary lands in ${KUBESWEEP_CACHE:-$HOME/.cache/kubesweep}/bin-helm-<version>/helm and is
# reused when present, so only the first call pays for the build (a few minutes on 2 cores).
# Only the Go toolchain and the module proxy are needed: no prebuilt downloads.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
case "$HELM_VERSION" in
  v3.*) HELM_MODULE="helm.sh/helm/v3" ;;
  v4.*) HELM_MODULE="helm.sh/helm/v4" ;;
  *) echo "build-helm: unsupported HELM_VERSION '$HELM_VERSION' (want v3.x.y or v4.x.y)" >&2; exit 2 ;;
esac

CACHE="${KUBESWEEP_CACHE:-$HOME/.cache/kubesweep}"
DEST="$CACHE/bin-helm-$HELM_VERSION"
HELM="$DEST/helm"

if [[ -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; then
  echo "$HELM"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build-helm: 'go' not found on PATH; install a Go toolchain (>= 1.24) to build helm" >&2
  exit 1
fi

mkdir -p "$DEST"
# Build into a temporary directory and move into place at the end, so an interrupted build
# never leaves a half-written binary that a later call would trust.
TMP="$(mktemp -d "$DEST/.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

start=$(date +%s)
echo "build-helm: building $HELM_MODULE/cmd/helm@$HELM_VERSION (this takes a few minutes)..." >&2
# -mod=mod: resolve helm's own go.mod outside any workspace; CGO off gives a static binary.
# The version is stamped in so `helm version` reports it instead of "v3.x-dev"/"(devel)".
GOBIN="$TMP" GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOWORK=off \
  go install \
    -ldflags "-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION" \
    "$HELM_MODULE/cmd/helm@$HELM_VERSION" >&2
mv -f "$TMP/helm" "$HELM"
echo "build-helm: built $HELM in $(( $(date +%s) - start ))s" >&2
"$HELM" version --short >&2
echo "$HELM"
