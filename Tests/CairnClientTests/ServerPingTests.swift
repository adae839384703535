// The client against a server that PINGs as grpc-go does (bandwidth-delay estimation): a PING
// ahead of every response. Before the client raised swift-nio-http2's control-frame limit
// (200 per 30 s), the connection died with ExcessiveControlFrames after ~200 calls.
import CairnClient
import CairnGRPC
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import Testing

/// Answers every gRPC call on the connection with a PING, then an empty OK response.
private final class PingingServerHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame
    private var pings: UInt64 = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        let endStream: Bool
        switch frame.payload {
        case .headers(let h): endStream = h.endStream
        case .data(let d):
            endStream = d.endStream
            if d.data.readableBytes > 0 {
                context.write(
                    self.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: d.data.readableBytes))),
                    promise: nil)
            }
        default: return
        }
        guard endStream else { return }
        self.pings += 1
        let id = frame.streamID
        context.write(self.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: self.pings), ack: false))), promise: nil)
        let headers: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
        context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers)))), promise: nil)
        let message = ByteBuffer(bytes: [0, 0, 0, 0, 0])  // one empty message
        context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(message))))), promise: nil)
        let trailers: HPACKHeaders = ["grpc-status": "0"]
        context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: trailers, endStream: true)))), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
}

@Suite struct ServerPingTests {
    @Test func callsSurviveAPingPerResponse() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // The server receives the client's PING ACKs: its own control-frame limit must admit them.
                    var configuration = NIOHTTP2Handler.ConnectionConfiguration()
                    configuration.controlFrameRateLimit.maximumCount = 10_000
                    try channel.pipeline.syncOperations.addHandler(
                        NIOHTTP2Handler(mode: .server, connectionConfiguration: configuration))
                    try channel.pipeline.syncOperations.addHandler(PingingServerHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        var logger = Logger(label: "cairn.client.test")
        logger.logLevel = .critical
        let client = EtcdClient(configuration: .init(endpoints: [Endpoint(host: "127.0.0.1", port: port)]), group: group, logger: logger)
        let connection = try await client.connection()
        // 1,000 calls, 10 at a time: 1,000 PINGs, five times the old limit.
        var failures: [String] = []
        try await withThrowingTaskGroup(of: String?.self) { tasks in
            for worker in 0..<10 {
                tasks.addTask {
                    for _ in 0..<100 {
                        do {
                            _ = try await connection.unary(path: "/test.T/Call", request: ByteBuffer(), timeout: .seconds(10))
                        } catch {
                            return "worker \(worker): \(error)"
                        }
                    }
                    return nil
                }
            }
            for try await f in tasks { if let f { failures.append(f) } }
        }
        #expect(failures.isEmpty, "\(failures.first ?? "")")
        #expect(connection.isActive)
        await client.close()
        try await server.close()
        try await group.shutdownGracefully()
    }
}
