#!/usr/bin/env python3
"""etcd's API through gRPC C-core (Python grpcio) against cairn and against etcd 3.4.

Cairn serves HTTP/2 with its own code (CairnHTTP2); this drives it with another
implementation than the ones in the Swift tests (NIOHTTP2) and the compat suite (grpc-go):
C-core Huffman-codes its headers and churns HPACK's dynamic table. The same checks run
against a real etcd, and both must give the same answers (sizes differ only by the ids in
response headers).

    python3 Tests/clients/grpcio_check.py CAIRN_BIN [ETCD_BIN]

grpcio is installed into .build/pydeps when it is not importable.
"""
import importlib, os, shutil, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def import_grpc():
    try:
        import grpc  # noqa: F401
    except ImportError:
        target = os.path.join(ROOT, ".build", "pydeps")
        sys.path.insert(0, target)
        try:
            import grpc  # noqa: F401
        except ImportError:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", target, "grpcio"],
                check=True)
            importlib.invalidate_caches()
    import grpc
    return grpc


grpc = import_grpc()


def log(msg):
    print("grpcio-check: " + msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(number, value):
    return bytes([number << 3 | 2]) + varint(len(value)) + value


class Server:
    def __init__(self, binary, kind):
        self.dir = tempfile.mkdtemp(prefix="cairn-grpcio-")
        self.port, peer = free_port(), free_port()
        client_url, peer_url = "http://127.0.0.1:%d" % self.port, "http://127.0.0.1:%d" % peer
        args = [binary, "--name", "g", "--data-dir", os.path.join(self.dir, "data"), "--listen-client-urls", client_url,
                "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
                "--initial-advertise-peer-urls", peer_url, "--initial-cluster", "g=" + peer_url]
        args += ["--log-level", "warn" if kind == "cairn" else "error"]
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def checks(target):
    """The answers a client sees; returns them as text lines for the comparison."""
    out = []
    ident = lambda b: b
    with grpc.insecure_channel(target) as ch:
        put = ch.unary_unary("/etcdserverpb.KV/Put", request_serializer=ident, response_deserializer=ident)
        rng = ch.unary_unary("/etcdserverpb.KV/Range", request_serializer=ident, response_deserializer=ident)
        # Many calls with changing metadata: C-core indexes each new header field in HPACK's
        # dynamic table, evicting old ones.
        for i in range(2000):
            put(field(1, b"py/%d" % i) + field(2, b"v" * (i % 300)), metadata=[("x-trace", "id-%d" % i)], timeout=10)
        out.append("2000 puts with changing metadata: ok")
        big = bytes(range(256)) * 4096  # 1 MiB, larger than every default window
        put(field(1, b"big") + field(2, big), timeout=20)
        resp = rng(field(1, b"big"), timeout=20)
        out.append("1 MiB value back: %s, response %d bytes (+/- ids)" % (big in resp, len(resp) // 100 * 100))
        resp = rng(field(1, b"py/") + field(2, b"py0"), timeout=20)
        out.append("prefix range of 2000 keys: response %d kB" % (len(resp) // 1000))
        watch = ch.stream_stream("/etcdserverpb.Watch/Watch", request_serializer=ident, response_deserializer=ident)

        def requests():
            yield field(1, field(1, b"w"))  # WatchRequest{create_request{key: "w"}}
            time.sleep(0.5)
            put(field(1, b"w") + field(2, b"event-value"), timeout=10)
            time.sleep(2)

        seen = False
        try:
            for m in watch(requests(), timeout=10):
                if b"event-value" in m:
                    seen = True
                    break
        except grpc.RpcError as e:
            out.append("watch ended early: %s" % e.code())
        out.append("watch sees the put: %s" % seen)
        for path, body in [("/etcdserverpb.KV/Nope", b""), ("/etcdserverpb.KV/Put", field(1, b"k") + field(2, b"x" * (2 << 20))),
                           ("/etcdserverpb.KV/Put", b"\xff\xff\xff")]:
            try:
                ch.unary_unary(path, request_serializer=ident, response_deserializer=ident)(body, timeout=10)
                out.append("%s %d bytes: no error" % (path, len(body)))
            except grpc.RpcError as e:
                out.append("%s %d bytes: %s %s" % (path, len(body), e.code(), e.details()))
    return out


def main():
    cairn = sys.argv[1]
    etcd = sys.argv[2] if len(sys.argv) > 2 else shutil.which("etcd")
    results = {}
    for kind, binary in [("cairn", cairn), ("etcd", etcd)]:
        if binary is None:
            log("etcd not found: checking cairn alone")
            continue
        server = Server(binary, kind)
        try:
            results[kind] = checks("127.0.0.1:%d" % server.port)
        finally:
            server.stop()
        for line in results[kind]:
            log("%s: %s" % (kind, line))
    failed = [l for l in results["cairn"] if "no error" in l or ": False" in l or "ended early" in l]
    if "etcd" in results and results["etcd"] != results["cairn"]:
        failed.append("cairn and etcd answered differently")
    if failed:
        for f in failed:
            log("FAILED: " + f)
        sys.exit(1)
    log("cairn and etcd give the same answers to grpcio")


if __name__ == "__main__":
    main()
