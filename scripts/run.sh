#!/usr/bin/env bash
# Builds cairn (release) and starts one member with its data in ./default.cairn,
# installing missing Debian packages first. Extra arguments go to cairn.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
swift build -c release --product cairn
exec .build/release/cairn "$@"
