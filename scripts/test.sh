#!/usr/bin/env bash
# Runs the whole test suite (release build, with testing enabled), installing
# missing Debian packages first. Ends with a plain "N passed, 0 failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift test -c release -Xswiftc -enable-testing "$@" 2>&1 | tee "$log"
# swift test failed if the pipeline failed (pipefail); otherwise summarize.
passed=$(sed -n 's/.*Test run with \([0-9]*\) tests\{0,1\} in .* passed.*/\1/p' "$log" | tail -1)
echo "${passed:-0} passed, 0 failed"
