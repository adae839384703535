import CairnGRPC
import Logging
import NIOCore
import NIOPosix

/// A server address: `host:port`, optionally written as `http://host:port`.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `http://host:port` or `[v6]:port`; `https://` is refused until TLS exists.
    public init(parsing text: String) throws(GRPCStatus) {
        var rest = Substring(text)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
        if rest.hasPrefix("https://") || rest.hasPrefix("unixs://") {
            throw GRPCStatus(.unimplemented, "TLS endpoints are not supported yet: \(text)")
        }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
            (1...65535).contains(port)
        else { throw GRPCStatus(.invalidArgument, "bad endpoint \"\(text)\": want host:port") }
        var host = rest[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { throw GRPCStatus(.invalidArgument, "bad endpoint \"\(text)\": want host:port") }
        self.host = String(host)
        self.port = port
    }

    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

/// One HTTP/2 connection to one endpoint carrying any number of concurrent gRPC calls.
///
/// Thread-safe: every method may be called from any task; the work happens on the channel's
/// event loop, which is the only hop a call makes.
public final class GRPCClientConnection: Sendable {
    public let endpoint: Endpoint
    let channel: any Channel
    let handler: NIOLoopBound<ClientConnectionHandler>
    let maxMessageBytes: Int
    private let health: ClientConnectionHealth

    private init(
        endpoint: Endpoint, channel: any Channel, handler: NIOLoopBound<ClientConnectionHandler>, health: ClientConnectionHealth,
        maxMessageBytes: Int
    ) {
        self.endpoint = endpoint
        self.channel = channel
        self.handler = handler
        self.health = health
        self.maxMessageBytes = maxMessageBytes
    }

    /// Connects over plaintext HTTP/2 with prior knowledge (h2c). The one place connections are
    /// set up: TLS will be added here.
    static func connect(
        to endpoint: Endpoint, group: any EventLoopGroup, dialTimeout: Duration, maxMessageBytes: Int, logger: Logger
    ) -> EventLoopFuture<GRPCClientConnection> {
        let authority = endpoint.description
        let health = ClientConnectionHealth()
        return ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(ClientConnectionHandler.nanoseconds(dialTimeout)))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ClientConnectionHandler(authority: authority, health: health, logger: logger))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .flatMapThrowing { channel in
                let handler = try channel.pipeline.syncOperations.handler(type: ClientConnectionHandler.self)
                return GRPCClientConnection(
                    endpoint: endpoint, channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop),
                    health: health, maxMessageBytes: maxMessageBytes)
            }
    }

    /// False once the connection closed or takes no new calls (the server sent GOAWAY, or its
    /// stream ids are used up); calls then fail with UNAVAILABLE, and `EtcdClient` dials anew.
    public var isActive: Bool { self.channel.isActive && self.health.isUsable }

    public func close() async {
        try? await self.channel.close()
    }

    /// One unary call: `request` (serialized, unframed) in, the response message out, or a `GRPCStatus` thrown.
    public func unary(path: String, request: ByteBuffer, timeout: Duration?) async throws -> ByteBuffer {
        let el = self.channel.eventLoop
        let handler = self.handler
        let promise = el.makePromise(of: ByteBuffer.self)
        let box = NIOLoopBoundBox.makeEmptyBox(valueType: ClientCall.self, eventLoop: el)
        // Set by a cancellation that comes before the call started on the event loop.
        let cancelled = NIOLoopBoundBox.makeBoxSendingValue(false, as: Bool.self, eventLoop: el)
        return try await withTaskCancellationHandler {
            el.execute {
                if cancelled.value { return promise.fail(GRPCStatus(.cancelled, "context canceled")) }
                box.value = self.startUnary(path: path, request: request, timeout: timeout) { result in
                    promise.completeWith(result.mapError { $0 })
                }
            }
            return try await promise.futureResult.get()
        } onCancel: {
            el.execute {
                cancelled.value = true
                if let call = box.value { handler.value.reset(call, status: GRPCStatus(.cancelled, "context canceled")) }
            }
        }
    }

    /// The event loop the connection runs on; `unaryOnEventLoop` must be called there.
    public var eventLoop: any EventLoop { self.channel.eventLoop }

    /// One unary call started from the connection's event loop, with no task or thread hop:
    /// `completion` runs on that loop with the response message or the call's non-OK status.
    /// For load generators, which keep their whole state on the loop.
    public func unaryOnEventLoop(
        path: String, request: ByteBuffer, timeout: Duration?,
        completion: @escaping (Result<ByteBuffer, GRPCStatus>) -> Void
    ) {
        _ = self.startUnary(path: path, request: request, timeout: timeout, completion: completion)
    }

    private func startUnary(
        path: String, request: ByteBuffer, timeout: Duration?,
        completion: @escaping (Result<ByteBuffer, GRPCStatus>) -> Void
    ) -> ClientCall {
        self.channel.eventLoop.preconditionInEventLoop()
        var response: ByteBuffer?
        let call = ClientCall(
            maxMessageBytes: self.maxMessageBytes,
            onMessage: { message in
                if response == nil { response = message }
                return true
            },
            onClose: { status in
                if status.code != .ok {
                    completion(.failure(status))
                } else if let response {
                    completion(.success(response))
                } else {
                    completion(.failure(GRPCStatus(.internal, "server sent no response message")))
                }
            })
        self.handler.value.start(call, path: path, timeout: timeout, message: request, endStream: true, metadata: [])
        return call
    }

    /// Opens a streaming call. With `request` the request stream carries that one message and
    /// ends (server streaming); without, send messages with `GRPCStreamingCall.send`.
    ///
    /// Responses are buffered up to `bufferedMessagesMax`; beyond that the stream's HTTP/2 window
    /// is not credited, so the server stops sending until the consumer catches up.
    public func openStream(
        path: String, request: ByteBuffer?, timeout: Duration? = nil, bufferedMessagesMax: Int = 16, metadata: [(String, String)] = []
    ) -> GRPCStreamingCall {
        let el = self.channel.eventLoop
        let handler = self.handler
        let maxBytes = self.maxMessageBytes
        let box = NIOLoopBoundBox.makeEmptyBox(valueType: ClientCall.self, eventLoop: el)
        let delegate = GRPCStreamingCall.Delegate(eventLoop: el, handler: handler, call: box)
        let high = max(1, bufferedMessagesMax)
        let produced = NIOThrowingAsyncSequenceProducer.makeSequence(
            elementType: ByteBuffer.self, failureType: (any Error).self,
            backPressureStrategy: NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark(lowWatermark: max(0, high / 2), highWatermark: high),
            finishOnDeinit: true, delegate: delegate)
        let source = produced.source
        el.execute {
            let call = ClientCall(
                maxMessageBytes: maxBytes,
                onMessage: { message in source.yield(message) == .produceMore },
                onClose: { status in
                    if status.code == .ok { source.finish() } else { source.finish(status) }
                })
            box.value = call
            handler.value.start(call, path: path, timeout: timeout, message: request, endStream: request != nil, metadata: metadata)
        }
        return GRPCStreamingCall(delegate: delegate, responses: produced.sequence)
    }
}

