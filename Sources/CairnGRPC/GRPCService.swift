import NIOCore
import NIOHPACK
import NIOHTTP2

/// Per-call information handed to method handlers.
public struct GRPCCallContext: Sendable {
    /// The HTTP/2 stream carrying the call.
    public let streamID: HTTP2StreamID
    /// The request `:path`, e.g. `/etcdserverpb.KV/Put`.
    public let path: String
    /// All request headers (metadata).
    public let headers: HPACKHeaders
    /// The connection's event loop; handler state must be touched only here.
    public let eventLoop: any EventLoop
    /// The deadline from `grpc-timeout`, if the client sent one.
    public let deadline: NIODeadline?
}

/// Receives the inbound half of a bidirectional-streaming call.
///
/// All methods are invoked on the connection's event loop and must not block. Reply through the
/// `GRPCStreamWriter` handed to the factory; work done elsewhere must hop back to
/// `GRPCCallContext.eventLoop` before touching the writer.
public protocol GRPCBidiStreamHandler: AnyObject {
    /// One request message (a slice of the received DATA frame when possible).
    func receive(_ message: ByteBuffer)
    /// The client half-closed its side; the handler should eventually call `finish`.
    func endOfInput()
    /// The call ended before `finish`: RST_STREAM, deadline, or connection closed. Writes are ignored from now on.
    func cancelled()
}

/// A registered method implementation.
public enum GRPCMethodHandler: Sendable {
    /// Unary call; the future may complete on any event loop (the server hops back).
    case unary(@Sendable (ByteBuffer, GRPCCallContext) -> EventLoopFuture<ByteBuffer>)
    /// Bidirectional streaming; the factory runs on the event loop when the call's headers arrive.
    case bidirectional(@Sendable (GRPCCallContext, GRPCStreamWriter) -> any GRPCBidiStreamHandler)

    /// Unary call implemented with async/await; runs in a task and completes back on the event loop.
    public static func unaryAsync(
        _ body: @escaping @Sendable (ByteBuffer, GRPCCallContext) async throws -> ByteBuffer
    ) -> GRPCMethodHandler {
        .unary { request, context in
            let promise = context.eventLoop.makePromise(of: ByteBuffer.self)
            promise.completeWithTask { try await body(request, context) }
            return promise.futureResult
        }
    }
}

/// Immutable routing table from `/service/method` paths to handlers.
public struct GRPCRouter: Sendable {
    private var methods: [String: GRPCMethodHandler] = [:]
    private var services: Set<String> = []

    public init() {}

    /// Registers `handler` for `/<service>/<method>` (service is fully qualified, e.g. `etcdserverpb.KV`).
    public mutating func register(service: String, method: String, _ handler: GRPCMethodHandler) {
        self.services.insert(service)
        self.methods["/\(service)/\(method)"] = handler
    }

    /// Looks up `path`, or returns the `UNIMPLEMENTED` status grpc-go would send.
    func route(_ path: String) -> Result<GRPCMethodHandler, GRPCStatus> {
        if let handler = self.methods[path] { return .success(handler) }
        var trimmed = Substring(path)
        if trimmed.first == "/" { trimmed = trimmed.dropFirst() }
        guard let slash = trimmed.lastIndex(of: "/") else {
            return .failure(GRPCStatus(.unimplemented, "malformed method name: \"\(path)\""))
        }
        let service = String(trimmed[..<slash])
        let method = String(trimmed[trimmed.index(after: slash)...])
        if self.services.contains(service) {
            return .failure(GRPCStatus(.unimplemented, "unknown method \(method) for service \(service)"))
        }
        return .failure(GRPCStatus(.unimplemented, "unknown service \(service)"))
    }
}

/// Sends responses on one streaming call. Event-loop confined: call only on `GRPCCallContext.eventLoop`.
public final class GRPCStreamWriter {
    private weak var connection: GRPCConnectionHandler?
    /// The stream this writer replies on.
    public let streamID: HTTP2StreamID

    init(connection: GRPCConnectionHandler, streamID: HTTP2StreamID) {
        self.connection = connection
        self.streamID = streamID
    }

    /// Sends one response message; returns `false` if the call has already ended.
    @discardableResult
    public func send(_ message: ByteBuffer) -> Bool {
        self.connection?.sendMessage(message, on: self.streamID) ?? false
    }

    /// Sends one response message and completes `promise` once HTTP/2 has written it to the
    /// socket (or fails it if the call or connection ends first). Streams that must bound the
    /// bytes they have outstanding (Watch) count with it.
    @discardableResult
    public func send(_ message: ByteBuffer, promise: EventLoopPromise<Void>?) -> Bool {
        guard let connection = self.connection else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return false
        }
        return connection.sendMessage(message, on: self.streamID, promise: promise)
    }

    /// Ends the call with `status` (trailers); later calls are no-ops.
    public func finish(_ status: GRPCStatus = .ok) {
        self.connection?.finishFromApplication(self.streamID, status: status)
    }
}
