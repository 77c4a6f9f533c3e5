#!/usr/bin/env bash
# Generates the Go stubs from proto/, builds the client and runs it:
#   examples/go/run.sh -target 127.0.0.1:8080 -name Gopher -limit 3
# GOPATH mode against Debian's packages (golang-go, golang-google-grpc-dev,
# protoc-gen-go, protoc-gen-go-grpc, protobuf-compiler; see scripts/setup.sh),
# so nothing is downloaded. Set OUT=DIR to keep the workspace and binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
if [ -n "${OUT:-}" ]; then
  work="$OUT"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
pkg="$work/src/streamexample"
mkdir -p "$pkg/streamv1"
# M maps the .proto to a Go import path: stream.proto has no go_package of its own.
map="Mstream/v1/stream.proto=streamexample/streamv1"
protoc -I "$root/proto" \
  --go_out="$work/src" --go_opt="$map" \
  --go-grpc_out="$work/src" --go-grpc_opt="$map" \
  stream/v1/stream.proto
cp "$here/main.go" "$pkg/main.go"
export GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOFLAGS=
go build -o "$work/streamclient" streamexample
"$work/streamclient" "$@"
