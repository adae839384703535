#!/usr/bin/env python3
"""Cairn compatibility runner: drives an etcdctl-compatible client against a
fresh single-member server and records (and compares) what it prints.

  run.py run     --server etcd --client etcdctl [--out T.txt] [--raw T.json]
  run.py compare --a-server etcd --a-client etcdctl --b-server PATH/cairn [--b-client etcdctl]
  run.py compare --a-raw A.json --b-server etcd       (a saved raw transcript as one side)
  run.py normalize RAW.json                            (print a raw transcript, normalized)

Each side is a server command (shlex-split; etcd's flags are appended) and a
client command. Exit status of compare: 0 equal, 1 different, 2 a run failed.
See README.md for the script syntax.
"""

import argparse
import difflib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from normalize import Normalizer  # noqa: E402

DEFAULT_SCRIPT = os.path.join(HERE, "script.txt")
STEP_TIMEOUT = 20.0        # seconds for one foreground step
STOP_DEADLINE = 10.0       # seconds a background step may take to show its stop text
READY_DEADLINE = 60.0      # seconds for the server to report healthy
KILL_DEADLINE = 10.0       # seconds between SIGTERM and SIGKILL for the server
MEMBER_NAME = "compat"


def log(msg):
    print("compat: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the script

class Step:
    def __init__(self, kind, name, args=None, stdin=None, lineno=0, **extra):
        self.kind, self.name, self.args, self.stdin, self.lineno = kind, name, args, stdin, lineno
        self.extra = extra


def parse_script(path):
    """Returns the list of Steps. Syntax (one per line, '#' comments):
      NAME: ARGS...              run the client with ARGS (shlex-split)
      NAME: ARGS... <<EOF        same, with the following lines up to EOF as stdin
                                 (a line '@repeat N TEXT' inside expands to N lines,
                                 '{i}' in TEXT counting from 0)
      NAME &: ARGS...            start the client in the background
      @stop NAME until TEXT      wait (<= 10 s) until NAME's stdout holds TEXT and ends with a
                                 newline (choose TEXT on the last line expected), then SIGTERM it
                                 and record it (TEXT is shlex-split then joined by spaces)
      @capture VAR NAME REGEX [dec2hex]  VAR := group 1 of REGEX in NAME's stdout; ${VAR} in
                                 later ARGS and stdin is replaced by it
    """
    steps, names = [], set()
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        raw = lines[i]
        lineno = i + 1
        i += 1
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            words = shlex.split(line)
            if words[0] == "@stop" and len(words) >= 4 and words[2] == "until":
                steps.append(Step("stop", words[1], lineno=lineno, until=" ".join(words[3:])))
            elif words[0] == "@capture" and len(words) in (4, 5):
                steps.append(Step("capture", words[2], lineno=lineno, var=words[1], regex=words[3],
                                  transform=words[4] if len(words) == 5 else None))
            else:
                raise SystemExit("%s:%d: bad directive: %s" % (path, lineno, line))
            continue
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*(&?):\s*(.*)$", line)
        if not m:
            raise SystemExit("%s:%d: expected 'NAME: ARGS': %s" % (path, lineno, line))
        name, background, rest = m.group(1), m.group(2) == "&", m.group(3)
        if name in names:
            raise SystemExit("%s:%d: duplicate step name %s" % (path, lineno, name))
        names.add(name)
        stdin = None
        hm = re.search(r"\s*<<(\w+)$", rest)
        if hm:
            rest, marker = rest[:hm.start()], hm.group(1)
            body = []
            while i < len(lines) and lines[i].strip() != marker:
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise SystemExit("%s:%d: no %s line" % (path, lineno, marker))
            i += 1
            expanded = []
            for b in body:
                rm = re.match(r"^@repeat (\d+) (.*)$", b)
                if rm:
                    expanded += [rm.group(2).replace("{i}", str(k)) for k in range(int(rm.group(1)))]
                else:
                    expanded.append(b)
            stdin = "\n".join(expanded) + "\n"
            shown = "\n".join(body) + "\n"
        steps.append(Step("bg" if background else "run", name, args=shlex.split(rest),
                          stdin=stdin, lineno=lineno, stdin_shown=shown if hm else None))
    return steps


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    return env


def stop_group(proc, deadline):
    """SIGTERM the process group of proc, SIGKILL it after deadline seconds."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        log("pid %d did not stop after SIGTERM within %.0fs; SIGKILL" % (proc.pid, deadline))
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.wait()


def exit_text(code, timed_out=False):
    if timed_out:
        return "timeout (killed)"
    if code < 0:
        return "signal %s" % signal.Signals(-code).name
    return str(code)


class Server:
    def __init__(self, command, workdir):
        self.command = shlex.split(command)
        self.workdir = workdir
        self.proc = None

    def start(self, health_client):
        for attempt in range(3):
            self.client_port, self.peer_port = free_port(), free_port()
            if self.client_port == self.peer_port:
                continue
            self.client_url = "http://127.0.0.1:%d" % self.client_port
            self.peer_url = "http://127.0.0.1:%d" % self.peer_port
            self.data_dir = os.path.join(self.workdir, "data-%d" % attempt)
            self.log_path = os.path.join(self.workdir, "server-%d.log" % attempt)
            argv = self.command + [
                "--name", MEMBER_NAME,
                "--data-dir", self.data_dir,
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", "%s=%s" % (MEMBER_NAME, self.peer_url),
            ]
            log("starting: " + " ".join(shlex.quote(a) for a in argv))
            with open(self.log_path, "wb") as logf:
                self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
            if self.wait_ready(health_client):
                return
            self.stop()
            tail = self.log_tail()
            if "address already in use" not in tail:
                raise RuntimeError(self.not_ready + " (server log tail above)")
            log("port collision; retrying with new ports")
        raise RuntimeError("server could not start (ports in use)")

    def wait_ready(self, health_client):
        deadline = time.monotonic() + READY_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.not_ready = "server exited with %s before it was ready" % exit_text(self.proc.returncode)
                return False
            try:
                r = subprocess.run(health_client + ["--endpoints=" + self.client_url,
                                                    "--dial-timeout=1s", "--command-timeout=2s",
                                                    "endpoint", "health"],
                                   env=client_env(), capture_output=True, timeout=5)
                if r.returncode == 0:
                    return True
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.2)
        self.not_ready = "server did not become healthy within %.0fs" % READY_DEADLINE
        return False

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            code = stop_group(self.proc, KILL_DEADLINE)
            self.proc = None
            return code


# ---------------------------------------------------------------- one run

def substitute(text, variables):
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), "<unset:%s>" % m.group(1)), text)


def decode(data):
    return data.decode("utf-8", "backslashreplace")


def run_script(steps, client, endpoint, workdir):
    """Runs the steps; returns the list of recorded step results (dicts)."""
    variables, records, background, by_name = {}, [], {}, {}
    env = client_env()
    try:
        for step in steps:
            if step.kind in ("run", "bg"):
                args = [substitute(a, variables) for a in step.args]
                stdin = substitute(step.stdin, variables) if step.stdin is not None else None
                argv = client + ["--endpoints=" + endpoint] + args
                if step.kind == "run":
                    rec = run_foreground(step, argv, stdin, env)
                    records.append(rec)
                    by_name[step.name] = rec
                else:
                    out_path = os.path.join(workdir, "bg-%s.out" % step.name)
                    err_path = os.path.join(workdir, "bg-%s.err" % step.name)
                    with open(out_path, "wb") as o, open(err_path, "wb") as e:
                        proc = subprocess.Popen(argv, stdout=o, stderr=e, env=env,
                                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                                start_new_session=True)
                    if stdin is not None:
                        proc.stdin.write(stdin.encode())
                        proc.stdin.close()
                    background[step.name] = (step, proc, out_path, err_path)
            elif step.kind == "stop":
                bstep, proc, out_path, err_path = background.pop(step.name)
                deadline = time.monotonic() + STOP_DEADLINE
                seen = False
                while time.monotonic() < deadline:
                    with open(out_path, "rb") as f:
                        data = f.read()
                    # the text, and the line it is on, complete
                    if step.extra["until"].encode() in data and data.endswith(b"\n"):
                        seen = True
                        break
                    if proc.poll() is not None:
                        break
                    time.sleep(0.05)
                if seen:
                    time.sleep(0.2)  # let anything printed in the same burst arrive
                code = stop_group(proc, 5.0)
                with open(out_path, "rb") as f:
                    out = decode(f.read())
                with open(err_path, "rb") as f:
                    err = decode(f.read())
                rec = record(bstep, out, err, exit_text(code))
                rec["stop"] = "saw %r" % step.extra["until"] if seen else "did NOT see %r within %.0fs" % (
                    step.extra["until"], STOP_DEADLINE)
                records.append(rec)
                by_name[bstep.name] = rec
            elif step.kind == "capture":
                src = by_name.get(step.name)
                m = re.search(step.extra["regex"], src["stdout"]) if src else None
                if m:
                    value = m.group(1)
                    if step.extra["transform"] == "dec2hex":
                        value = "%x" % int(value)
                    variables[step.extra["var"]] = value
                else:
                    variables[step.extra["var"]] = "<no-match:%s>" % step.extra["var"]
    finally:
        for bstep, proc, _, _ in background.values():
            stop_group(proc, 5.0)
    return records


def run_foreground(step, argv, stdin, env):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(stdin.encode() if stdin is not None else None, timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_group(proc, 2.0)
        out, err = proc.communicate()
    return record(step, decode(out), decode(err), exit_text(proc.returncode, timed_out))


def record(step, out, err, code):
    return {"name": step.name, "args": step.args, "stdin": step.extra.get("stdin_shown"),
            "background": step.kind == "bg", "stdout": out, "stderr": err, "exit": code}


def run_side(server_cmd, client_cmd, script, preload=(), keep=False):
    """Starts a fresh server, runs the script, stops the server. Returns the raw transcript."""
    workdir = tempfile.mkdtemp(prefix="cairn-compat-")
    server = Server(server_cmd, workdir)
    health_client = shlex.split(os.environ.get("COMPAT_HEALTH_CLIENT", "etcdctl"))
    client = shlex.split(client_cmd)
    try:
        server.start(health_client)
        for kv in preload:
            k, _, v = kv.partition("=")
            subprocess.run(health_client + ["--endpoints=" + server.client_url, "put", k, v],
                           env=client_env(), check=True, capture_output=True, timeout=10)
        steps = parse_script(script)
        t0 = time.monotonic()
        records = run_script(steps, client, server.client_url, workdir)
        log("%d steps in %.1fs" % (len(records), time.monotonic() - t0))
        alive = server.proc.poll() is None
        code = server.stop()
        return {
            "server": server_cmd, "client": client_cmd, "script": os.path.abspath(script),
            "preload": list(preload),
            "client_url": server.client_url, "peer_url": server.peer_url, "data_dir": server.data_dir,
            "server_alive_at_end": alive, "server_exit": exit_text(code) if code is not None else None,
            "server_log_tail": server.log_tail(300),
            "steps": records,
        }
    except Exception:
        log("server log tail:\n" + server.log_tail())
        raise
    finally:
        server.stop()
        if keep:
            log("kept " + workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- transcripts

def literal_ids(records):
    """Hex IDs spelled out in the script's arguments (lease IDs not captured from output)."""
    ids = set()
    for rec in records:
        for a in rec["args"]:
            a = a.split("=", 1)[1] if a.startswith("--lease=") else a
            if re.fullmatch(r"[0-9a-f]{4,16}", a) and re.search(r"[a-f]", a):
                ids.add(int(a, 16))
    return ids


def render(raw, normalized=True):
    """The transcript as text, normalized unless told otherwise."""
    exact = {}
    if normalized:
        for url, ph in ((raw["client_url"], "<CLIENT_URL>"), (raw["peer_url"], "<PEER_URL>")):
            exact[url] = ph
            exact[url.split("://", 1)[1]] = ph.replace("URL", "ADDR")
        exact[raw["data_dir"]] = "<DATA_DIR>"
    norm = Normalizer(exact, literal_ids(raw["steps"]))
    out = []
    for rec in raw["steps"]:
        n = (lambda text: norm.normalize(rec["args"], text)) if normalized else (lambda text: text)
        out.append("=== %s%s" % (rec["name"], " (background)" if rec["background"] else ""))
        out.append("$ ctl " + " ".join(shlex.quote(a) for a in rec["args"]))
        if rec.get("stdin") is not None:
            out.append("--- stdin")
            out.append(rec["stdin"].rstrip("\n"))
        if rec.get("stop"):
            out.append("--- stopped after it " + rec["stop"])
        for stream in ("stdout", "stderr"):
            text = rec[stream]
            out.append("--- %s%s" % (stream, "" if text.endswith("\n") or not text else " (no final newline)"))
            if text:
                out.append(n(text[:-1] if text.endswith("\n") else text))
        out.append("--- exit " + rec["exit"])
    out.append("=== server alive at end: %s" % raw["server_alive_at_end"])
    return "\n".join(out) + "\n"


def side_args(p, prefix):
    """Options of one side; prefix "" (run) or "a_"/"b_" (compare: --a-server, ...)."""
    flag = "--" + prefix.replace("_", "-")
    p.add_argument(flag + "server", dest=prefix + "server", default="etcd",
                   help="server command, shlex-split, etcd's flags appended (default etcd)")
    p.add_argument(flag + "client", dest=prefix + "client", default="etcdctl",
                   help="client command (default etcdctl)")
    p.add_argument(flag + "preload", dest=prefix + "preload", action="append", default=[],
                   metavar="KEY=VALUE", help="put this key (with etcdctl) before the script runs")
    p.add_argument(flag + "raw", dest=prefix + "raw",
                   help="use this saved raw transcript instead of a live run" if prefix
                   else "also write the raw transcript (JSON) here")


def get_side(ns, prefix, script, keep):
    raw_path = getattr(ns, prefix + "raw")
    if raw_path and prefix:
        with open(raw_path, encoding="utf-8") as f:
            return json.load(f)
    return run_side(getattr(ns, prefix + "server"), getattr(ns, prefix + "client"), script,
                    getattr(ns, prefix + "preload"), keep)


def main():
    global READY_DEADLINE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for mode in ("run", "compare"):
        p = sub.add_parser(mode)
        p.add_argument("--script", default=DEFAULT_SCRIPT)
        p.add_argument("--keep", action="store_true", help="keep the temp dirs (data dir, logs)")
        p.add_argument("--ready-timeout", type=float, default=READY_DEADLINE,
                       help="seconds to wait for the server's health (default %(default)s)")
        p.add_argument("--out-dir", help="write transcripts (raw JSON and normalized text) here")
        if mode == "run":
            side_args(p, "")
            p.add_argument("--out", help="write the normalized transcript here (default stdout)")
            p.add_argument("--unnormalized", action="store_true")
        else:
            side_args(p, "a_")
            side_args(p, "b_")
            p.add_argument("--a-name", default="a")
            p.add_argument("--b-name", default="b")
    p = sub.add_parser("normalize")
    p.add_argument("raw")
    ns = ap.parse_args()
    if hasattr(ns, "ready_timeout"):
        READY_DEADLINE = ns.ready_timeout

    if ns.mode == "normalize":
        with open(ns.raw, encoding="utf-8") as f:
            sys.stdout.write(render(json.load(f)))
        return 0

    if ns.mode == "run":
        try:
            raw = run_side(ns.server, ns.client, ns.script, ns.preload, ns.keep)
        except Exception as e:
            log("run failed: %s" % e)
            return 2
        if ns.raw:
            with open(ns.raw, "w", encoding="utf-8") as f:
                json.dump(raw, f, indent=1)
        text = render(raw, normalized=not ns.unnormalized)
        if ns.out:
            with open(ns.out, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return 0

    sides = []
    for prefix, name in (("a_", ns.a_name), ("b_", ns.b_name)):
        try:
            raw = get_side(ns, prefix, ns.script, ns.keep)
        except Exception as e:  # a side that cannot run is a failure, not a difference
            log("%s: run failed: %s" % (name, e))
            return 2
        sides.append((name, raw, render(raw)))
    if ns.out_dir:
        os.makedirs(ns.out_dir, exist_ok=True)
        for name, raw, text in sides:
            with open(os.path.join(ns.out_dir, name + ".raw.json"), "w", encoding="utf-8") as f:
                json.dump(raw, f, indent=1)
            with open(os.path.join(ns.out_dir, name + ".txt"), "w", encoding="utf-8") as f:
                f.write(text)
            with open(os.path.join(ns.out_dir, name + ".server.log"), "w", encoding="utf-8") as f:
                f.write(raw.get("server_log_tail", "") + "\n")
    (an, _, at), (bn, _, bt) = sides
    diff = list(difflib.unified_diff(at.splitlines(True), bt.splitlines(True), an, bn, n=4))
    if diff:
        sys.stdout.writelines(diff)
        n_steps = len({l for l in diff if l.startswith("@@")})
        log("DIFFERENT: %s vs %s (%d hunks)" % (an, bn, n_steps))
        return 1
    log("equal after normalization: %s vs %s (%d steps)" % (an, bn, len(sides[0][1]["steps"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
