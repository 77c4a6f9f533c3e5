#!/usr/bin/env bash
# Installs the Debian packages the tests and the benchmark use (a fresh
# machine has none of them); `npm test` runs it first. Quick when everything is
# there: one dpkg-query. Where it cannot install (not root and no passwordless
# sudo, no apt-get, apt-get fails) it stops with one line naming what is
# missing and the command that installs it, and exit status 1.
#
#   bash scripts/setup.sh           install what is missing
#   bash scripts/setup.sh --check   only report what is missing
set -euo pipefail

packages=(
  curl
  openssl             # a throwaway certificate for the TLS test (test/listen.test.ts)
  nghttp2-client      # h2load: the benchmark's HTTP/2 load generator
  # Interop with clients nobody here wrote (test/python-interop, test/go-interop, examples/).
  python3-grpcio      # Python gRPC runtime, for /usr/bin/python3
  python3-grpc-tools  # python3 -m grpc_tools.protoc: Python stubs from proto/
  protobuf-compiler-grpc # grpc_python_plugin, the Python buf template's plugin (docs/clients.md)
  golang-go           # go 1.19, builds examples/go in GOPATH mode (no module downloads)
  golang-google-grpc-dev                # grpc-go 1.33 sources under /usr/share/gocode
  golang-github-golang-protobuf-1-5-dev # named, or apt picks 1.3, which cannot read protoc-gen-go v2 stubs
  golang-google-protobuf-dev            # google.golang.org/protobuf (durationpb, APIv2 runtime)
  protobuf-compiler   # protoc, with libprotobuf-dev's google/protobuf/*.proto
  protoc-gen-go       # Go message stubs
  protoc-gen-go-grpc  # Go service stubs
  chromium            # the browser test (test/browser.test.ts), driven by playwright-core
  prometheus          # promtool and a real Prometheus (test/prometheus.test.ts, deploy/prometheus/)
  nginx               # the load balancer of deploy/nginx/ (test/nginx.test.ts runs it as this user, on loopback)
)

check_only=false
case "${1:-}" in
  "") ;;
  --check) check_only=true ;;
  *) echo "usage: bash scripts/setup.sh [--check]" >&2; exit 2 ;;
esac

# "ii": installed and configured. `dpkg -s` would also accept a package removed
# with its configuration files left behind.
installed=" $(dpkg-query -W -f='${Package}:${db:Status-Abbrev} ' "${packages[@]}" 2>/dev/null || true)"
missing=()
for p in "${packages[@]}"; do
  [[ "$installed" == *" $p:ii "* ]] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: system packages ready"
  exit 0
fi

sudo=""
if [ "$EUID" -ne 0 ]; then sudo="sudo "; fi
install="${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${missing[*]}"
stop() {
  echo "setup: missing Debian packages: ${missing[*]}$1; install them with: $install" >&2
  exit 1
}

if $check_only; then stop ""; fi
# dpkg-query honours DPKG_ADMINDIR and so do apt's dpkg runs: installing with
# it pointed elsewhere would unpack into / behind the system database's back.
if [ -n "${DPKG_ADMINDIR:-}" ]; then stop ", and DPKG_ADMINDIR is set (unset it to install)"; fi
command -v apt-get >/dev/null || stop ", and no apt-get here"
if [ -n "$sudo" ] && ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
  stop ", and this is not root and has no passwordless sudo"
fi

echo "setup: installing ${missing[*]}"
log=$(mktemp -t setup-apt.XXXXXX)
if ${sudo}apt-get update -qq >"$log" 2>&1 &&
  ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
  rm -f "$log"
  echo "setup: system packages ready"
else
  stop ", and apt-get failed (its output is in $log)"
fi
