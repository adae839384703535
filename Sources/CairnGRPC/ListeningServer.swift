import NIOCore
import NIOPosix

/// A bound listening socket (``GRPCServer``, ``HTTPServer``).
public protocol ListeningServer: Sendable {
    /// The listening socket channel.
    var channel: any Channel { get }
}

extension ListeningServer {
    /// The bound port (useful when started on port 0).
    public var port: Int? { self.channel.localAddress?.port }

    /// Stops accepting connections (existing connections are not drained).
    public func close() async throws {
        try await self.channel.close()
    }
}

/// Binds `host:port` with the socket options every Cairn listener uses; `initialize` builds each
/// accepted connection's pipeline on its event loop.
func bindListener(
    host: String, port: Int, group: any EventLoopGroup,
    initialize: @escaping @Sendable (any Channel) throws -> Void
) async throws -> any Channel {
    try await ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 256)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelOption(.maxMessagesPerRead, value: 16)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try initialize(channel) }
        }
        .bind(host: host, port: port).get()
}