/// A streaming call: send request messages, iterate `responses` (which throws the call's
/// non-OK status), `cancel()` to reset the stream.
public struct GRPCStreamingCall: Sendable {
    /// Connects the response sequence's demand and termination to the stream.
    public struct Delegate: NIOAsyncSequenceProducerDelegate {
        let eventLoop: any EventLoop
        let handler: NIOLoopBound<ClientConnectionHandler>
        let call: NIOLoopBoundBox<ClientCall?>

        public func produceMore() {
            let (handler, call) = (self.handler, self.call)
            self.eventLoop.execute { if let c = call.value { handler.value.resume(c) } }
        }

        public func didTerminate() { self.cancel() }

        func cancel() {
            let (handler, call) = (self.handler, self.call)
            self.eventLoop.execute {
                if let c = call.value { handler.value.reset(c, status: GRPCStatus(.cancelled, "context canceled")) }
            }
        }
    }

    public typealias Responses = NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, Delegate
    >

    let delegate: Delegate
    public let responses: Responses

    /// Sends one message and waits until it is written, so at most one message per stream is queued.
    public func send(_ message: ByteBuffer) async throws {
        try await self.write(message, endStream: false)
    }

    /// Ends the request stream (half-close).
    public func closeSending() async throws {
        try await self.write(nil, endStream: true)
    }

    private func write(_ message: ByteBuffer?, endStream: Bool) async throws {
        let (handler, call, el) = (self.delegate.handler, self.delegate.call, self.delegate.eventLoop)
        let promise = el.makePromise(of: Void.self)
        el.execute {
            guard let c = call.value else {
                promise.fail(GRPCStatus(.unavailable, "stream not open"))
                return
            }
            handler.value.send(c, message: message, endStream: endStream, promise: promise)
        }
        try await promise.futureResult.get()
    }

    /// Resets the stream; `responses` then ends with CANCELLED.
    public func cancel() { self.delegate.cancel() }
}
