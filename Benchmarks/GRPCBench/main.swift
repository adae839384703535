// GRPCBench: server CPU per unary no-op request, N concurrent streams over one HTTP/2 connection.
//
// Usage: GRPCBench [requests=200000] [concurrency=32]
//        GRPCBench put HOST:PORT SERVER_PID [requests=100000] [concurrency=100] [connections=4]
// The `put` mode drives an etcd-API server (cairn or etcd) with etcd Put requests (8-byte
// distinct keys, 256-byte values) and reports the server process's CPU per request, read
// from /proc/SERVER_PID/stat, with the throughput.
// Server and client run on separate single-thread event loop groups; server CPU is read with
// getrusage(RUSAGE_THREAD) on the server's event-loop thread, so client cost is excluded.
import CairnGRPC
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Thread CPU time (user + system) of the calling thread in microseconds.
func threadCPUMicros() -> Int {
    var usage = rusage()
    #if canImport(Glibc)
    getrusage(__rusage_who_t(1), &usage)  // RUSAGE_THREAD (a _GNU_SOURCE macro Swift does not import)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    return usage.ru_utime.tv_sec * 1_000_000 + Int(usage.ru_utime.tv_usec)
        + usage.ru_stime.tv_sec * 1_000_000 + Int(usage.ru_stime.tv_usec)
}

/// Keeps `concurrency` unary calls in flight until `total` have completed.
final class LoadHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    let total: Int
    let concurrency: Int
    let done: EventLoopPromise<Void>
    var started = 0
    var completed = 0
    var nextID = 1
    var headers: HPACKHeaders = [
        ":method": "POST", ":scheme": "http", ":path": "/bench.B/Noop", ":authority": "localhost",
        "content-type": "application/grpc", "te": "trailers",
    ]
    var body = ByteBuffer(bytes: [0, 0, 0, 0, 16] + Array(repeating: 7, count: 16))
    /// Put mode: a new etcd PutRequest (distinct key) per call.
    var putKeyBase: UInt64?
    var failed = 0

    init(total: Int, concurrency: Int, done: EventLoopPromise<Void>, putPath: String? = nil, keyBase: UInt64 = 0) {
        self.total = total
        self.concurrency = concurrency
        self.done = done
        if let putPath {
            // Pseudo-headers must come first: rebuild rather than replace (which would append).
            self.headers = [
                ":method": "POST", ":scheme": "http", ":path": putPath, ":authority": "localhost",
                "content-type": "application/grpc", "te": "trailers",
            ]
            self.putKeyBase = keyBase
        }
    }

    /// A length-prefixed etcdserverpb.PutRequest{key: 8 bytes, value: 256 bytes}.
    func putBody(_ n: UInt64) -> ByteBuffer {
        var msg: [UInt8] = [0x0a, 8]
        withUnsafeBytes(of: n.bigEndian) { msg.append(contentsOf: $0) }
        msg += [0x12, 0x80, 0x02] + Array(repeating: 0x61, count: 256)
        var b = ByteBuffer(bytes: [0])
        b.writeInteger(UInt32(msg.count))
        b.writeBytes(msg)
        return b
    }

    func start(context: ChannelHandlerContext) {
        for _ in 0..<self.concurrency { self.startOne(context: context) }
        context.flush()
    }

    func startOne(context: ChannelHandlerContext) {
        guard self.started < self.total else { return }
        self.started += 1
        let id = HTTP2StreamID(self.nextID)
        self.nextID += 2
        context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: self.headers)))), promise: nil)
        let body = self.putKeyBase.map { self.putBody($0 &+ UInt64(self.started)) } ?? self.body
        context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body), endStream: true)))), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let h) where h.endStream:
            if h.headers.first(name: "grpc-status") != "0" { self.failed += 1 }
            self.completed += 1
            if self.completed == self.total { self.done.succeed() } else { self.startOne(context: context) }
        case .data(let d):
            if case .byteBuffer(let b) = d.data, b.readableBytes > 0 {
                context.write(self.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: b.readableBytes))), promise: nil)
            }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

let args = CommandLine.arguments
if args.count > 1 && args[1] == "put" {
    try await runPut(Array(args.dropFirst(2)))
    exit(0)
}
let total = args.count > 1 ? Int(args[1])! : 200_000
let concurrency = args.count > 2 ? Int(args[2])! : 32

let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
var router = GRPCRouter()
router.register(service: "bench.B", method: "Noop", .unary { request, context in context.eventLoop.makeSucceededFuture(request) })
let server = try await GRPCServer.start(host: "127.0.0.1", port: 0, group: serverGroup, router: router)
let serverLoop = serverGroup.next()

