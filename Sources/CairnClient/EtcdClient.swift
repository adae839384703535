import CairnGRPC
import CairnProto
import Logging
import NIOCore
import NIOPosix
import SwiftProtobuf
import Synchronization

/// A unary etcd method: its path and message types.
public struct UnaryMethod<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable {
    public let path: String
    public init(_ path: String) { self.path = path }
}

/// A streaming etcd method (client, server or bidirectional streaming).
public struct StreamingMethod<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable {
    public let path: String
    public init(_ path: String) { self.path = path }
}

/// An etcd v3 client over one HTTP/2 connection to the first reachable endpoint.
///
/// The connection is opened on first use; when it fails or closes, the next call connects
/// again, trying the endpoints in order starting after the one that failed. Calls run
/// concurrently on the connection; no call hops threads beyond NIO's event loop.
///
/// ```swift
/// let client = EtcdClient(configuration: .init(endpoints: [Endpoint(host: "127.0.0.1", port: 2379)]),
///                         group: MultiThreadedEventLoopGroup.singleton, logger: logger)
/// var put = Etcdserverpb_PutRequest(); put.key = Array("k".utf8); put.value = Array("v".utf8)
/// let response = try await client.call(EtcdMethods.put, put, timeout: .seconds(5))
/// ```
public final class EtcdClient: Sendable {
    public struct Configuration: Sendable {
        public var endpoints: [Endpoint]
        public var dialTimeout: Duration
        /// The largest response message accepted (etcd's client default is unlimited; Cairn bounds it).
        public var maxResponseMessageBytes: Int

        public init(endpoints: [Endpoint], dialTimeout: Duration = .seconds(2), maxResponseMessageBytes: Int = 256 << 20) {
            self.endpoints = endpoints
            self.dialTimeout = dialTimeout
            self.maxResponseMessageBytes = maxResponseMessageBytes
        }
    }

    private enum State {
        case idle(nextEndpoint: Int)
        case connecting(EventLoopFuture<GRPCClientConnection>)
        case connected(GRPCClientConnection, endpointIndex: Int)
    }

    public let configuration: Configuration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex<State>(.idle(nextEndpoint: 0))

    public init(configuration: Configuration, group: any EventLoopGroup, logger: Logger) {
        precondition(!configuration.endpoints.isEmpty, "an etcd client needs at least one endpoint")
        self.configuration = configuration
        self.group = group
        self.logger = logger
    }

    /// The open connection, or a new one to the first endpoint that accepts within the dial timeout.
    public func connection() async throws -> GRPCClientConnection {
        let future: EventLoopFuture<GRPCClientConnection> = self.state.withLock { state in
            switch state {
            case .connected(let c, let index):
                if c.isActive { return self.group.any().makeSucceededFuture(c) }
                let f = self.dial(startingAt: (index + 1) % self.configuration.endpoints.count)
                state = .connecting(f)
                return f
            case .connecting(let f):
                return f
            case .idle(let next):
                let f = self.dial(startingAt: next)
                state = .connecting(f)
                return f
            }
        }
        return try await future.get()
    }

    /// Tries each endpoint once, in order from `start`; settles `state` with the outcome.
    private func dial(startingAt start: Int) -> EventLoopFuture<GRPCClientConnection> {
        let endpoints = self.configuration.endpoints
        let el = self.group.any()
        let promise = el.makePromise(of: GRPCClientConnection.self)
        @Sendable func attempt(_ n: Int, lastError: (any Error)?) {
            guard n < endpoints.count else {
                self.state.withLock { $0 = .idle(nextEndpoint: start) }
                self.logger.debug("no endpoint reachable", metadata: ["error": "\(String(describing: lastError))"])
                promise.fail(GRPCStatus(.unavailable, "context deadline exceeded"))
                return
            }
            let index = (start + n) % endpoints.count
            GRPCClientConnection.connect(
                to: endpoints[index], group: self.group, dialTimeout: self.configuration.dialTimeout,
                maxMessageBytes: self.configuration.maxResponseMessageBytes, logger: self.logger
            ).whenComplete { result in
                switch result {
                case .success(let c):
                    self.state.withLock { $0 = .connected(c, endpointIndex: index) }
                    promise.succeed(c)
                case .failure(let error):
                    self.logger.debug("dial failed", metadata: ["endpoint": "\(endpoints[index])", "error": "\(error)"])
                    attempt(n + 1, lastError: error)
                }
            }
        }
        attempt(0, lastError: nil)
        return promise.futureResult
    }

    /// Closes the connection, if any; later calls connect again.
    public func close() async {
        let c: GRPCClientConnection? = self.state.withLock { state in
            if case .connected(let c, let index) = state {
                state = .idle(nextEndpoint: index)
                return c
            }
            return nil
        }
        await c?.close()
    }

    /// A unary call with a deadline of `timeout` (sent as `grpc-timeout` and enforced locally).
    public func call<Req, Resp>(_ method: UnaryMethod<Req, Resp>, _ request: Req, timeout: Duration? = nil) async throws -> Resp {
        let bytes: [UInt8] = try request.serializedBytes()
        let connection = try await self.connection()
        let response = try await connection.unary(path: method.path, request: ByteBuffer(bytes: bytes), timeout: timeout)
        return try Resp(serializedBytes: Array(response.readableBytesView))
    }

    /// A server-streaming call: one request (with extra request `metadata`), a bounded stream of responses.
    public func serverStream<Req, Resp>(
        _ method: StreamingMethod<Req, Resp>, _ request: Req, timeout: Duration? = nil, metadata: [(String, String)] = []
    ) async throws -> StreamingCall<Req, Resp> {
        let bytes: [UInt8] = try request.serializedBytes()
        let connection = try await self.connection()
        return StreamingCall(
            raw: connection.openStream(path: method.path, request: ByteBuffer(bytes: bytes), timeout: timeout, metadata: metadata))
    }

    /// A bidirectional-streaming call (Watch, LeaseKeepAlive).
    public func bidiStream<Req, Resp>(_ method: StreamingMethod<Req, Resp>, timeout: Duration? = nil) async throws -> StreamingCall<Req, Resp> {
        let connection = try await self.connection()
        return StreamingCall(raw: connection.openStream(path: method.path, request: nil, timeout: timeout))
    }
}

/// A typed streaming call.
public struct StreamingCall<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable {
    public let raw: GRPCStreamingCall

    public func send(_ request: Request) async throws {
        let bytes: [UInt8] = try request.serializedBytes()
        try await self.raw.send(ByteBuffer(bytes: bytes))
    }

    public func closeSending() async throws { try await self.raw.closeSending() }
    public func cancel() { self.raw.cancel() }

    /// The responses, decoded; ends normally on OK and throws the call's `GRPCStatus` otherwise.
    public var responses: AsyncThrowingMapSequence<GRPCStreamingCall.Responses, Response> {
        self.raw.responses.map { try Response(serializedBytes: Array($0.readableBytesView)) }
    }
}
