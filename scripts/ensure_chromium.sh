#!/usr/bin/env bash
# The UI test (tests/integration/test_full_stack.py) drives a system Chromium through Playwright
# (Playwright's own browser download needs a network this project does not assume). Prints the
# binary's path: TUNEOPS_CHROMIUM when set, else chromium on PATH, else Debian's package, installed
# with apt (as root, or through sudo). Fails, naming the fix, where none of these works.
set -euo pipefail
if [ -n "${TUNEOPS_CHROMIUM:-}" ]; then
  if [ ! -x "$TUNEOPS_CHROMIUM" ]; then
    echo "TUNEOPS_CHROMIUM=$TUNEOPS_CHROMIUM is not an executable file; point it at a Chromium binary" >&2
    exit 1
  fi
  echo "$TUNEOPS_CHROMIUM"
  exit 0
fi
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null; then
    command -v "$name"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null; then
  echo "no Chromium found and no apt-get to install one: install Chromium and set TUNEOPS_CHROMIUM to its path" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "no Chromium found: run 'apt-get install chromium' as root, or set TUNEOPS_CHROMIUM" >&2
    exit 1
  fi
  sudo="sudo"
fi
echo "installing Debian's chromium package for the UI test" >&2
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
command -v chromium
