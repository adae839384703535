#!/usr/bin/env python3
"""etcd snapshot files between etcd 3.4 and Cairn, both ways (issue 7's acceptance).

etcd -> Cairn -> etcd: a data set with history (several versions per key, deletes, a
compaction, leases with attached keys, a txn) is written to a real etcd 3.4 and saved with
`etcdctl snapshot save`; `cairnctl snapshot restore` makes a Cairn data dir of it; cairn
serves it and must answer `get --rev=N` exactly as etcd did at every retained revision (and
refuse the compacted ones); `etcdctl snapshot save` from cairn gives a file that `etcdctl
snapshot status` reads and `etcdctl snapshot restore` + a real etcd serve with the same
answers again. Then the four refusals: a truncated file, a wrong SHA-256 trailer, a file
that is not bbolt, a bbolt file without etcd's buckets; none may leave the target data dir.

Usage: interop.py CAIRN_BIN CAIRNCTL_BIN   (etcd and etcdctl 3.4 on PATH)
Exit 0 only if every check passed.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ETCD, ETCDCTL = "etcd", "etcdctl"
failures = []


def log(msg):
    print("snapshot-interop: " + msg, flush=True)


def check(cond, what):
    if cond:
        log("ok: " + what)
    else:
        failures.append(what)
        log("FAILED: " + what)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    e["ETCDCTL_API"] = "3"
    return e


def run(argv, stdin=None):
    r = subprocess.run(argv, input=(stdin or "").encode(), capture_output=True, env=env(), timeout=120)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


class Member:
    """etcd or cairn, one member on free local ports."""

    def __init__(self, binary, data_dir, name, peer_url, workdir, extra=()):
        self.client_url = "http://127.0.0.1:%d" % free_port()
        self.log_path = os.path.join(workdir, os.path.basename(data_dir) + ".log")
        argv = [binary, "--name", name, "--data-dir", data_dir,
                "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", "%s=%s" % (name, peer_url)] + list(extra)
        with open(self.log_path, "wb") as f:
            self.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.ctl("endpoint", "health")[0] == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("%s did not start:\n%s" % (binary, open(self.log_path).read()[-3000:]))

    def ctl(self, *args, stdin=None):
        return run([ETCDCTL, "--endpoints", self.client_url, "--dial-timeout=2s", "--command-timeout=10s"] + list(args),
                   stdin)

    def must(self, *args, stdin=None):
        code, out, err = self.ctl(*args, stdin=stdin)
        if code != 0:
            raise RuntimeError("etcdctl %s: exit %d: %s" % (" ".join(args), code, err))
        return out

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def write_data_set(m):
    """Returns (compacted revision, last revision, lease ids)."""
    for i in range(1, 4):
        m.must("put", "k1", "v%d" % i)
        m.must("put", "k2", "w%d" % i)
    m.must("put", "k3", "doomed")
    m.must("del", "k3")
    leases = []
    for ttl in (600, 900):
        leases.append(m.must("lease", "grant", str(ttl)).split()[1])
    m.must("put", "--lease=" + leases[0], "leased/a", "la")
    m.must("put", "--lease=" + leases[0], "leased/b", "lb")
    m.must("put", "--lease=" + leases[1], "leased/c", "lc")
    compact_at = int(json.loads(m.must("get", "k1", "-w", "json"))["header"]["revision"]) - 3
    m.must("compact", str(compact_at))
    out = m.must("txn", stdin='value("k1") = "v3"\n\nput k4 from-txn\ndel k2\n\nput k5 failure\n\n')
    if not out.startswith("SUCCESS"):
        raise RuntimeError("txn did not succeed: " + out)
    m.must("put", "k1", "v4")
    m.must("put", "big", "x" * 20000)
    last = int(json.loads(m.must("get", "k1", "-w", "json"))["header"]["revision"])
    return compact_at, last, leases


def answers(m, compact_at, last, leases):
    """Everything compared between members: get --rev at each revision, and the leases."""
    out = {}
    for rev in range(1, last + 1):
        code, o, err = m.ctl("get", "", "--prefix", "--rev=%d" % rev, "-w", "json")
        if code == 0:
            out[rev] = json.loads(o).get("kvs", [])
        else:
            out[rev] = "error: " + err.strip().splitlines()[-1]
    for lid in leases:
        o = m.must("lease", "timetolive", lid, "--keys", "-w", "json")
        j = json.loads(o)
        out["lease " + lid] = (j.get("id"), j.get("grantedTTL"), sorted(j.get("keys") or []))
    out["current"] = json.loads(m.must("get", "", "--prefix", "-w", "json")).get("kvs", [])
    return out


def diff(a, b):
    return [k for k in a if a.get(k) != b.get(k)] + [k for k in b if k not in a]


def status_json(path):
    code, out, err = run([ETCDCTL, "snapshot", "status", path, "-w", "json"])
    if code != 0:
        raise RuntimeError("etcdctl snapshot status %s: %s" % (path, err))
    return json.loads(out)


def bolt_without_etcd_buckets(path):
    """A valid bbolt database (4 pages) whose root bucket is empty, with a good SHA-256 trailer."""
    ps = 4096

    def fnv64a(b):
        h = 0xcbf29ce484222325
        for x in b:
            h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return h

    pages = []
    for pid in (0, 1):
        meta = struct.pack("<IIIIQQQQQ", 0xED0CDAED, 2, ps, 0, 3, 0, 2, 4, pid)
        page = struct.pack("<QHHI", pid, 0x04, 0, 0) + meta + struct.pack("<Q", fnv64a(meta))
        pages.append(page.ljust(ps, b"\0"))
    pages.append(struct.pack("<QHHI", 2, 0x10, 0, 0).ljust(ps, b"\0"))
    pages.append(struct.pack("<QHHI", 3, 0x02, 0, 0).ljust(ps, b"\0"))
    db = b"".join(pages)
    with open(path, "wb") as f:
        f.write(db + hashlib.sha256(db).digest())


def main():
    cairn, cairnctl = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="cairn-snapshot-interop-")
    members = []
    try:
        started = time.monotonic()
        # 1. The source: a real etcd.
        etcd = Member(ETCD, os.path.join(work, "etcd"), "default", "http://127.0.0.1:%d" % free_port(), work)
        members.append(etcd)
        compact_at, last, leases = write_data_set(etcd)
        expected = answers(etcd, compact_at, last, leases)
        check(all(isinstance(expected[r], str) for r in range(1, compact_at)) and
              all(isinstance(expected[r], list) for r in range(compact_at, last + 1)),
              "etcd: revisions below %d compacted, %d..%d readable" % (compact_at, compact_at, last))
        etcd_snap = os.path.join(work, "etcd.snap")
        etcd.must("snapshot", "save", etcd_snap)
        etcd.stop()

        # 2. Into Cairn.
        name, peer = "cairn-restored", "http://127.0.0.1:%d" % free_port()
        cairn_dir = os.path.join(work, "cairn")
        code, out, err = run([cairnctl, "snapshot", "restore", etcd_snap, "--data-dir", cairn_dir, "--name", name,
                              "--initial-cluster", "%s=%s" % (name, peer), "--initial-advertise-peer-urls", peer])
        check(code == 0, "cairnctl snapshot restore of etcd's snapshot (%s%s)" % (out.strip(), err.strip()))
        code, out, err = run([cairnctl, "snapshot", "status", etcd_snap, "-w", "json"])
        check(code == 0 and json.loads(out) == status_json(etcd_snap),
              "cairnctl snapshot status equals etcdctl's (%s)" % out.strip())
        for fmt in ("simple", "table", "json", "fields"):
            ours, theirs = run([cairnctl, "snapshot", "status", etcd_snap, "-w", fmt]), \
                run([ETCDCTL, "snapshot", "status", etcd_snap, "-w", fmt])
            check(ours[0] == 0 and ours[1] == theirs[1], "cairnctl snapshot status -w %s prints what etcdctl prints (%r)" %
                  (fmt, ours[1] if ours[1] == theirs[1] else (ours, theirs)))
        # etcd's own database file (no trailer) is accepted with --skip-hash-check, as by etcdctl.
        code, out, err = run([cairnctl, "snapshot", "restore", os.path.join(work, "etcd", "member", "snap", "db"),
                              "--skip-hash-check", "--data-dir", os.path.join(work, "from-db")])
        check(code == 0, "cairnctl snapshot restore --skip-hash-check of etcd's member/snap/db (%s)" % (err.strip() or out.strip()))
        restored_flag = os.path.join(cairn_dir, "member", "keyspace.restored")
        check(os.path.exists(restored_flag),
              "the restored data dir says its keyspace holds data no WAL has (member/keyspace.restored)")
        c = Member(cairn, cairn_dir, name, peer, work)
        members.append(c)
        got = answers(c, compact_at, last, leases)
        bad = diff(expected, got)
        check(not bad, "cairn answers get --rev=1..%d and the leases as etcd did%s" %
              (last, "" if not bad else ": differs at %s, e.g. etcd %r cairn %r" % (bad, expected[bad[0]], got.get(bad[0]))))
        # The member takes its first snapshot at once; then the flag goes (a machine crash may
        # from then on rebuild the keyspace from that snapshot and the WAL).
        deadline = time.time() + 30
        snaps = lambda: [f for f in os.listdir(os.path.join(cairn_dir, "member", "snap")) if f.endswith(".snap")]  # noqa: E731
        while (os.path.exists(restored_flag) or not snaps()) and time.time() < deadline:
            time.sleep(0.05)
        check(not os.path.exists(restored_flag) and snaps(),
              "the restored member takes its first snapshot at once and clears member/keyspace.restored (%s)" % snaps())

        # The same file through cairn's start-up path (--initial-etcd-snapshot, first start only).
        name2, peer2 = "cairn-started", "http://127.0.0.1:%d" % free_port()
        started_dir = os.path.join(work, "cairn-started")
        s = Member(cairn, started_dir, name2, peer2, work, extra=["--initial-etcd-snapshot", etcd_snap])
        members.append(s)
        got = answers(s, compact_at, last, leases)
        bad = diff(expected, got)
        check(not bad, "cairn --initial-etcd-snapshot answers get --rev=1..%d and the leases as etcd did%s" %
              (last, "" if not bad else ": differs at %s" % bad))
        s.must("put", "after-start", "x")
        s.stop()
        s = Member(cairn, started_dir, name2, peer2, work, extra=["--initial-etcd-snapshot", etcd_snap])
        members.append(s)
        check(s.must("get", "after-start", "--print-value-only").strip() == "x",
              "on a restart --initial-etcd-snapshot is ignored and the member keeps its writes")
        s.stop()
        code, out, err = run([cairn, "--data-dir", os.path.join(work, "cairn-bad-start"), "--initial-etcd-snapshot",
                              os.path.join(work, "no-such.snap")])
        check(code == 1 and "--initial-etcd-snapshot" in err + out and
              not os.path.exists(os.path.join(work, "cairn-bad-start", "member")),
              "cairn --initial-etcd-snapshot with a missing file exits 1 with the reason and creates no member (%s)" %
              (err.strip()[-300:] or out.strip()[-300:]))

        # The restored member restarts as any other (its WAL now exists).
        c.stop()
        c = Member(cairn, cairn_dir, name, peer, work)
        members.append(c)
        got = json.loads(c.must("get", "", "--prefix", "-w", "json")).get("kvs", [])
        check(got == expected["current"], "cairn serves the restored keys after a restart")

        # 3. Back out of Cairn with etcd's own tools.
        cairn_snap = os.path.join(work, "cairn.snap")
        c.must("snapshot", "save", cairn_snap)
        st = status_json(cairn_snap)
        check(st["revision"] == last and st["totalSize"] > 0,
              "etcdctl snapshot status reads cairn's snapshot (%s)" % json.dumps(st))
        own = os.path.join(work, "cairn-own.snap")
        code, out, err = run([cairnctl, "--endpoints", c.client_url, "snapshot", "save", "--format", "cairn", own])
        check(code == 0 and os.path.getsize(own) > 0 and open(own, "rb").read(4) != open(cairn_snap, "rb").read(4),
              "cairnctl snapshot save --format cairn still gives Cairn's own format (%s)" % (err.strip() or out.strip()))
        # A larger stream: grpc-go's etcdctl sends a PING per burst of DATA it reads (~13 per
        # MB), which once met the server's HTTP/2 DoS limit (GOAWAY after 200).
        for i in range(24):
            c.must("put", "bulk/%02d" % i, stdin="%02d" % i + "b" * 999_998)
        bulk_snap = os.path.join(work, "cairn-bulk.snap")
        code, out, err = c.ctl("snapshot", "save", bulk_snap)
        st = status_json(bulk_snap) if code == 0 else {}
        check(code == 0 and st.get("revision") == last + 24 and st.get("totalSize", 0) > 24_000_000,
              "etcdctl snapshot save of a %s-byte snapshot from cairn%s" % (st.get("totalSize"), "" if code == 0 else ": " + err[-300:]))
        c.stop()
        peer2 = "http://127.0.0.1:%d" % free_port()
        etcd2_dir = os.path.join(work, "etcd2")
        code, out, err = run([ETCDCTL, "snapshot", "restore", cairn_snap, "--data-dir", etcd2_dir, "--name", "again",
                              "--initial-cluster", "again=" + peer2, "--initial-advertise-peer-urls", peer2])
        check(code == 0, "etcdctl snapshot restore of cairn's snapshot" + ("" if code == 0 else ": " + err[-2000:]))
        etcd2 = Member(ETCD, etcd2_dir, "again", peer2, work)
        members.append(etcd2)
        got = answers(etcd2, compact_at, last, leases)
        bad = diff(expected, got)
        check(not bad, "etcd restored from cairn's snapshot answers as the original%s" %
              ("" if not bad else ": differs at %s, e.g. %r vs %r" % (bad, expected[bad[0]], got.get(bad[0]))))
        etcd2.stop()

        # 4. Refusals; the target data dir must not appear.
        data = open(etcd_snap, "rb").read()
        cases = {
            "truncated": (data[:len(data) - 5000], "truncated"),
            "wrong SHA-256 trailer": (data[:-1] + bytes([data[-1] ^ 0xFF]), "SHA-256 trailer mismatch"),
            "not bbolt": (b"this is not a database\n" * 300, "not a bbolt file"),
        }
        for what, (content, message) in cases.items():
            path = os.path.join(work, "bad.snap")
            with open(path, "wb") as f:
                f.write(content)
            cases[what] = (path, message)
            target = os.path.join(work, "refused")
            code, out, err = run([cairnctl, "snapshot", "restore", path, "--data-dir", target])
            leftovers = [n for n in os.listdir(work) if n.startswith("refused")]
            check(code != 0 and message in err and not leftovers,
                  "%s file refused: %r, nothing written (%s)" % (what, err.strip(), leftovers or "no refused*"))
        path = os.path.join(work, "nobuckets.snap")
        bolt_without_etcd_buckets(path)
        target = os.path.join(work, "refused")
        code, out, err = run([cairnctl, "snapshot", "restore", path, "--data-dir", target])
        leftovers = [n for n in os.listdir(work) if n.startswith("refused")]
        check(code != 0 and "not an etcd snapshot" in err and not leftovers,
              "bbolt file without etcd's buckets refused: %r, nothing written" % err.strip())
        log("took %.1fs" % (time.monotonic() - started))
    finally:
        for m in members:
            m.stop()
        if failures:
            log("work directory kept: " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        log("%d check(s) failed" % len(failures))
        return 1
    log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
