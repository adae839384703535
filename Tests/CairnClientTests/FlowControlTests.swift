// The client's HTTP/2 against the project's own server: the server's stream limit and
// flow-control windows, in both directions.
import CairnClient
import CairnGRPC
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@Suite struct ClientFlowControlTests {
    static func start(
        _ configure: (inout GRPCServerConfiguration) -> Void = { _ in }
    ) async throws -> (GRPCServer, EtcdClient, MultiThreadedEventLoopGroup) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var router = GRPCRouter()
        router.register(service: "test.T", method: "Echo", .unary { req, ctx in ctx.eventLoop.makeSucceededFuture(req) })
        router.register(service: "test.T", method: "Slow", .unary { req, ctx in
            ctx.eventLoop.scheduleTask(in: .milliseconds(20)) { req }.futureResult
        })
        router.register(service: "test.T", method: "Slower", .unary { req, ctx in
            ctx.eventLoop.scheduleTask(in: .milliseconds(300)) { req }.futureResult
        })
        router.register(service: "test.T", method: "Bidi", .bidirectional { _, writer in EchoBidi(writer) })
        var config = GRPCServerConfiguration()
        configure(&config)
        let server = try await GRPCServer.start(host: "127.0.0.1", port: 0, group: group, router: router, configuration: config)
        var logger = Logger(label: "cairn.client.test")
        logger.logLevel = .critical
        let client = EtcdClient(configuration: .init(endpoints: [Endpoint(host: "127.0.0.1", port: server.port!)]), group: group, logger: logger)
        return (server, client, group)
    }

    /// 20 calls at once on one connection to a server that allows 2 streams: the client waits
    /// for room instead of opening streams the server must refuse.
    @Test func callsBeyondTheServersStreamLimitWait() async throws {
        let (server, client, group) = try await Self.start { $0.maxConcurrentStreams = 2 }
        let connection = try await client.connection()
        _ = try await connection.unary(path: "/test.T/Echo", request: ByteBuffer(string: "warm"), timeout: .seconds(5))  // SETTINGS seen
        var failures: [String] = []
        await withTaskGroup(of: String?.self) { tasks in
            for i in 0..<20 {
                tasks.addTask {
                    do {
                        let r = try await connection.unary(path: "/test.T/Slow", request: ByteBuffer(string: "\(i)"), timeout: .seconds(10))
                        return String(buffer: r) == "\(i)" ? nil : "\(i): got \(String(buffer: r))"
                    } catch {
                        return "\(i): \(error)"
                    }
                }
            }
            for await f in tasks { if let f { failures.append(f) } }
        }
        #expect(failures.isEmpty, "\(failures)")
        await client.close()
        try await server.close()
        try await group.shutdownGracefully()
    }

    /// A 5 MB request and its 5 MB echo: the request waits for the server's 64 KiB stream
    /// windows, the reply for the client's.
    @Test func messagesLargerThanEveryWindowGetThrough() async throws {
        let (server, client, group) = try await Self.start { $0.maxReceiveMessageBytes = 8 << 20 }
        let connection = try await client.connection()
        var big = ByteBuffer()
        for i in 0..<(5 << 20) { big.writeInteger(UInt8(truncatingIfNeeded: i &* 31)) }
        for _ in 0..<3 {
            let r = try await connection.unary(path: "/test.T/Echo", request: big, timeout: .seconds(30))
            #expect(r == big)
        }
        #expect(connection.isActive)
        await client.close()
        try await server.close()
        try await group.shutdownGracefully()
    }
}

/// Echoes each message; ends the call when the client ends its side.
private final class EchoBidi: GRPCBidiStreamHandler {
    let writer: GRPCStreamWriter
    init(_ writer: GRPCStreamWriter) { self.writer = writer }
    func receive(_ message: ByteBuffer) { self.writer.send(message) }
    func endOfInput() { self.writer.finish() }
    func cancelled() {}
}

