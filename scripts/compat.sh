#!/usr/bin/env bash
# etcd compatibility suite (Tests/compat): runs the etcdctl script against a
# fresh real etcd and a fresh cairn and diffs the normalized transcripts; then,
# if cairnctl is built, runs it against etcd and diffs it with etcdctl's.
# Installs etcd-server/etcd-client (etcd 3.4) when missing. Builds nothing:
# set CAIRN_BIN / CAIRNCTL_BIN or build the release products first.
# Transcripts go to ${COMPAT_OUT:-.build/compat}. Exit 0 only if every comparison is equal.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh etcd-server etcd-client || exit 2
cairn=${CAIRN_BIN:-.build/release/cairn}
cairnctl=${CAIRNCTL_BIN:-.build/release/cairnctl}
out=${COMPAT_OUT:-.build/compat}
mkdir -p "$out"
status=0

if [ ! -x "$cairn" ]; then
    echo "compat: no cairn at $cairn (build it: swift build -c release --product cairn)" >&2
    exit 2
fi
echo "== compat: etcd vs cairn ($cairn), client etcdctl"
python3 Tests/compat/run.py compare \
    --a-name etcd --a-server etcd --a-client etcdctl \
    --b-name cairn --b-server "$cairn" --b-client etcdctl \
    --out-dir "$out/server" || status=1

if [ "${COMPAT_SKIP_CLIENT:-0}" = 1 ]; then
    echo "== compat: client comparison (etcdctl vs cairnctl) not requested (COMPAT_SKIP_CLIENT=1)"
elif [ -x "$cairnctl" ]; then
    echo "== compat: etcdctl vs cairnctl ($cairnctl), server etcd"
    python3 Tests/compat/run.py compare \
        --a-name etcdctl --a-server etcd --a-client etcdctl \
        --b-name cairnctl --b-server etcd --b-client "$cairnctl" \
        --out-dir "$out/client" || status=1
else
    echo "== compat: no cairnctl at $cairnctl; client comparison skipped"
fi
exit $status
