#!/usr/bin/env python3
"""Sync cost of appends into fallocate'd versus zero-filled space (why WAL segments are zero-filled).

    python3 scripts/fsync-prealloc.py [DIR] [APPENDS] [BYTES]

Creates a 64 MiB file in DIR (default: the current directory) each way, then appends BYTES
(default 5,000) and fdatasyncs, APPENDS times (default 2,000); prints p50/p99 latency and the
process's CPU per append+sync. Run it on the file system that holds the data dir.
"""
import os, resource, sys, time

def run(mode, directory, n, size):
    path = os.path.join(directory, "fsync-prealloc-%s.tmp" % mode)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        total = 64 << 20
        if mode == "fallocate":
            os.posix_fallocate(fd, 0, total)
        else:
            zeros = b"\0" * (1 << 20)
            for _ in range(total // len(zeros)):
                os.write(fd, zeros)
        os.fsync(fd)
        d = os.open(directory, os.O_RDONLY)
        os.fsync(d)
        os.close(d)
        buf = b"x" * size
        latencies = []
        before = resource.getrusage(resource.RUSAGE_SELF)
        offset = 0
        for _ in range(n):
            t = time.perf_counter()
            os.pwrite(fd, buf, offset)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - t)
            offset += size
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / n * 1e6
        latencies.sort()
        print("%-9s p50 %6.1f us  p99 %6.1f us  CPU %5.1f us per append+sync"
              % (mode, latencies[n // 2] * 1e6, latencies[int(n * 0.99)] * 1e6, cpu))
    finally:
        os.close(fd)
        os.unlink(path)

if __name__ == "__main__":
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    for mode in ["fallocate", "zerofill", "fallocate", "zerofill"]:
        run(mode, directory, n, size)
