#!/usr/bin/env bash
# Generates the Python stubs from proto/ into a temporary directory and runs
# client.py with them: examples/python/run.sh --target 127.0.0.1:8080 --name Ada
# Needs Debian's python3-grpcio and python3-grpc-tools (scripts/setup.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
# Debian's python3, where apt put grpcio (a pyenv or venv python3 on PATH would not have it).
python="${PYTHON:-/usr/bin/python3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$python" -m grpc_tools.protoc -I "$root/proto" --python_out="$out" --grpc_python_out="$out" stream/v1/stream.proto
PYTHONPATH="$out" "$python" "$here/client.py" "$@"
