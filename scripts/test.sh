#!/usr/bin/env bash
# Runs the whole test suite (release build, with testing enabled), installing
# missing Debian packages first. Ends with a plain "N passed, 0 failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
# etcd and etcdctl 3.4: CairnctlTests compare cairnctl with etcdctl on a real etcd.
scripts/deps.sh etcd-server etcd-client
log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift test -c release -Xswiftc -enable-testing "$@" 2>&1 | tee "$log"
# swift test failed if the pipeline failed (pipefail); otherwise summarize.
passed=$(sed -n 's/.*Test run with \([0-9]*\) tests\{0,1\} in .* passed.*/\1/p' "$log" | tail -1)
# The compatibility suite: the real etcdctl 3.4 drives a real etcd 3.4 and cairn through the
# same script, and cairnctl runs it against etcd next to etcdctl; the normalized transcripts
# must be equal. Built with the test build's flags so nothing is compiled twice.
swift build -c release -Xswiftc -enable-testing --product cairn
swift build -c release -Xswiftc -enable-testing --product cairnctl
bin=$(swift build -c release -Xswiftc -enable-testing --show-bin-path)
CAIRN_BIN=$bin/cairn CAIRNCTL_BIN=$bin/cairnctl scripts/compat.sh
echo "compatibility suite: etcd and cairn transcripts equal, etcdctl and cairnctl transcripts equal"
echo "${passed:-0} passed, 0 failed"
