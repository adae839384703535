import NIOCore
import NIOHTTP1

/// An HTTP/1.x-only listener serving ``HTTPEndpoints`` (etcd's `--listen-metrics-urls`).
public final class HTTPServer: ListeningServer {
    public let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// Binds `host:port` and serves `endpoints`; connections idle for `idleTimeout` are closed.
    public static func start(
        host: String, port: Int, group: any EventLoopGroup, endpoints: HTTPEndpoints,
        idleTimeout: TimeAmount = .seconds(60)
    ) async throws -> HTTPServer {
        let channel = try await bindListener(host: host, port: port, group: group) { channel in
            let sync = channel.pipeline.syncOperations
            try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
            try sync.addHandlers([IdleStateHandler(readTimeout: idleTimeout), HTTP1EndpointHandler(endpoints: endpoints)])
        }
        return HTTPServer(channel: channel)
    }
}
