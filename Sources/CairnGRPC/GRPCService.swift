import CairnHTTP2
import NIOCore

/// Per-call information handed to method handlers.
public struct GRPCCallContext: Sendable {
    /// The HTTP/2 stream carrying the call.
    public let streamID: UInt32
    /// The request `:path`, e.g. `/etcdserverpb.KV/Put`.
    public let path: String
    /// All request headers (metadata).
    public let headers: GRPCMetadata
    /// The connection's event loop; handler state must be touched only here.
    public let eventLoop: any EventLoop
    /// The deadline from `grpc-timeout`, if the client sent one.
    public let deadline: NIODeadline?

    public init(streamID: UInt32, path: String, headers: GRPCMetadata, eventLoop: any EventLoop, deadline: NIODeadline?) {
        self.streamID = streamID
        self.path = path
        self.headers = headers
        self.eventLoop = eventLoop
        self.deadline = deadline
    }
}

/// A request's headers as received (names lower-case), looked up by name when asked.
public struct GRPCMetadata: Sendable {
    public let fields: [HPACKField]

    public init(_ fields: [HPACKField]) { self.fields = fields }

    /// The first value of header `name` (lower-case), as a string.
    public func first(name: String) -> String? {
        self.fields.firstValue(name.utf8).map { String(decoding: $0, as: UTF8.self) }
    }
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
    /// Keyed by the path's bytes, so a request's `:path` is looked up without making a string.
    private var methods: [[UInt8]: (path: String, handler: GRPCMethodHandler)] = [:]
    private var services: Set<String> = []

    public init() {}

    /// Registers `handler` for `/<service>/<method>` (service is fully qualified, e.g. `etcdserverpb.KV`).
    public mutating func register(service: String, method: String, _ handler: GRPCMethodHandler) {
        self.services.insert(service)
        let path = "/\(service)/\(method)"
        self.methods[Array(path.utf8)] = (path, handler)
    }

    /// Looks up `path`, or returns the `UNIMPLEMENTED` status grpc-go would send.
    func route(_ pathBytes: [UInt8]) -> Result<(path: String, handler: GRPCMethodHandler), GRPCStatus> {
        if let found = self.methods[pathBytes] { return .success(found) }
        let path = String(decoding: pathBytes, as: UTF8.self)
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
    public let streamID: UInt32

    init(connection: GRPCConnectionHandler, streamID: UInt32) {
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
