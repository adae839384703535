import NIOCore
import NIOHTTP2
import NIOPosix

/// A listening gRPC server: one `NIOHTTP2Handler` + one `GRPCConnectionHandler` per TCP connection
/// (and an ``HTTP2RawFrameWriter`` before them, for the graceful drain's first GOAWAY).
///
/// As etcd's client port, it also answers HTTP/1.x on the same port when
/// `configuration.httpEndpoints` is set: each connection's first bytes choose the protocol
/// (`ProtocolSniffingHandler`), and the gRPC pipeline is then the same as without sniffing.
public final class GRPCServer: ListeningServer {
    public let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// PING, SETTINGS and other control frames accepted from a client per 30 seconds.
    static let maxControlFramesPerWindow = 300_000

    /// Binds and starts serving `router` on `host:port`.
    public static func start(
        host: String, port: Int, group: any EventLoopGroup, router: GRPCRouter,
        configuration: GRPCServerConfiguration = .init()
    ) async throws -> GRPCServer {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = configuration.http2Settings
        // grpc-go clients (etcdctl, clientv3) send a PING with each burst of DATA they read, to
        // estimate the bandwidth-delay product: a 300 MB Snapshot stream brings thousands of
        // them within seconds. NIO's default DoS limit (200 control frames per 30 s) answered
        // that with GOAWAY ENHANCE_YOUR_CALM; this limit still stops a flood of them.
        connection.controlFrameRateLimit.maximumCount = Self.maxControlFramesPerWindow
        connection.controlFrameRateLimit.windowLength = .seconds(30)
        let connectionConfiguration = connection
        let channel = try await bindListener(host: host, port: port, group: group) { channel in
            let sniffer = ProtocolSniffingHandler(
                endpoints: configuration.httpEndpoints, timeout: configuration.protocolDetectionTimeout,
                http1IdleTimeout: configuration.http1IdleTimeout
            ) { channel in
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(HTTP2RawFrameWriter())
                try sync.addHandler(NIOHTTP2Handler(mode: .server, connectionConfiguration: connectionConfiguration))
                try sync.addHandler(GRPCConnectionHandler(router: router, configuration: configuration))
            }
            try channel.pipeline.syncOperations.addHandler(sniffer)
            configuration.onConnection?(channel)
        }
        return GRPCServer(channel: channel)
    }
}
