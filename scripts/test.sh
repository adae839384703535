#!/usr/bin/env bash
# Runs the whole test suite (release build, with testing enabled), installing
# missing Debian packages first. Ends with a plain "N passed, 0 failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
# etcd and etcdctl 3.4: CairnctlTests compare cairnctl with etcdctl on a real etcd.
scripts/deps.sh etcd-server etcd-client
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The binaries first: CairnProcessTests run cairn (kill -9, 10,000 watchers, vanishing
# clients) and the suites below drive cairn and cairnctl. Same flags as the tests, so the
# library modules build once.
swift build -c release -Xswiftc -enable-testing --product cairn
swift build -c release -Xswiftc -enable-testing --product cairnctl
bin=$(swift build -c release -Xswiftc -enable-testing --show-bin-path)
swift test -c release -Xswiftc -enable-testing "$@" 2>&1 | tee "$log"
# swift test failed if the pipeline failed (pipefail); otherwise summarize.
# Swift Testing's total plus XCTest's (its last "Executed N tests" line is the whole run).
testing=$(sed -n 's/.*Test run with \([0-9]*\) tests\{0,1\} in .* passed.*/\1/p' "$log" | tail -1)
xctest=$(sed -n 's/.*Executed \([0-9]*\) tests\{0,1\}, with 0 failures.*/\1/p' "$log" | tail -1)
passed=$(( ${testing:-0} + ${xctest:-0} ))
# The compatibility suite: the real etcdctl 3.4 drives a real etcd 3.4 and cairn through the
# same script, and cairnctl runs it against etcd next to etcdctl; the normalized transcripts
# must be equal.
CAIRN_BIN=$bin/cairn CAIRNCTL_BIN=$bin/cairnctl scripts/compat.sh
echo "compatibility suite: etcd and cairn transcripts equal, etcdctl and cairnctl transcripts equal"
# etcd snapshot files both ways (issue 7): etcd -> cairnctl snapshot restore -> cairn ->
# etcdctl snapshot save/status/restore -> etcd, identical answers; and the refusals.
python3 Tests/snapshot/interop.py "$bin/cairn" "$bin/cairnctl"
# Another HTTP/2 and gRPC implementation than grpc-go and NIOHTTP2: Python grpcio (C-core),
# installed into .build/pydeps from PyPI when missing, against cairn and etcd alike.
python3 Tests/clients/grpcio_check.py "$bin/cairn"
echo "${passed} passed, 0 failed"
