import NIOCore
import NIOPosix

/// A listening gRPC server: one ``GRPCConnectionHandler`` (HTTP/2 and gRPC) per TCP connection.
///
/// As etcd's client port, it also answers HTTP/1.x on the same port when
/// `configuration.httpEndpoints` is set: each connection's first bytes choose the protocol
/// (`ProtocolSniffingHandler`), and the gRPC pipeline is then the same as without sniffing.
public final class GRPCServer: ListeningServer {
    public let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// Binds and starts serving `router` on `host:port`.
    public static func start(
        host: String, port: Int, group: any EventLoopGroup, router: GRPCRouter,
        configuration: GRPCServerConfiguration = .init()
    ) async throws -> GRPCServer {
        let channel = try await bindListener(host: host, port: port, group: group) { channel in
            let sniffer = ProtocolSniffingHandler(
                endpoints: configuration.httpEndpoints, timeout: configuration.protocolDetectionTimeout,
                http1IdleTimeout: configuration.http1IdleTimeout
            ) { channel in
                try channel.pipeline.syncOperations.addHandler(GRPCConnectionHandler(router: router, configuration: configuration))
            }
            try channel.pipeline.syncOperations.addHandler(sniffer)
            configuration.onConnection?(channel)
        }
        return GRPCServer(channel: channel)
    }
}
