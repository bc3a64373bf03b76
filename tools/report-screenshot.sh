#!/usr/bin/env bash
# Renders a report.html in headless Chromium and saves a PNG screenshot of it, so a person (or a test) can look
# at what the page shows. Needs the Debian package `chromium` (apt-get install -y chromium).
#
#   tools/report-screenshot.sh REPORT.html OUT.png [WIDTH,HEIGHT]     (default 1280,2400)
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
  exit 2
fi
report=$1
out=$2
size=${3:-1280,2400}
if [[ ! -f $report ]]; then
  echo "error: $report: no such file" >&2
  exit 2
fi
if [[ ! $size =~ ^[0-9]+,[0-9]+$ ]]; then
  echo "error: window size '$size' is not WIDTH,HEIGHT" >&2
  exit 2
fi
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [[ -z $browser ]]; then
  echo "error: chromium not found (apt-get install -y chromium)" >&2
  exit 3
fi

abs_report=$(realpath "$report")
abs_out=$(realpath -m "$out")
mkdir -p "$(dirname "$abs_out")"
# A throwaway profile: no state from, or left for, any other run.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The page is self-contained; --no-sandbox because tests run as root in containers; the scale factor pins the PNG
# to WIDTH x HEIGHT pixels.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
  --no-first-run --no-default-browser-check --disable-extensions --user-data-dir="$profile" \
  --window-size="$size" --screenshot="$abs_out" "file://$abs_report" >/dev/null 2>&1 || {
  echo "error: chromium failed to render $report" >&2
  exit 1
}
if [[ ! -s $abs_out ]]; then
  echo "error: chromium wrote no screenshot for $report" >&2
  exit 1
fi
echo "wrote $out"
