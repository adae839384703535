import CairnGRPC
import GRPCTestClient
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import Synchronization
import Testing

/// Bidi handler that echoes every message and finishes when the client half-closes.
final class EchoBidi: GRPCBidiStreamHandler {
    let writer: GRPCStreamWriter
    let box: Box
    init(writer: GRPCStreamWriter, box: Box) {
        self.writer = writer
        self.box = box
    }
    func receive(_ message: ByteBuffer) { self.writer.send(message) }
    func endOfInput() { self.writer.finish() }
    func cancelled() { self.box.cancellations.add(1, ordering: .relaxed) }
}

/// Shared, thread-safe test observations.
final class Box: Sendable {
    let channels = Mutex<[any Channel]>([])
    let cancellations = Atomic<Int>(0)
    /// Calls to test.Echo/Held wait here until the test answers them.
    let held = Mutex<[EventLoopPromise<ByteBuffer>]>([])
}

/// A running test server with echo methods, plus captured connection channels.
final class TestServer: Sendable {
    let group: MultiThreadedEventLoopGroup
    let server: GRPCServer
    let box: Box
    var port: Int { self.server.port! }

    private init(group: MultiThreadedEventLoopGroup, server: GRPCServer, box: Box) {
        self.group = group
        self.server = server
        self.box = box
    }

    static func start(
        maxReceiveMessageBytes: Int? = nil, httpEndpoints: HTTPEndpoints? = nil,
        protocolDetectionTimeout: TimeAmount? = nil
    ) async throws -> TestServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let box = Box()
        var router = GRPCRouter()
        router.register(service: "test.Echo", method: "Unary", .unary { req, ctx in ctx.eventLoop.makeSucceededFuture(req) })
        router.register(service: "test.Echo", method: "UnaryAsync", .unaryAsync { req, _ in
            try await Task.sleep(for: .milliseconds(1))
            return req
        })
        router.register(service: "test.Echo", method: "Fail", .unary { _, ctx in
            ctx.eventLoop.makeFailedFuture(GRPCStatus(.notFound, "no such key: ключ%"))
        })
        router.register(service: "test.Echo", method: "Never", .unary { _, ctx in
            ctx.eventLoop.makePromise(of: ByteBuffer.self).futureResult  // never completes
        })
        router.register(service: "test.Echo", method: "Held", .unary { _, ctx in
            let p = ctx.eventLoop.makePromise(of: ByteBuffer.self)
            box.held.withLock { $0.append(p) }
            return p.futureResult
        })
        router.register(service: "test.Echo", method: "Bidi", .bidirectional { _, writer in EchoBidi(writer: writer, box: box) })
        var config = GRPCServerConfiguration()
        if let max = maxReceiveMessageBytes { config.maxReceiveMessageBytes = max }
        config.httpEndpoints = httpEndpoints
        if let timeout = protocolDetectionTimeout { config.protocolDetectionTimeout = timeout }
        config.onConnection = { channel in box.channels.withLock { $0.append(channel) } }
        let server = try await GRPCServer.start(host: "127.0.0.1", port: 0, group: group, router: router, configuration: config)
        return TestServer(group: group, server: server, box: box)
    }

    func client() async throws -> TestClient {
        try await TestClient.connect(port: self.port, group: self.group)
    }

    /// Active call count of the `index`th accepted connection (read on its event loop).
    func activeCalls(connection index: Int = 0) async throws -> Int {
        let channel = self.box.channels.withLock { $0[index] }
        return try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: GRPCConnectionHandler.self).activeCallCount
        }.get()
    }

    /// Checks that a new gRPC connection still gets unary echoes.
    func expectEchoWorks(_ messages: [String] = ["ping"]) async throws {
        let client = try await self.client()
        for message in messages {
            let r = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed([message]))
            #expect(try r.messages() == [message])
        }
        try await client.channel.close()
    }

    func stop() async throws {
        try await self.server.close()
        try await self.group.shutdownGracefully()
    }
}
