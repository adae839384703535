// GRPCBench: server CPU per unary no-op request, N concurrent streams over one HTTP/2 connection.
//
// Usage: GRPCBench [requests=200000] [concurrency=32]
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
    let headers: HPACKHeaders = [
        ":method": "POST", ":scheme": "http", ":path": "/bench.B/Noop", ":authority": "localhost",
        "content-type": "application/grpc", "te": "trailers",
    ]
    var body = ByteBuffer(bytes: [0, 0, 0, 0, 16] + Array(repeating: 7, count: 16))

    init(total: Int, concurrency: Int, done: EventLoopPromise<Void>) {
        self.total = total
        self.concurrency = concurrency
        self.done = done
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
        context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(self.body), endStream: true)))), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let h) where h.endStream:
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
