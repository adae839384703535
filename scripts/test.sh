#!/usr/bin/env bash
# Runs the whole test suite (release build, with testing enabled), installing
# missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
swift test -c release -Xswiftc -enable-testing "$@"
