#!/usr/bin/env bash
# Builds a real Kubernetes control plane from source for kubesweep's cluster
# tests: kube-apiserver, kube-controller-manager, kube-scheduler and etcd,
# at the versions pinned in hack/controlplane/go.mod.
#
# Output: ${KUBESWEEP_CACHE:-$HOME/.cache/kubesweep}/bin-<k8s version>/
# The bin directory is printed on stdout (last line); everything else goes to
# stderr, so callers can do BIN=$(hack/build-controlplane.sh).
#
# Binaries that already exist and report the pinned version are reused, so a
# second run returns in well under a second without calling go at all.
#
# Needs only Go (>= the go line in hack/controlplane/go.mod) and the Go module
# proxy. A cold build takes a long time on 2 cores (see the elapsed time it
# prints); run it early, e.g.:
#   nohup hack/build-controlplane.sh > /tmp/cp-build.log 2>&1 &
#
# Options:
#   --force          rebuild even if the binaries are present
#   --print-bin-dir  only print the bin directory and exit
#   --check          exit 0 if all binaries are present and current, else 1
# Environment:
#   KUBESWEEP_CACHE        cache root (default $HOME/.cache/kubesweep)
#   KUBESWEEP_BUILD_JOBS   go build -p value (default 2)
#   GO                     go command (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

start_ns=$(date +%s%N)
elapsed() { echo "$(( ($(date +%s%N) - start_ns) / 1000000 ))" | awk '{printf "%.1f", $1/1000}'; }
log() { echo "build-controlplane: $*" >&2; }

force=0 print_only=0 check_only=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print-bin-dir) print_only=1 ;;
    --check) check_only=1 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) log "unknown argument: $arg"; exit 2 ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod_dir="$here/controlplane"

# Versions come from go.mod itself (one source of truth), read without go.
mod_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$mod_dir/go.mod"
}
kube_version=$(mod_version k8s.io/kubernetes)
etcd_version=$(mod_version go.etcd.io/etcd/server/v3)
if [[ -z "$kube_version" || -z "$etcd_version" ]]; then
  log "cannot read k8s.io/kubernetes / etcd versions from $mod_dir/go.mod"
  exit 1
fi

cache_root="${KUBESWEEP_CACHE:-$HOME/.cache/kubesweep}"
bin_dir="$cache_root/bin-$kube_version"

if (( print_only )); then
  echo "$bin_dir"
  exit 0
fi

# name:package:expected `--version` output line
targets=(
  "kube-apiserver:k8s.io/kubernetes/cmd/kube-apiserver:Kubernetes $kube_version"
  "kube-controller-manager:k8s.io/kubernetes/cmd/kube-controller-manager:Kubernetes $kube_version"
  "kube-scheduler:k8s.io/kubernetes/cmd/kube-scheduler:Kubernetes $kube_version"
  "etcd:go.etcd.io/etcd/server/v3:etcd Version: ${etcd_version#v}"
)

is_current() {  # name expected-line
  local bin="$bin_dir/$1" out
  [[ -x "$bin" ]] || return 1
  # Read all of it first: with pipefail, `--version | grep -q` could fail
  # when grep exits early and the binary gets SIGPIPE (etcd prints 4 lines).
  out=$("$bin" --version 2>/dev/null) || return 1
  grep -qxF "$2" <<<"$out"
}

missing() {
  local t name pkg want
  for t in "${targets[@]}"; do
    IFS=: read -r name pkg want <<<"$t"
    is_current "$name" "$want" || echo "$name"
  done
}

if (( ! force )) && [[ -z "$(missing)" ]]; then
  log "reusing $bin_dir (Kubernetes $kube_version, etcd $etcd_version) in $(elapsed)s"
  echo "$bin_dir"
  exit 0
fi
if (( check_only )); then
  log "missing or outdated in $bin_dir: $(missing | tr '\n' ' ')"
  exit 1
fi

mkdir -p "$bin_dir"
# Serialise concurrent builds (e.g. several test sessions starting at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$bin_dir/.build.lock"
  flock 9
  if (( ! force )) && [[ -z "$(missing)" ]]; then
    log "another build finished $bin_dir meanwhile; reusing it ($(elapsed)s)"
    echo "$bin_dir"
    exit 0
  fi
fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if ! "$GO" version >/dev/null 2>&1; then
  log "no usable go command (tried $GO); install Go $(awk '$1=="go"{print $2}' "$mod_dir/go.mod") or newer"
  exit 1
fi

if (( force )); then
  todo=$(for t in "${targets[@]}"; do echo "${t%%:*}"; done)
else
  todo=$(missing)
fi
pkgs=()
for t in "${targets[@]}"; do
  IFS=: read -r name pkg want <<<"$t"
  if grep -qx "$name" <<<"$todo"; then pkgs+=("$pkg"); fi
done

# Version stamping as Kubernetes' hack/lib/version.sh does it. The module zip
# carries no git metadata, so the commit is left empty and the build date is
# the release's time as published by the module proxy (reproducible).
major=${kube_version#v}; major=${major%%.*}
minor=${kube_version#v*.}; minor=${minor%%.*}
build_date=$(cd "$mod_dir" && GOFLAGS=-mod=readonly "$GO" list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null || true)
build_date=${build_date:-1970-01-01T00:00:00Z}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X '$p.gitVersion=$kube_version'"
  ldflags+=" -X '$p.gitMajor=$major' -X '$p.gitMinor=$minor'"
  ldflags+=" -X '$p.gitCommit=' -X '$p.gitTreeState=archive'"
  ldflags+=" -X '$p.buildDate=$build_date'"
done

jobs=${KUBESWEEP_BUILD_JOBS:-2}
tmp_out=$(mktemp -d "$bin_dir/.build.XXXXXX")
trap 'rm -rf "$tmp_out"' EXIT

log "building $(echo $todo) (Kubernetes $kube_version, etcd $etcd_version) with $("$GO" version | awk '{print $3}'), -p $jobs"
log "GOCACHE=$(cd "$mod_dir" && "$GO" env GOCACHE) GOMODCACHE=$(cd "$mod_dir" && "$GO" env GOMODCACHE)"
# CGO off: Kubernetes builds these server binaries statically too, and it
# means no C toolchain is needed. -mod=readonly: go.mod/go.sum are the pins;
# a build never rewrites them. GOFLAGS from the caller are replaced so that
# e.g. -mod=vendor cannot leak in.
(
  cd "$mod_dir"
  export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GO111MODULE=on
  "$GO" build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$tmp_out/" "${pkgs[@]}"
)
# go names the binary of a .../server/v3 main package "server".
[[ -e "$tmp_out/server" ]] && mv "$tmp_out/server" "$tmp_out/etcd"

for name in $todo; do
  mv -f "$tmp_out/$name" "$bin_dir/$name"
done

bad=$(missing)
if [[ -n "$bad" ]]; then
  log "built binaries do not report the expected versions: $bad"
  exit 1
fi
for t in "${targets[@]}"; do
  name=${t%%:*}
  log "  $name: $("$bin_dir/$name" --version 2>/dev/null | head -1)"
done
log "built $bin_dir in $(elapsed)s"
echo "$bin_dir"
