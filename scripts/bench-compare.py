#!/usr/bin/env python3
"""etcd 3.4 and cairn side by side: the same cairn-bench suite against each, alternating.

Run through scripts/bench-compare.sh, which builds cairn and cairn-bench first. Every server
runs as a single member with a fresh data dir on free ports under --workdir. Each round starts
a fresh etcd and a fresh cairn (the order alternates between rounds) and runs the suite
against each; the table gives the median of the rounds and the ratio cairn/etcd. With
--scale, both are then filled with --scale-keys keys and measured for resident memory,
data-dir, database and snapshot size, and restart time. The results are printed and, unless
--no-doc, written into docs/benchmarks.md between the bench-compare markers.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

BEGIN = "<!-- bench-compare:begin -->"
END = "<!-- bench-compare:end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid, field="VmRSS"):
    """Resident memory from /proc/PID/status: VmRSS (all), RssAnon (heap, stacks) or RssFile
    (file pages mapped in, such as a memory-mapped database file)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def fsync_floor(directory, count=300):
    """Latency of a 4 KiB append + fdatasync in `directory` (the disk the servers use)."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    block = b"\0" * 4096
    samples = []
    try:
        for _ in range(count):
            t = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - t) * 1e6)
    finally:
        os.close(fd)
        os.unlink(path)
    samples.sort()
    return {"p50_us": samples[len(samples) // 2], "p99_us": samples[int(len(samples) * 0.99) - 1], "count": count}


class Server:
    """One single-member server (etcd or cairn) with etcd's flags."""

    def __init__(self, kind, binary, etcdctl, data_dir, log_path):
        self.kind, self.binary, self.etcdctl = kind, binary, etcdctl
        self.data_dir, self.log_path = data_dir, log_path
        self.proc = None
        self.client_port = self.peer_port = None

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    def argv(self):
        client = "http://127.0.0.1:%d" % self.client_port
        peer = "http://127.0.0.1:%d" % self.peer_port
        return [self.binary, "--name", "bench", "--data-dir", self.data_dir,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "bench=" + peer]

    def start(self, reuse_ports=False):
        """Starts the server; returns seconds from process start to the first successful request."""
        if not reuse_ports:
            self.client_port, self.peer_port = free_port(), free_port()
        argv = self.argv()
        log("  starting " + " ".join(shlex.quote(a) for a in argv))
        logf = open(self.log_path, "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        logf.close()
        deadline = started + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s; log: %s" % (self.kind, self.proc.returncode, self.log_path))
            r = subprocess.run([self.etcdctl, "--endpoints", self.endpoint, "--dial-timeout", "1s",
                                "--command-timeout", "2s", "get", "bench-ready-probe"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                return time.monotonic() - started
            time.sleep(0.01)
        raise RuntimeError("%s not ready within 120 s; log: %s" % (self.kind, self.log_path))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def etcdctl_run(self, *args):
        return subprocess.run([self.etcdctl, "--endpoints", self.endpoint] + list(args), check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def metrics(self):
        try:
            with urllib.request.urlopen("http://%s/metrics" % self.endpoint, timeout=10) as r:
                return r.read().decode()
        except Exception as e:  # noqa: BLE001 - any failure means "no metrics"
            log("  /metrics of %s failed: %s" % (self.kind, e))
            return ""


def histogram_sums(text, name):
    """{label-set: (sum, count)} of one Prometheus histogram in exposition text."""
    out = {}
    pattern = re.compile(r"^%s_(sum|count)(\{[^}]*\})?\s+(\S+)" % re.escape(name))
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        labels = m.group(2) or ""
        s, c = out.get(labels, (0.0, 0.0))
        if m.group(1) == "sum":
            s = float(m.group(3))
        else:
            c = float(m.group(3))
        out[labels] = (s, c)
    return out


STAGE_METRIC = "cairn_put_stage_duration_seconds"
ETCD_METRICS = ["etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds"]


def stage_means(before, after):
    """Mean seconds per observation over the run, for the put stages and etcd's disk histograms."""
    means = {}
    for name in [STAGE_METRIC] + ETCD_METRICS:
        b, a = histogram_sums(before, name), histogram_sums(after, name)
        for labels, (s1, c1) in a.items():
            s0, c0 = b.get(labels, (0.0, 0.0))
            if c1 - c0 > 0:
                label = labels
                m = re.search(r'stage="([^"]*)"', labels)
                key = "%s{stage=%s}" % (name, m.group(1)) if m else name + label
                means[key] = {"mean_s": (s1 - s0) / (c1 - c0), "count": c1 - c0}
    return means


class Suite:
    def __init__(self, args):
        self.args = args
        self.commands = []  # every cairn-bench command line run, once per distinct line

    def bench(self, server, name, bench_args):
        argv = [self.args.bench] + bench_args[:1] + ["--endpoints", server.endpoint, "--json"] + bench_args[1:]
        shown = " ".join([os.path.basename(self.args.bench)] + [shlex.quote(a) for a in bench_args[:1]]
                         + ["--endpoints", "$ENDPOINT"] + [shlex.quote(a) for a in bench_args[1:]])
        if shown not in self.commands:
            self.commands.append(shown)
        cpu0 = cpu_seconds(server.proc.pid)
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        cpu1 = cpu_seconds(server.proc.pid)
        if r.returncode != 0:
            raise RuntimeError("%s failed against %s (exit %d)" % (shown, server.kind, r.returncode))
        summary = json.loads(r.stdout)
        res = summary["results"][0]
        out = {
            "rps": res["requestsPerSecond"], "p50_ms": res["p50Microseconds"] / 1000,
            "p90_ms": res["p90Microseconds"] / 1000, "p99_ms": res["p99Microseconds"] / 1000,
            "avg_ms": res["averageMicroseconds"] / 1000, "failed": res["failed"], "requests": res["requests"],
            "client_cpu_us": summary["clientCPUMicrosecondsPerRequest"],
            "server_cpu_us": (cpu1 - cpu0) * 1e6 / max(1, res["requests"]),
            "errors": res["errors"],
        }
        log("  %-8s %-7s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  server %6.1f us/req  client %5.1f us/req  failed %d"
            % (name, server.kind, out["rps"], out["p50_ms"], out["p99_ms"], out["server_cpu_us"],
               out["client_cpu_us"], out["failed"]))
        return out

    def round(self, server):
        a = self.args
        results = {}
        put = ["put", "--key-size", "8", "--val-size", "256", "--sequential-keys"]
        results["put-100"] = self.bench(server, "put-100", put + [
            "--conns", "10", "--clients", "100", "--total", str(a.put_total), "--key-space-size", str(a.put_total)])
        before = server.metrics()
        results["put-1"] = self.bench(server, "put-1", put + [
            "--conns", "1", "--clients", "1", "--total", str(a.put1_total), "--key-space-size", str(a.put1_total)])
        results["put-1"]["stages"] = stage_means(before, server.metrics())
        server.etcdctl_run("put", "foo", "v" * 256)
        for c, name in (("l", "range-l"), ("s", "range-s")):
            results[name] = self.bench(server, name, [
                "range", "foo", "--conns", "10", "--clients", "100", "--total", str(a.range_total),
                "--consistency", c])
        return results

    def scale(self, server, workdir, random_values=True):
        """Loads --scale-keys keys, then measures memory, sizes and (random values only) restarts.
        random_values=False loads etcd's benchmark tool's values instead: one random value
        repeated for every key (its put command's behaviour, and cairn-bench's default)."""
        a = self.args
        r = {}
        log("  scale: %s, %d keys, %s" % (server.kind, a.scale_keys, "random values" if random_values else "one repeated value"))
        r["load"] = self.bench(server, "scale" if random_values else "scale-repeated", [
            "put", "--key-size", "8", "--val-size", "256", "--sequential-keys"] + (["--random-values"] if random_values else []) + [
            "--conns", "10", "--clients", "100", "--total", str(a.scale_keys), "--key-space-size", str(a.scale_keys)])
        time.sleep(2)
        r["rss_after_load"] = rss_bytes(server.proc.pid)
        r["rss_anon_after_load"] = rss_bytes(server.proc.pid, "RssAnon")
        r["rss_file_after_load"] = rss_bytes(server.proc.pid, "RssFile")
        snap = os.path.join(workdir, "%s.snapshot.db" % server.kind)
        # etcd: its database file as etcdctl snapshot save streams it. cairn: its own snapshot
        # format (zstd, what it keeps in member/snap), asked for with cairnctl's --format cairn;
        # its default stream is etcd's format, about the size of its keyspace.
        if server.kind == "etcd":
            server.etcdctl_run("--command-timeout", "600s", "snapshot", "save", snap)
            cmd = "etcdctl --endpoints $ENDPOINT --command-timeout 600s snapshot save FILE"
        else:
            subprocess.run([a.cairnctl, "--endpoints", server.endpoint, "--command-timeout", "600s", "snapshot", "save",
                            "--format", "cairn", snap], check=True, stdout=subprocess.DEVNULL)
            cmd = "cairnctl --endpoints $ENDPOINT --command-timeout 600s snapshot save --format cairn FILE"
        r["snapshot_command"] = cmd
        if cmd not in self.commands:
            self.commands.append(cmd)
        r["snapshot_bytes"] = os.path.getsize(snap)
        os.unlink(snap)
        server.stop()
        r["data_dir_bytes"] = dir_bytes(server.data_dir)
        db = os.path.join(server.data_dir, "member", "snap", "db")
        keyspace = os.path.join(server.data_dir, "member", "keyspace")
        r["database_bytes"] = os.path.getsize(db) if os.path.exists(db) else dir_bytes(keyspace)
        restarts = []
        for _ in range(a.restarts if random_values else 0):
            restarts.append(server.start(reuse_ports=True))
            rss = rss_bytes(server.proc.pid)
            server.stop()
        if not restarts:
            log("  scale: %s rss %.0f MiB, data dir %.0f MiB, snapshot %.0f MiB"
                % (server.kind, r["rss_after_load"] / 2**20, r["data_dir_bytes"] / 2**20, r["snapshot_bytes"] / 2**20))
            return r
        r["restart_s"] = statistics.median(restarts)
        r["restart_all_s"] = restarts
        r["rss_after_restart"] = rss
        log("  scale: %s rss %.0f MiB, data dir %.0f MiB, snapshot %.0f MiB, restart %.2f s"
            % (server.kind, r["rss_after_load"] / 2**20, r["data_dir_bytes"] / 2**20, r["snapshot_bytes"] / 2**20,
               r["restart_s"]))
        return r


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, float) and abs(v) < 10 and digits == 1:
        return "%.3f" % v
    return ("{:,.%df}" % digits).format(v)


def ratio(c, e):
    return None if (c is None or e is None or e == 0) else c / e


def build_tables(rounds, scale, fsync, args):
    lines = []
    keys = ["put-100", "put-1", "range-l", "range-s"]

    def series(kind, bench, field):
        return [r[kind][bench][field] for r in rounds]

    rows = [
        ("put, 100 clients / 10 conns", "put-100", "rps", "requests/s", "≥ 1.8×", lambda x: x >= 1.8),
        ("put, 100 clients / 10 conns", "put-100", "p99_ms", "p99 ms", "≤ 1×", lambda x: x <= 1.0),
        ("put, 100 clients / 10 conns", "put-100", "p50_ms", "p50 ms", "", None),
        ("put, 100 clients / 10 conns", "put-100", "server_cpu_us", "server CPU µs/put", "≤ 35 µs (cairn)", None),
        ("put, 100 clients / 10 conns", "put-100", "client_cpu_us", "client CPU µs/put", "", None),
        ("put, 1 client", "put-1", "p50_ms", "p50 ms", "≤ 1×", lambda x: x <= 1.0),
        ("put, 1 client", "put-1", "p99_ms", "p99 ms", "", None),
        ("put, 1 client", "put-1", "rps", "requests/s", "", None),
        ("put, 1 client", "put-1", "server_cpu_us", "server CPU µs/put", "", None),
        ("range linearizable, 100 clients", "range-l", "rps", "requests/s", "≥ 2×", lambda x: x >= 2.0),
        ("range linearizable, 100 clients", "range-l", "p99_ms", "p99 ms", "", None),
        ("range linearizable, 100 clients", "range-l", "server_cpu_us", "server CPU µs/range", "", None),
        ("range linearizable, 100 clients", "range-l", "client_cpu_us", "client CPU µs/range", "", None),
        ("range serializable, 100 clients", "range-s", "rps", "requests/s", "≥ 2×", lambda x: x >= 2.0),
        ("range serializable, 100 clients", "range-s", "p99_ms", "p99 ms", "", None),
        ("range serializable, 100 clients", "range-s", "server_cpu_us", "server CPU µs/range", "", None),
        ("range serializable, 100 clients", "range-s", "client_cpu_us", "client CPU µs/range", "", None),
    ]
    verdicts = []
    lines.append("| benchmark | figure | etcd (median) | cairn (median) | cairn / etcd | goal | met? | etcd runs | cairn runs |")
    lines.append("|---|---|---:|---:|---:|---|---|---|---|")
    for label, bench, field, what, goal, test in rows:
        e_all, c_all = series("etcd", bench, field), series("cairn", bench, field)
        e, c = med(e_all), med(c_all)
        x = ratio(c, e)
        met = "" if test is None or x is None else ("yes" if test(x) else "**no**")
        if field == "server_cpu_us" and bench == "put-100" and c is not None:
            met = "yes" if c <= 35 else "**no**"
        if met:
            if field == "server_cpu_us":
                verdicts.append((label, what + " (cairn: %.1f µs)" % c, goal, None, met))
            else:
                verdicts.append((label, what, goal, x, met))
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, what, fmt(e), fmt(c), "—" if x is None else "%.2f×" % x, goal, met,
            ", ".join(fmt(v) for v in e_all), ", ".join(fmt(v) for v in c_all)))
    failures = sum(r[k][b]["failed"] for r in rounds for k in ("etcd", "cairn") for b in keys)
    lines.append("")
    lines.append("Failed requests over all runs: %d." % failures)

    # Commit-latency breakdown (single-client put), medians over the rounds.
    lines.append("")
    lines.append("**Single-client put: where the time goes** (mean per put over the run, from each server's "
                 "own `/metrics` histograms, scraped before and after; medians of the rounds)")
    lines.append("")
    lines.append("| server | end-to-end mean (client) | stage | mean ms | observations per put |")
    lines.append("|---|---:|---|---:|---:|")
    for kind in ("etcd", "cairn"):
        e2e = med([r[kind]["put-1"]["avg_ms"] for r in rounds])
        names = sorted({k for r in rounds for k in r[kind]["put-1"]["stages"]})
        if kind == "cairn" and not any(n.startswith(STAGE_METRIC) for n in names):
            lines.append("| cairn | %s | `%s` | not exported by this server | |" % (fmt(e2e), STAGE_METRIC))
        if not names:
            lines.append("| %s | %s | (no histograms) | | |" % (kind, fmt(e2e)))
        for n in names:
            mean = med([r[kind]["put-1"]["stages"].get(n, {}).get("mean_s") for r in rounds])
            per = med([r[kind]["put-1"]["stages"].get(n, {}).get("count", 0) / max(1, r[kind]["put-1"]["requests"])
                       for r in rounds])
            lines.append("| %s | %s | `%s` | %s | %.2f |" % (kind, fmt(e2e), n, fmt(mean * 1000 if mean else None), per))

    if scale:
        lines.append("")
        lines.append("**Scale: %s keys** (8-byte keys, a different pseudo-random 256-byte value per key, so that "
                     "compression gains nothing from repeated values; put by 100 clients over 10 conns)"
                     % "{:,}".format(args.scale_keys))
        lines.append("")
        lines.append("| figure | etcd | cairn | cairn / etcd | goal | met? |")
        lines.append("|---|---:|---:|---:|---|---|")
        e, c = scale["etcd"], scale["cairn"]
        mib = lambda b: b / 2**20  # noqa: E731
        srows = [
            ("load rate, puts/s", e["load"]["rps"], c["load"]["rps"], "", None),
            ("resident memory after the load, MiB", mib(e["rss_after_load"]), mib(c["rss_after_load"]), "≤ 0.5×",
             lambda x: x <= 0.5),
            ("of which anonymous (heap, stacks: RssAnon), MiB", mib(e["rss_anon_after_load"]),
             mib(c["rss_anon_after_load"]), "", None),
            ("of which mapped file pages (the database file: RssFile), MiB", mib(e["rss_file_after_load"]),
             mib(c["rss_file_after_load"]), "", None),
            ("resident memory after restart, MiB", mib(e["rss_after_restart"]), mib(c["rss_after_restart"]), "", None),
            ("data dir, MiB", mib(e["data_dir_bytes"]), mib(c["data_dir_bytes"]), "", None),
            ("database file (etcd member/snap/db; cairn member/keyspace), MiB", mib(e["database_bytes"]),
             mib(c["database_bytes"]), "", None),
            ("snapshot file (etcd: etcdctl snapshot save; cairn: cairnctl snapshot save --format cairn), MiB", mib(e["snapshot_bytes"]), mib(c["snapshot_bytes"]), "", None),
            ("restart: process start to first successful get, s (median of %d)" % args.restarts,
             e["restart_s"], c["restart_s"], "≤ 1×", lambda x: x <= 1.0),
        ]
        for what, ev, cv, goal, test in srows:
            x = ratio(cv, ev)
            met = "" if test is None else ("yes" if test(x) else "**no**")
            if met:
                verdicts.append(("scale", what, goal, x, met))
            lines.append("| %s | %s | %s | %s | %s | %s |" % (what, fmt(ev), fmt(cv), "%.2f×" % x, goal, met))
        x = c["snapshot_bytes"] / e["database_bytes"]
        met = "yes" if x <= 0.3 else "**no**"
        verdicts.append(("scale", "cairn snapshot / etcd database file", "≤ 0.3×", x, met))
        lines.append("| cairn snapshot file / etcd database file | %s | %s | %.2f× | ≤ 0.3× | %s |"
                     % (fmt(mib(e["database_bytes"])), fmt(mib(c["snapshot_bytes"])), x, met))
        if "etcd-repeated" in scale:
            er, cr = scale["etcd-repeated"], scale["cairn-repeated"]
            lines.append("")
            lines.append("**The same load with etcd's benchmark tool's values** (its `put` sends one random 256-byte "
                         "value for every key; so does `cairn-bench put` without `--random-values`): fresh servers, "
                         "no restarts")
            lines.append("")
            lines.append("| figure | etcd | cairn | cairn / etcd | goal | met? |")
            lines.append("|---|---:|---:|---:|---|---|")
            for what, ev, cv in (
                ("load rate, puts/s", er["load"]["rps"], cr["load"]["rps"]),
                ("resident memory after the load, MiB", mib(er["rss_after_load"]), mib(cr["rss_after_load"])),
                ("of which anonymous (RssAnon), MiB", mib(er["rss_anon_after_load"]), mib(cr["rss_anon_after_load"])),
                ("of which mapped file pages (RssFile), MiB", mib(er["rss_file_after_load"]), mib(cr["rss_file_after_load"])),
                ("database file, MiB", mib(er["database_bytes"]), mib(cr["database_bytes"])),
                ("snapshot file, MiB", mib(er["snapshot_bytes"]), mib(cr["snapshot_bytes"])),
            ):
                lines.append("| %s | %s | %s | %.2f× |  |  |" % (what, fmt(ev), fmt(cv), ratio(cv, ev)))
            x = cr["snapshot_bytes"] / er["database_bytes"]
            met = "yes" if x <= 0.3 else "**no**"
            verdicts.append(("scale, etcd tool's values", "cairn snapshot / etcd database file", "≤ 0.3×", x, met))
            lines.append("| cairn snapshot file / etcd database file | %s | %s | %.2f× | ≤ 0.3× | %s |"
                         % (fmt(mib(er["database_bytes"])), fmt(mib(cr["snapshot_bytes"])), x, met))
        lines.append("")
        lines.append("Restart times, every try: etcd %s s; cairn %s s."
                     % (", ".join("%.2f" % v for v in e["restart_all_s"]),
                        ", ".join("%.2f" % v for v in c["restart_all_s"])))
    return lines, verdicts


def machine(fsync):
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return ("%d CPUs (%s), %.1f GiB RAM; disk fsync floor (4 KiB append + fdatasync, %d tries, in the data-dir "
            "file system): p50 %.0f µs, p99 %.0f µs"
            % (os.cpu_count(), model, mem / 2**30, fsync["count"], fsync["p50_us"], fsync["p99_us"]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cairn", default=".build/release/cairn")
    p.add_argument("--bench", default=".build/release/cairn-bench")
    p.add_argument("--cairnctl", default=".build/release/cairnctl")
    p.add_argument("--etcd", default=shutil.which("etcd") or "etcd")
    p.add_argument("--etcdctl", default=shutil.which("etcdctl") or "etcdctl")
    p.add_argument("--workdir", default=".build/bench-compare")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--put-total", type=int, default=50000)
    p.add_argument("--put1-total", type=int, default=2000)
    p.add_argument("--range-total", type=int, default=100000)
    p.add_argument("--scale", action="store_true", help="also the 1,000,000-key scale test")
    p.add_argument("--scale-keys", type=int, default=1000000)
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--doc", default="docs/benchmarks.md")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--json-out", default=None, help="also write the raw results here")
    p.add_argument("--build-command", default="", help="recorded in the doc")
    args = p.parse_args()
    for path in (args.cairn, args.bench):
        if not os.access(path, os.X_OK):
            sys.exit("bench-compare: %s is not built" % path)
    if not shutil.which(args.etcd):
        sys.exit("bench-compare: no etcd on the PATH (Debian: apt-get install etcd-server etcd-client)")

    os.makedirs(args.workdir, exist_ok=True)
    workdir = os.path.abspath(args.workdir)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    fsync = fsync_floor(workdir)
    log("fsync floor: p50 %.0f us, p99 %.0f us" % (fsync["p50_us"], fsync["p99_us"]))
    suite = Suite(args)
    binaries = {"etcd": args.etcd, "cairn": args.cairn}
    rounds = []
    servers = []

    def fresh(kind, tag):
        data = os.path.join(workdir, "%s-%s" % (kind, tag))
        shutil.rmtree(data, ignore_errors=True)
        s = Server(kind, binaries[kind], args.etcdctl, data, os.path.join(workdir, "%s-%s.log" % (kind, tag)))
        servers.append(s)
        return s

    try:
        for i in range(args.rounds):
            order = ("etcd", "cairn") if i % 2 == 0 else ("cairn", "etcd")
            log("round %d of %d (%s first)" % (i + 1, args.rounds, order[0]))
            results = {}
            for kind in order:
                s = fresh(kind, "round%d" % i)
                s.start()
                results[kind] = suite.round(s)
                s.stop()
                shutil.rmtree(s.data_dir, ignore_errors=True)
            rounds.append(results)
        scale = None
        if args.scale:
            scale = {}
            for random_values in (True, False):
                for kind in ("etcd", "cairn"):
                    s = fresh(kind, "scale")
                    s.start()
                    scale[kind if random_values else kind + "-repeated"] = suite.scale(s, workdir, random_values)
                    s.stop()
                    shutil.rmtree(s.data_dir, ignore_errors=True)
    finally:
        for s in servers:
            s.stop()
    load_after = os.getloadavg()
    finished = datetime.datetime.now(datetime.timezone.utc)

    table, verdicts = build_tables(rounds, scale, fsync, args)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], stdout=subprocess.PIPE,
                           text=True).stdout.strip()
    etcd_version = subprocess.run([args.etcd, "--version"], stdout=subprocess.PIPE, text=True).stdout.split("\n")[0]
    doc = [BEGIN, "## etcd 3.4 vs cairn (issue 6) — `scripts/bench-compare.sh`", "",
           "### %s–%s UTC, commit %s%s" % (started.strftime("%Y-%m-%d %H:%M"), finished.strftime("%H:%M"), commit,
                                          " (with uncommitted changes)" if dirty else ""),
           "",
           "Written by `%s`. **Machine:** %s. %s; cairn built with `%s`. The machine is "
           "shared: other builds and tests may have been running (load average %.2f before, %.2f after), so "
           "every figure is the median of %d rounds, each on a fresh single-member server (fresh data dir, free "
           "ports) and alternating which server goes first."
           % (os.environ.get("BENCH_COMMAND_LINE") or " ".join(sys.argv), machine(fsync), etcd_version, args.build_command or "(not recorded)",
              load_before[0], load_after[0], args.rounds),
           "", "Commands, each run against both servers (`$ENDPOINT` is the server's client URL); server CPU is "
           "utime+stime from `/proc/PID/stat` before and after each run, divided by the requests:", "", "```sh"]
    doc += suite.commands
    doc += ["etcdctl --endpoints $ENDPOINT put foo <256 bytes>   # before the range runs",
            "```", ""]
    doc += table
    doc += ["", "**Goals of issue 6 on this run:**", ""]
    for label, what, goal, x, met in verdicts:
        measured = "" if x is None else ": cairn/etcd = %.2f×" % x
        doc.append("- %s, %s%s (goal %s) — %s" % (
            label, what, measured, goal, "met" if met == "yes" else "**not met**"))
    doc += ["", END]
    text = "\n".join(doc) + "\n"
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"rounds": rounds, "scale": scale, "fsync": fsync}, f, indent=1)
    if not args.no_doc:
        old = open(args.doc).read() if os.path.exists(args.doc) else "# Benchmarks\n"
        if BEGIN in old and END in old:
            new = old[:old.index(BEGIN)] + text.rstrip("\n") + old[old.index(END) + len(END):]
        else:
            new = old.rstrip("\n") + "\n\n" + text
        with open(args.doc, "w") as f:
            f.write(new)
        log("wrote %s" % args.doc)


if __name__ == "__main__":
    main()