/// The second reader's cases for the client.
@Suite struct ClientLifecycleTests {
    /// A streaming call queued behind the server's stream limit keeps the messages sent to it
    /// meanwhile (they failed with "stream closed" before), and sends them once it opens.
    @Test func aQueuedStreamingCallKeepsItsSends() async throws {
        let (server, client, group) = try await ClientFlowControlTests.start { $0.maxConcurrentStreams = 1 }
        let connection = try await client.connection()
        _ = try await connection.unary(path: "/test.T/Echo", request: ByteBuffer(string: "warm"), timeout: .seconds(5))
        let a = connection.openStream(path: "/test.T/Bidi", request: nil)
        try await a.send(ByteBuffer(string: "a1"))
        var aResponses = a.responses.makeAsyncIterator()
        #expect(try await aResponses.next().map { String(buffer: $0) } == "a1")
        let b = connection.openStream(path: "/test.T/Bidi", request: nil)
        let sending = Task {
            try await b.send(ByteBuffer(string: "b1"))
            try await b.closeSending()
        }
        try await Task.sleep(for: .milliseconds(50))
        try await a.closeSending()  // frees the only stream
        #expect(try await aResponses.next() == nil)
        try await sending.value
        var got: [String] = []
        for try await m in b.responses { got.append(String(buffer: m)) }
        #expect(got == ["b1"])
        await client.close()
        try await server.close()
        try await group.shutdownGracefully()
    }

    /// After the server's GOAWAY the connection reports itself unusable, and the client dials
    /// a new one for the next call.
    @Test func aGoAwayMakesTheClientDialAgain() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var router = GRPCRouter()
        router.register(service: "test.T", method: "Echo", .unary { req, ctx in ctx.eventLoop.makeSucceededFuture(req) })
        var config = GRPCServerConfiguration()
        let channels = ServerChannels()
        config.onConnection = { channels.add($0) }
        let server = try await GRPCServer.start(host: "127.0.0.1", port: 0, group: group, router: router, configuration: config)
        var logger = Logger(label: "cairn.client.test")
        logger.logLevel = .critical
        let client = EtcdClient(configuration: .init(endpoints: [Endpoint(host: "127.0.0.1", port: server.port!)]), group: group, logger: logger)
        let first = try await client.connection()
        _ = try await first.unary(path: "/test.T/Echo", request: ByteBuffer(string: "1"), timeout: .seconds(5))
        let serverSide = try #require(channels.all.first)
        let drained = serverSide.eventLoop.makePromise(of: Void.self)
        serverSide.pipeline.fireUserInboundEventTriggered(GRPCDrainRequest(promise: drained))
        try await drained.futureResult.get()
        for _ in 0..<200 where first.isActive { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!first.isActive, "a connection that got GOAWAY takes no new calls")
        let second = try await client.connection()
        #expect(second !== first)
        let r = try await second.unary(path: "/test.T/Echo", request: ByteBuffer(string: "2"), timeout: .seconds(5))
        #expect(String(buffer: r) == "2")
        await client.close()
        try await server.close()
        try await group.shutdownGracefully()
    }

    /// Calls the client reset still run on the server, which counts them against its stream
    /// limit and refuses new streams (REFUSED_STREAM, unprocessed): the client sends those
    /// again after a short wait instead of failing them.
    @Test func refusedStreamsAreSentAgain() async throws {
        let (server, client, group) = try await ClientFlowControlTests.start { $0.maxConcurrentStreams = 2 }
        let connection = try await client.connection()
        _ = try await connection.unary(path: "/test.T/Echo", request: ByteBuffer(string: "warm"), timeout: .seconds(5))
        for i in 0..<2 {
            await #expect(throws: GRPCStatus.self) {
                _ = try await connection.unary(path: "/test.T/Slower", request: ByteBuffer(string: "\(i)"), timeout: .milliseconds(30))
            }
        }
        // Both handlers still run (300 ms): the server refuses the next two until they end.
        for i in 0..<2 {
            let r = try await connection.unary(path: "/test.T/Echo", request: ByteBuffer(string: "after\(i)"), timeout: .seconds(5))
            #expect(String(buffer: r) == "after\(i)")
        }
        await client.close()
        try await server.close()
        try await group.shutdownGracefully()
    }
}

final class ServerChannels: Sendable {
    private let channels = Mutex<[any Channel]>([])
    func add(_ c: any Channel) { channels.withLock { $0.append(c) } }
    var all: [any Channel] { channels.withLock { $0 } }
}
