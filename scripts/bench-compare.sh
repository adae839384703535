#!/usr/bin/env bash
# etcd 3.4 vs cairn, side by side: builds cairn and cairn-bench (plain release build, as shipped,
# in its own scratch path so the test build in .build is untouched), then runs the same
# cairn-bench suite against a fresh single-member etcd and a fresh cairn, alternating, and
# prints the table of medians and ratios; writes it into docs/benchmarks.md.
#
#   scripts/bench-compare.sh                  # 3 rounds of put / single-client put / ranges
#   scripts/bench-compare.sh --scale          # and the 1,000,000-key scale test (several minutes)
#   scripts/bench-compare.sh --rounds 5 --no-doc
#
# Needs etcd and etcdctl on the PATH (Debian: etcd-server, etcd-client). Every other option is
# passed to scripts/bench-compare.py (see --help there). BENCH_BUILD_FLAGS overrides the build
# flags, BENCH_SKIP_BUILD=1 uses what is already built in the scratch path.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    echo "bench-compare: etcd and etcdctl must be on the PATH (apt-get install etcd-server etcd-client)" >&2
    exit 2
fi
scratch=${BENCH_SCRATCH_PATH:-.build/bench-release}
flags=${BENCH_BUILD_FLAGS:--c release}
build="swift build $flags --scratch-path $scratch"
lock=${BENCH_BUILD_LOCK:-/work/dev/swift-build.lock}
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    # One product per invocation: swift build builds only the last --product given. On a
    # shared machine the build lock (if present) serializes builds; the benchmark runs outside it.
    for product in cairn cairnctl cairn-bench; do
        echo "bench-compare: $build --product $product" >&2
        if [ -e "$lock" ]; then
            flock "$lock" $build --product $product >"$scratch.log" 2>&1 || { tail -30 "$scratch.log" >&2; exit 1; }
        else
            $build --product $product >"$scratch.log" 2>&1 || { tail -30 "$scratch.log" >&2; exit 1; }
        fi
    done
fi
bin=$($build --show-bin-path)
export BENCH_COMMAND_LINE="scripts/bench-compare.sh $*"
exec python3 scripts/bench-compare.py --cairn "$bin/cairn" --bench "$bin/cairn-bench" --cairnctl "$bin/cairnctl" \
    --build-command "$build" "$@"
