import NIOCore
import NIOHTTP2
import NIOPosix

/// A listening gRPC server: one `NIOHTTP2Handler` + one `GRPCConnectionHandler` per TCP connection.
public final class GRPCServer: Sendable {
    /// The listening socket channel.
    public let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// The bound port (useful when started on port 0).
    public var port: Int? { self.channel.localAddress?.port }

    /// Binds and starts serving `router` on `host:port`.
    public static func start(
        host: String, port: Int, group: any EventLoopGroup, router: GRPCRouter,
        configuration: GRPCServerConfiguration = .init()
    ) async throws -> GRPCServer {
        let settings = configuration.http2Settings
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOHTTP2Handler(mode: .server, initialSettings: settings))
                    try sync.addHandler(GRPCConnectionHandler(router: router, configuration: configuration))
                    configuration.onConnection?(channel)
                }
            }
            .bind(host: host, port: port).get()
        return GRPCServer(channel: channel)
    }

    /// Stops accepting connections (existing connections are not drained).
    public func close() async throws {
        try await self.channel.close()
    }
}
