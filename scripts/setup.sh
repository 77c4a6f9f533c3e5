#!/usr/bin/env bash
# Installs the Debian packages the tests and the benchmark use (a fresh
# machine has none of them). Idempotent: skips what is already there.
set -euo pipefail

packages=(
  curl
  nghttp2-client      # h2load: the benchmark's HTTP/2 load generator
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
