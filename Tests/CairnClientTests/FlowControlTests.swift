// The client's HTTP/2 against the project's own server: the server's stream limit and
// flow-control windows, in both directions.
import CairnClient
import CairnGRPC
import Logging
import NIOCore
import NIOPosix
import Testing

@Suite struct ClientFlowControlTests {
    static func start(_ configure: (inout GRPCServerConfiguration) -> Void) async throws -> (GRPCServer, EtcdClient, MultiThreadedEventLoopGroup) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var router = GRPCRouter()
        router.register(service: "test.T", method: "Echo", .unary { req, ctx in ctx.eventLoop.makeSucceededFuture(req) })
        router.register(service: "test.T", method: "Slow", .unary { req, ctx in
            ctx.eventLoop.scheduleTask(in: .milliseconds(20)) { req }.futureResult
        })
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
