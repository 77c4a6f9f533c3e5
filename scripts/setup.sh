#!/usr/bin/env bash
# Installs the Debian packages the tests and the benchmark use (a fresh
# machine has none of them). Idempotent: skips what is already there.
set -euo pipefail

packages=(
  curl
  openssl             # a throwaway certificate for the TLS test (test/listen.test.ts)
  nghttp2-client      # h2load: the benchmark's HTTP/2 load generator
  # Interop with clients nobody here wrote (test/python-interop, test/go-interop, examples/).
  python3-grpcio      # Python gRPC runtime, for /usr/bin/python3
  python3-grpc-tools  # python3 -m grpc_tools.protoc: Python stubs from proto/
  golang-go           # go 1.19, builds examples/go in GOPATH mode (no module downloads)
  golang-google-grpc-dev                # grpc-go 1.33 sources under /usr/share/gocode
  golang-github-golang-protobuf-1-5-dev # named, or apt picks 1.3, which cannot read protoc-gen-go v2 stubs
  golang-google-protobuf-dev            # google.golang.org/protobuf (durationpb, APIv2 runtime)
  protobuf-compiler   # protoc, with libprotobuf-dev's google/protobuf/*.proto
  protoc-gen-go       # Go message stubs
  protoc-gen-go-grpc  # Go service stubs
  chromium            # the browser test (test/browser.test.ts), driven by playwright-core
  nginx               # the load balancer of deploy/nginx/ (test/nginx.test.ts runs it as this user, on loopback)
)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: system packages ready"
