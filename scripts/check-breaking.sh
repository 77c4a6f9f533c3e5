#!/usr/bin/env bash
# Fails when proto/ breaks wire or generated-code compatibility (buf.yaml's
# `breaking` rules) against the previous commit of main, so a change that
# would break deployed clients does not go in unnoticed. Compares the working
# tree with AGAINST_REF (default HEAD~1; a pull request job may pass
# origin/main). Passes, saying why, when there is nothing to compare with:
# no previous commit, or a previous commit without proto/.
set -euo pipefail
cd "$(dirname "$0")/.."

buf="node_modules/.bin/buf"
ref="${AGAINST_REF:-HEAD~1}"

has_ref() { git rev-parse --verify -q "$ref^{commit}" >/dev/null; }
shallow() { [ "$(git rev-parse --is-shallow-repository)" = "true" ]; }

# A depth-1 clone hides the previous commit: deepen it, and fail rather than
# pass when that is impossible, since passing there would check nothing.
if ! has_ref && shallow; then
  git fetch -q --deepen=1 2>/dev/null || true
  if ! has_ref; then
    echo "check-breaking: $ref is missing from this shallow clone; fetch with --depth=2 or more" >&2
    exit 1
  fi
fi
if ! has_ref; then
  echo "check-breaking: no previous commit ($ref), nothing to compare with"
  exit 0
fi
if ! git cat-file -e "$ref:proto" 2>/dev/null; then
  echo "check-breaking: $ref has no proto/ yet, nothing to compare with"
  exit 0
fi

against=".git#ref=$(git rev-parse "$ref")"
# Before buf.yaml existed, the module was the proto/ directory itself.
git cat-file -e "$ref:buf.yaml" 2>/dev/null || against="$against,subdir=proto"

echo "check-breaking: buf breaking against $ref ($against)"
"$buf" breaking --against "$against"
echo "check-breaking: no breaking changes"