for (round, n) in [(0, min(total, 20_000)), (1, total)] {
    let channel = try await ClientBootstrap(group: clientGroup)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client))
                let done = channel.eventLoop.makePromise(of: Void.self)
                try channel.pipeline.syncOperations.addHandler(LoadHandler(total: n, concurrency: concurrency, done: done))
            }
        }
        .connect(host: "127.0.0.1", port: server.port!).get()
    let cpuBefore = try await serverLoop.submit { threadCPUMicros() }.get()
    let wallBefore = ContinuousClock.now
    let doneFuture = try await channel.eventLoop.submit {
        let handler = try channel.pipeline.syncOperations.handler(type: LoadHandler.self)
        let context = try channel.pipeline.syncOperations.context(handlerType: LoadHandler.self)
        handler.start(context: context)
        return handler.done.futureResult
    }.get()
    try await doneFuture.get()
    let wall = ContinuousClock.now - wallBefore
    let cpuAfter = try await serverLoop.submit { threadCPUMicros() }.get()
    try await channel.close().get()
    if round == 0 { continue }  // warm-up
    let secs = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
    let cpuPerReq = Double(cpuAfter - cpuBefore) / Double(n)
    let rounded = (cpuPerReq * 100).rounded() / 100
    print("requests=\(n) concurrency=\(concurrency) wall=\((secs * 100).rounded() / 100)s rate=\(Int(Double(n) / secs))/s serverCPU=\(rounded)µs/req")
}
try await server.close()
try await serverGroup.shutdownGracefully()
try await clientGroup.shutdownGracefully()

/// CPU seconds (user + system) the process `pid` has used, from /proc.
func processCPUSeconds(_ pid: Int32) -> Double {
    guard let f = fopen("/proc/\(pid)/stat", "r") else { return 0 }
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 4096)
    guard fgets(&buf, 4096, f) != nil else { return 0 }
    let line = String(cString: buf)
    guard let close = line.lastIndex(of: ")") else { return 0 }
    let fields = line[line.index(after: close)...].split(separator: " ")
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    guard fields.count > 13, let u = Double(fields[11]), let st = Double(fields[12]) else { return 0 }
    return (u + st) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

func runPut(_ a: [String]) async throws {
    guard a.count >= 2, let colon = a[0].lastIndex(of: ":"), let port = Int(a[0][a[0].index(after: colon)...]),
        let pid = Int32(a[1])
    else {
        print("usage: cairn-grpc-bench put HOST:PORT SERVER_PID [requests] [concurrency] [connections]")
        exit(2)
    }
    let host = String(a[0][..<colon])
    let total = a.count > 2 ? Int(a[2])! : 100_000
    let concurrency = a.count > 3 ? Int(a[3])! : 100
    let connections = a.count > 4 ? Int(a[4])! : 4
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let base = UInt64(ContinuousClock.now.hashValue & 0xffff) << 40
    for (round, n) in [(0, min(total, 10_000)), (1, total)] {
        var channels: [any Channel] = []
        var futures: [EventLoopFuture<Void>] = []
        let cpuBefore = processCPUSeconds(pid)
        let wallBefore = ContinuousClock.now
        for c in 0..<connections {
            let share = n / connections
            let ch = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client))
                        let done = channel.eventLoop.makePromise(of: Void.self)
                        try channel.pipeline.syncOperations.addHandler(
                            LoadHandler(
                                total: share, concurrency: concurrency / connections, done: done,
                                putPath: "/etcdserverpb.KV/Put", keyBase: base + UInt64(round) << 32 + UInt64(c) << 24))
                    }
                }
                .connect(host: host, port: port).get()
            channels.append(ch)
            futures.append(try await ch.eventLoop.submit {
                let handler = try ch.pipeline.syncOperations.handler(type: LoadHandler.self)
                let context = try ch.pipeline.syncOperations.context(handlerType: LoadHandler.self)
                handler.start(context: context)
                return handler.done.futureResult
            }.get())
        }
        for f in futures { try await f.get() }
        let wall = ContinuousClock.now - wallBefore
        let cpu = processCPUSeconds(pid) - cpuBefore
        var failed = 0
        for ch in channels {
            failed += try await ch.eventLoop.submit { try ch.pipeline.syncOperations.handler(type: LoadHandler.self).failed }.get()
            try await ch.close().get()
        }
        if round == 0 { continue }  // warm-up
        let secs = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        let done = n / connections * connections
        print(
            "put requests=\(done) failed=\(failed) clients=\(concurrency) connections=\(connections) "
                + "wall=\((secs * 100).rounded() / 100)s rate=\(Int(Double(done) / secs))/s "
                + "serverCPU=\((cpu / Double(done) * 1e6 * 10).rounded() / 10)µs/put")
    }
    try await group.shutdownGracefully()
}
