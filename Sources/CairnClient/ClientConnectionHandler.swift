// The client side of gRPC over HTTP/2: every call is a stream on one connection, handled as
// raw frames on the connection channel (no child channel per stream), as the server does.
import CairnGRPC
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One call's state, confined to the connection's event loop.
///
/// A call ends exactly once, through `ClientConnectionHandler.finish`, which cancels its deadline
/// timer and removes it from the stream table.
final class ClientCall {
    /// What the call does with each decoded message; returns false to stop crediting the
    /// stream's flow-control window until `resume` (backpressure for streaming responses).
    let onMessage: (ByteBuffer) -> Bool
    /// Called once when the call ends, with `.ok` or the error status.
    let onClose: (GRPCStatus) -> Void
    var streamID: HTTP2StreamID?
    var decoder: GRPCMessageDecoder
    var sawResponseHeaders = false
    var closed = false
    /// Bytes received but not yet credited back to the peer while paused.
    var heldCreditBytes = 0
    var paused = false
    var deadlineTask: Scheduled<Void>?

    init(maxMessageBytes: Int, onMessage: @escaping (ByteBuffer) -> Bool, onClose: @escaping (GRPCStatus) -> Void) {
        self.decoder = GRPCMessageDecoder(maxMessageBytes: maxMessageBytes)
        self.onMessage = onMessage
        self.onClose = onClose
    }
}

/// Multiplexes calls over one HTTP/2 connection; lives after `NIOHTTP2Handler(mode: .client)`.
///
/// All methods run on the channel's event loop.
final class ClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private var context: ChannelHandlerContext?
    private var calls: [HTTP2StreamID: ClientCall] = [:]
    private var nextStreamID = 1
    /// Set when the connection closed or the server sent GOAWAY: no new calls start here.
    private(set) var unusable: GRPCStatus?
    private let authority: String
    private let logger: Logger
    /// True between the first `channelRead` of a socket read and its `channelReadComplete`:
    /// writes made then (calls started from completions, window updates) are flushed once at
    /// the read's end instead of once each.
    private var inReadBurst = false
    private var flushPending = false

    init(authority: String, logger: Logger) {
        self.authority = authority
        self.logger = logger
    }

    var activeCalls: Int { self.calls.count }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Opens a stream for `call`: request headers, then `message` if given (ending the request
    /// stream when `endStream`), flushed. A deadline RSTs the stream and ends the call with
    /// DEADLINE_EXCEEDED.
    func start(
        _ call: ClientCall, path: String, timeout: Duration?, message: ByteBuffer?, endStream: Bool,
        metadata: [(String, String)]
    ) {
        guard let context = self.context, self.unusable == nil, self.nextStreamID < Int(Int32.max) else {
            call.closed = true
            call.onClose(self.unusable ?? GRPCStatus(.unavailable, "connection closed"))
            return
        }
        let id = HTTP2StreamID(self.nextStreamID)
        self.nextStreamID += 2
        call.streamID = id
        self.calls[id] = call

        var headers: HPACKHeaders = [
            ":method": "POST", ":scheme": "http", ":path": path, ":authority": self.authority,
            "content-type": "application/grpc", "te": "trailers",
        ]
        if let timeout {
            headers.add(name: "grpc-timeout", value: Self.encodeTimeout(timeout))
            let nanos = Self.nanoseconds(timeout)
            // The task runs on this event loop and is cancelled when the call ends.
            let bound = NIOLoopBound((self, call), eventLoop: context.eventLoop)
            call.deadlineTask = context.eventLoop.scheduleTask(in: .nanoseconds(nanos)) {
                let (handler, call) = bound.value
                handler.reset(call, status: GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
            }
        }
        for (name, value) in metadata { headers.add(name: name, value: value) }
        let noBody = message == nil && endStream
        context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers, endStream: noBody)))), promise: nil)
        if let message {
            let framed = GRPCMessageFraming.frame(message, allocator: context.channel.allocator)
            context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(framed), endStream: endStream)))), promise: nil)
        }
        self.flush(context)
    }

    /// Flushes now, or at the end of the current read burst.
    private func flush(_ context: ChannelHandlerContext) {
        if self.inReadBurst {
            self.flushPending = true
        } else {
            context.flush()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.inReadBurst = false
        if self.flushPending {
            self.flushPending = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    /// Sends one more request message (or only ends the request stream when `message` is nil).
    func send(_ call: ClientCall, message: ByteBuffer?, endStream: Bool, promise: EventLoopPromise<Void>?) {
        guard let context = self.context, let id = call.streamID, !call.closed else {
            promise?.fail(GRPCStatus(.unavailable, "stream closed"))
            return
        }
        let data: ByteBuffer
        if let message {
            data = GRPCMessageFraming.frame(message, allocator: context.channel.allocator)
        } else {
            data = context.channel.allocator.buffer(capacity: 0)
        }
        context.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(data), endStream: endStream)))), promise: promise)
    }

    /// Ends `call` locally: RST_STREAM(CANCEL) to the server, `status` to the caller.
    func reset(_ call: ClientCall, status: GRPCStatus) {
        guard !call.closed else { return }
        if let context = self.context, let id = call.streamID {
            context.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.cancel))), promise: nil)
        }
        self.finish(call, status)
    }

    /// Credits what a paused call held back and lets its window open again.
    func resume(_ call: ClientCall) {
        call.paused = false
        guard !call.closed, call.heldCreditBytes > 0, let id = call.streamID, let context = self.context else { return }
        let bytes = call.heldCreditBytes
        call.heldCreditBytes = 0
        context.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: bytes))), promise: nil)
    }

    private func finish(_ call: ClientCall, _ status: GRPCStatus) {
        guard !call.closed else { return }
        call.closed = true
        call.deadlineTask?.cancel()
        call.deadlineTask = nil
        if let id = call.streamID { self.calls.removeValue(forKey: id) }
        call.onClose(status)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        self.inReadBurst = true
        switch frame.payload {
        case .goAway(let lastStreamID, let code, _):
            self.unusable = GRPCStatus(.unavailable, "server sent GOAWAY (\(code))")
            for (id, call) in self.calls where id > lastStreamID {
                self.finish(call, GRPCStatus(.unavailable, "stream refused by GOAWAY"))
            }
            return
        default:
            break
        }
        guard let call = self.calls[frame.streamID] else { return }
        switch frame.payload {
        case .headers(let h):
            self.receiveHeaders(h.headers, endStream: h.endStream, call: call)
        case .data(let d):
            guard case .byteBuffer(let bytes) = d.data else { return }
            self.receiveData(bytes, endStream: d.endStream, call: call, context: context)
        case .rstStream(let code):
            let status: GRPCStatus
            switch code {
            case .refusedStream: status = GRPCStatus(.unavailable, "stream refused by server")
            case .cancel: status = GRPCStatus(.cancelled, "stream cancelled by server")
            default: status = GRPCStatus(.internal, "stream terminated by RST_STREAM with error code: \(code)")
            }
            self.finish(call, status)
        default:
            return
        }
    }

    private func receiveHeaders(_ headers: HPACKHeaders, endStream: Bool, call: ClientCall) {
        if !call.sawResponseHeaders {
            call.sawResponseHeaders = true
            if let status = headers.first(name: ":status"), status != "200" {
                self.reset(call, status: GRPCStatus(Self.codeForHTTPStatus(status), "unexpected HTTP status code received from server: \(status)"))
                return
            }
            if !endStream { return }
        }
        // Trailers (or trailers-only): the call's status.
        guard let code = headers.first(name: "grpc-status").flatMap(Int.init) else {
            self.finish(call, GRPCStatus(.internal, "server closed the stream without sending trailers"))
            return
        }
        let message = headers.first(name: "grpc-message").map(GRPCMessageEncoding.percentDecode) ?? ""
        if call.decoder.hasPartialMessage, code == 0 {
            self.finish(call, GRPCStatus(.internal, "server closed the stream inside a message"))
            return
        }
        self.finish(call, GRPCStatus(GRPCStatusCode(rawValue: code), message))
    }

    private func receiveData(_ bytes: ByteBuffer, endStream: Bool, call: ClientCall, context: ChannelHandlerContext) {
        let n = bytes.readableBytes
        if n > 0 {
            // The connection window is always credited: each stream's window bounds what it holds.
            context.write(self.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: n))), promise: nil)
        }
        call.decoder.append(bytes)
        var keepCrediting = !call.paused
        do {
            while !call.closed, let message = try call.decoder.next() {
                if !call.onMessage(message) { keepCrediting = false }
            }
        } catch {
            self.reset(call, status: error)
            return
        }
        if call.closed {
            self.flush(context)
            return
        }
        if endStream {
            self.finish(call, GRPCStatus(.internal, "server closed the stream without sending trailers"))
        } else if n > 0 {
            if keepCrediting {
                context.write(self.wrapOutboundOut(HTTP2Frame(streamID: call.streamID!, payload: .windowUpdate(windowSizeIncrement: n))), promise: nil)
            } else {
                call.paused = true
                call.heldCreditBytes += n
            }
        }
        self.flush(context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(GRPCStatus(.unavailable, "connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("connection error", metadata: ["error": "\(error)"])
        self.failAll(GRPCStatus(.unavailable, "connection error: \(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ status: GRPCStatus) {
        if self.unusable == nil { self.unusable = status }
        for call in Array(self.calls.values) { self.finish(call, status) }
    }

    /// `grpc-timeout`: at most 8 digits, in the finest unit that fits.
    static func encodeTimeout(_ timeout: Duration) -> String {
        let nanos = self.nanoseconds(timeout)
        let units: [(Int64, Character)] = [(1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"), (3_600_000_000_000, "H")]
        for (scale, unit) in units {
            let value = (nanos + scale - 1) / scale
            if value < 100_000_000 { return "\(value)\(unit)" }
        }
        return "99999999H"
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let (seconds, attoseconds) = d.components
        if seconds >= Int64.max / 1_000_000_000 { return Int64.max / 2 }
        return max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// The gRPC code for a non-200 HTTP status, as gRPC's HTTP-to-gRPC mapping gives it.
    static func codeForHTTPStatus(_ status: String) -> GRPCStatusCode {
        switch status {
        case "400": return .internal
        case "401": return .unauthenticated
        case "403": return .permissionDenied
        case "404": return .unimplemented
        case "429", "502", "503", "504": return .unavailable
        default: return .unknown
        }
    }
}
