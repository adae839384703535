import NIOCore
import NIOHPACK
import NIOHTTP2

/// Server tuning knobs.
public struct GRPCServerConfiguration: Sendable {
    /// Largest accepted request message payload (etcd: 1.5 MiB request + gRPC overhead).
    public var maxReceiveMessageBytes: Int = 1_572_864 + 512 * 1024
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised per connection.
    public var maxConcurrentStreams: Int = 1024
    /// SETTINGS_INITIAL_WINDOW_SIZE advertised for each stream's inbound window.
    public var initialStreamWindowSize: Int = 65_535
    /// Target inbound connection window; raised from HTTP/2's fixed 65,535 by WINDOW_UPDATE on first use.
    public var connectionWindowSize: Int = 1 << 20
    /// SETTINGS_MAX_HEADER_LIST_SIZE advertised.
    public var maxHeaderListSize: Int = 16 * 1024
    /// Called on the event loop for each accepted connection after the pipeline is built (tests, metrics).
    public var onConnection: (@Sendable (any Channel) -> Void)?
    /// What HTTP/1.x requests on the same port get (etcd: `/health`, `/version`, `/metrics`);
    /// nil closes connections that do not open with the HTTP/2 preface.
    public var httpEndpoints: HTTPEndpoints?
    /// A connection that has not shown HTTP/2 or HTTP/1 by then is closed.
    public var protocolDetectionTimeout: TimeAmount = .seconds(10)
    /// An HTTP/1 connection with no request for this long is closed.
    public var http1IdleTimeout: TimeAmount = .seconds(60)

    public init() {}

    /// The HTTP/2 SETTINGS sent in the server preface.
    public var http2Settings: HTTP2Settings {
        [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: self.maxConcurrentStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: self.initialStreamWindowSize),
            HTTP2Setting(parameter: .maxHeaderListSize, value: self.maxHeaderListSize),
        ]
    }
}

/// Asks a connection to drain for a graceful stop (fire it as a user inbound event on the
/// connection's channel). The server sends GOAWAY twice, as RFC 9113 §6.8 suggests: first
/// naming the largest stream id (the client opens no new streams; nothing it already sent is
/// refused) with a PING, then, once the PING's ACK shows that every stream the client opened
/// before it read the GOAWAY has arrived, naming the last stream the client started. `promise`
/// succeeds once that is done, no unary call is in flight on the connection and every finished
/// one's stream has closed (its trailers left HTTP/2's flow-control buffers). Streams (Watch,
/// LeaseKeepAlive) do not end by themselves and are not waited for.
///
/// The first GOAWAY and the PING go past NIOHTTP2's state machine (``HTTP2RawConnectionFrames``):
/// through it, NIOHTTP2 1.46 refuses the streams that cross the GOAWAY and then fails the whole
/// connection on their DATA, with every call on it in flight.
public struct GRPCDrainRequest: Sendable {
    public let promise: EventLoopPromise<Void>
    public init(promise: EventLoopPromise<Void>) { self.promise = promise }
}

/// gRPC server logic running directly on the HTTP/2 connection channel (no per-stream child channels).
///
/// Sits after `NIOHTTP2Handler(mode: .server)` and consumes `HTTP2Frame`s for all streams. All state
/// is confined to the connection's event loop. Inbound flow control is managed here (there is no
/// multiplexer): WINDOW_UPDATEs are sent for each stream and for the connection once half of a window
/// has been consumed. Outbound flow control is enforced by `NIOHTTP2Handler`, which buffers DATA.
public final class GRPCConnectionHandler: ChannelInboundHandler {
    public typealias InboundIn = HTTP2Frame
    public typealias OutboundOut = HTTP2Frame

    /// One in-flight call.
    final class Call {
        let context: GRPCCallContext
        let method: GRPCMethodHandler
        var decoder: GRPCMessageDecoder
        var inboundClosed = false
        var headersSent = false
        var finished = false
        var unaryRequest: ByteBuffer?
        var unaryDispatched = false
        var bidi: (any GRPCBidiStreamHandler)?
        var unackedBytes = 0
        var timeout: Scheduled<Void>?

        init(context: GRPCCallContext, method: GRPCMethodHandler, maxMessageBytes: Int) {
            self.context = context
            self.method = method
            self.decoder = GRPCMessageDecoder(maxMessageBytes: maxMessageBytes)
        }
    }

    static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
    static let okTrailers: HPACKHeaders = ["grpc-status": "0"]

    private let router: GRPCRouter
    private let configuration: GRPCServerConfiguration
    private var calls: [HTTP2StreamID: Call] = [:]
    private var context: ChannelHandlerContext?
    private var inReadCycle = false
    private var needsFlush = false
    /// A flush is queued on the event loop (see `flushIfOutsideReadCycle`).
    private var flushScheduled = false
    /// The highest stream the client started (GOAWAY names it).
    private var lastStreamID: HTTP2StreamID = .rootStream
    /// Set once a drain was asked for: succeeds when no unary call is in flight.
    private var drained: EventLoopPromise<Void>?
    /// Where a drain is: the first GOAWAY and its PING sent, or the final GOAWAY sent.
    private var drainPhase: DrainPhase?
    /// The last stream the final GOAWAY named: a stream opened above it is refused unprocessed
    /// (the client counts it as refused, and may retry it elsewhere). NIOHTTP2 drops such
    /// streams itself; this guards the handler should one get through.
    private var goAwayLastStreamID: HTTP2StreamID?

    enum DrainPhase {
        case awaitingPingAck
        case finalGoAwaySent
    }

    /// The PING payload that marks the drain's round trip.
    static let drainPingValue: UInt64 = 0x6361_6972_6e64_7261  // "cairndra"
    static let drainPingData = HTTP2PingData(withInteger: drainPingValue)
    /// Unary calls answered whose streams have not closed yet (their reply may still sit in
    /// NIOHTTP2's flow-control buffer); bounded by the connection's concurrent streams.
    private var unaryStreamsClosing: Set<HTTP2StreamID> = []

    public init(router: GRPCRouter, configuration: GRPCServerConfiguration) {
        self.router = router
        self.configuration = configuration
    }

    /// Number of calls with live per-stream state (event loop only; for tests and metrics).
    public var activeCallCount: Int { self.calls.count }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelAll()
        self.context = nil
        self.drained?.succeed()
        self.drained = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.cancelAll()
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOHTTP2Errors.StreamError {
            return  // NIOHTTP2Handler already reset the stream; StreamClosedEvent cleans up.
        }
        // Connection-level protocol error (e.g. a non-HTTP/2 client): drop the connection.
        context.close(promise: nil)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent {
            if let call = self.calls.removeValue(forKey: closed.streamID) {
                self.cancel(call)
            }
            self.unaryStreamsClosing.remove(closed.streamID)
            self.succeedDrainIfIdle()
        } else if let window = event as? NIOHTTP2WindowUpdatedEvent {
            guard window.streamID == .rootStream else { return }
            // Connection-level inbound flow control. NIOHTTP2Handler reports the remaining window after every
            // DATA frame, including frames it dropped for already-reset streams, so this never leaks window.
            if let remaining = window.inboundWindowSize, remaining <= self.configuration.connectionWindowSize / 2 {
                let increment = self.configuration.connectionWindowSize - remaining
                self.write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment)))
                self.flushIfOutsideReadCycle()
            }
        } else if let drain = event as? GRPCDrainRequest {
            self.startDrain(drain.promise)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.inReadCycle = true
        let frame = self.unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let headers):
            if let call = self.calls[frame.streamID] {
                // Request trailers: only meaningful as end of stream.
                if headers.endStream { self.inputEnded(call, streamID: frame.streamID) }
            } else {
                self.startCall(frame.streamID, headers: headers.headers, endStream: headers.endStream)
            }
        case .data(let payload):
            self.receiveData(frame.streamID, payload: payload)
        case .ping(let data, ack: true) where data == Self.drainPingData:
            self.drainPingAcknowledged()
        default:
            break  // RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE handled by NIOHTTP2Handler / StreamClosedEvent.
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.inReadCycle = false
        if self.needsFlush {
            self.needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    // MARK: - Draining

    private func startDrain(_ promise: EventLoopPromise<Void>) {
        if let already = self.drained {
            already.futureResult.cascade(to: promise)
            return
        }
        self.drained = promise
        self.drainPhase = .awaitingPingAck
        guard let context = self.context else { return }
        var frames = HTTP2RawConnectionFrames.goAway(lastStreamID: .maxID, errorCode: .noError)
        var ping = HTTP2RawConnectionFrames.ping(Self.drainPingValue)
        frames.writeBuffer(&ping)
        context.triggerUserOutboundEvent(HTTP2RawConnectionFrames(frames), promise: nil)
    }

    /// The drain's PING came back: the client has read the first GOAWAY, and every stream it
    /// opened before that has reached us. Name the last one.
    private func drainPingAcknowledged() {
        guard self.drainPhase == .awaitingPingAck else { return }
        self.drainPhase = .finalGoAwaySent
        self.goAwayLastStreamID = self.lastStreamID
        self.write(
            HTTP2Frame(
                streamID: .rootStream, payload: .goAway(lastStreamID: self.lastStreamID, errorCode: .noError, opaqueData: nil)))
        self.flushIfOutsideReadCycle()
        self.succeedDrainIfIdle()
    }

    /// While draining: succeeds the drain once no unary call is left.
    private func succeedDrainIfIdle() {
        guard let promise = self.drained, self.drainPhase == .finalGoAwaySent, self.unaryStreamsClosing.isEmpty else { return }
        let unaryInFlight = self.calls.values.contains { call in
            if case .unary = call.method { return !call.finished }
            return false
        }
        if !unaryInFlight {
            self.drained = nil
            promise.succeed()
        }
    }

    // MARK: - Inbound

    private func startCall(_ streamID: HTTP2StreamID, headers: HPACKHeaders, endStream: Bool) {
        guard let context = self.context else { return }
        if let last = self.goAwayLastStreamID, streamID > last {
            // Opened after the final GOAWAY (only a client breaking the protocol does): never started.
            self.write(HTTP2Frame(streamID: streamID, payload: .rstStream(.refusedStream)))
            return
        }
        if streamID > self.lastStreamID { self.lastStreamID = streamID }
        if headers.first(name: ":method") != "POST" {
            self.rejectEarly(streamID, clientEnded: endStream, httpStatus: "405", status: GRPCStatus(.internal, "grpc: method must be POST"))
            return
        }
        let contentType = headers.first(name: "content-type") ?? ""
        if !(contentType == "application/grpc" || contentType.hasPrefix("application/grpc+")
            || contentType.hasPrefix("application/grpc;"))
        {
            self.rejectEarly(
                streamID, clientEnded: endStream, httpStatus: "415",
                status: GRPCStatus(.internal, "invalid gRPC request content-type \"\(contentType)\""))
            return
        }
        if let encoding = headers.first(name: "grpc-encoding"), encoding != "identity" {
            self.rejectEarly(
                streamID, clientEnded: endStream, httpStatus: "200",
                status: GRPCStatus(.unimplemented, "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\""))
            return
        }
        var deadline: NIODeadline?
        var timeoutAmount: TimeAmount?
        if let timeout = headers.first(name: "grpc-timeout") {
            guard let amount = GRPCTimeout.parse(timeout) else {
                self.rejectEarly(
                    streamID, clientEnded: endStream, httpStatus: "200",
                    status: GRPCStatus(.internal, "transport: malformed grpc-timeout: \(timeout)"))
                return
            }
            timeoutAmount = amount
            deadline = .now() + amount
        }
        let path = headers.first(name: ":path") ?? ""
        let method: GRPCMethodHandler
        switch self.router.route(path) {
        case .success(let m): method = m
        case .failure(let status):
            self.rejectEarly(streamID, clientEnded: endStream, httpStatus: "200", status: status)
            return
        }
        let callContext = GRPCCallContext(
            streamID: streamID, path: path, headers: headers, eventLoop: context.eventLoop, deadline: deadline)
        let call = Call(
            context: callContext, method: method, maxMessageBytes: self.configuration.maxReceiveMessageBytes)
        self.calls[streamID] = call
        if let amount = timeoutAmount {
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            call.timeout = context.eventLoop.scheduleTask(in: amount) {
                bound.value.finish(streamID, status: GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
                bound.value.flushIfOutsideReadCycle()
            }
        }
        if case .bidirectional(let factory) = method {
            call.bidi = factory(callContext, GRPCStreamWriter(connection: self, streamID: streamID))
        }
        if endStream { self.inputEnded(call, streamID: streamID) }
    }

    private func receiveData(_ streamID: HTTP2StreamID, payload: HTTP2Frame.FramePayload.Data) {
        guard case .byteBuffer(let bytes) = payload.data else { return }
        let flowControlled = bytes.readableBytes + (payload.paddingBytes.map { $0 + 1 } ?? 0)
        guard let call = self.calls[streamID], !call.finished else { return }
        if !payload.endStream {
            call.unackedBytes += flowControlled
            if call.unackedBytes >= self.configuration.initialStreamWindowSize / 2 {
                self.write(HTTP2Frame(streamID: streamID, payload: .windowUpdate(windowSizeIncrement: call.unackedBytes)))
                call.unackedBytes = 0
            }
        }
        call.decoder.append(bytes)
        do throws(GRPCStatus) {
            while let message = try call.decoder.next() {
                switch call.method {
                case .unary:
                    if call.unaryRequest != nil {
                        throw GRPCStatus(.internal, "grpc: too many request messages for unary call")
                    }
                    call.unaryRequest = message
                case .bidirectional:
                    call.bidi?.receive(message)
                    if call.finished { return }
                }
            }
        } catch {
            self.finish(streamID, status: error)
            return
        }
        if payload.endStream { self.inputEnded(call, streamID: streamID) }
    }

    private func inputEnded(_ call: Call, streamID: HTTP2StreamID) {
        guard !call.inboundClosed, !call.finished else { return }
        call.inboundClosed = true
        if call.decoder.hasPartialMessage {
            self.finish(streamID, status: GRPCStatus(.internal, "grpc: stream ended inside a message"))
            return
        }
        switch call.method {
        case .unary(let body):
            guard let request = call.unaryRequest else {
                self.finish(streamID, status: GRPCStatus(.internal, "grpc: no request message for unary call"))
                return
            }
            call.unaryRequest = nil
            call.unaryDispatched = true
            let eventLoop = call.context.eventLoop
            let bound = NIOLoopBound(self, eventLoop: eventLoop)
            body(request, call.context).hop(to: eventLoop).whenComplete { result in
                bound.value.completeUnary(streamID, result: result)
            }
        case .bidirectional:
            call.bidi?.endOfInput()
        }
    }

    // MARK: - Outbound

    private func completeUnary(_ streamID: HTTP2StreamID, result: Result<ByteBuffer, any Error>) {
        guard let call = self.calls[streamID], !call.finished else { return }
        switch result {
        case .success(let response):
            self.writeMessage(response, call: call, streamID: streamID)
            self.finish(streamID, status: .ok)
        case .failure(let error):
            self.finish(streamID, status: (error as? GRPCStatus) ?? GRPCStatus(.unknown, "\(error)"))
        }
        self.flushIfOutsideReadCycle()
    }

    func sendMessage(_ message: ByteBuffer, on streamID: HTTP2StreamID, promise: EventLoopPromise<Void>? = nil) -> Bool {
        guard let call = self.calls[streamID], !call.finished else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return false
        }
        self.writeMessage(message, call: call, streamID: streamID, promise: promise)
        self.flushIfOutsideReadCycle()
        return true
    }

    func finishFromApplication(_ streamID: HTTP2StreamID, status: GRPCStatus) {
        self.finish(streamID, status: status, notifyHandler: false)
        self.flushIfOutsideReadCycle()
    }

    private func writeMessage(
        _ message: ByteBuffer, call: Call, streamID: HTTP2StreamID, promise: EventLoopPromise<Void>? = nil
    ) {
        guard let context = self.context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if !call.headersSent {
            call.headersSent = true
            self.write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: Self.responseHeaders))))
        }
        let framed = GRPCMessageFraming.frame(message, allocator: context.channel.allocator)
        self.write(HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(framed)))), promise: promise)
    }

    /// Ends a call: trailers (or trailers-only), RST_STREAM(NO_ERROR) if the client is still sending, state removed.
    ///
    /// `notifyHandler` is true when the server (not the bidi handler itself) ends the call, e.g. on deadline
    /// or a malformed request, so the handler learns through `cancelled()`.
    private func finish(_ streamID: HTTP2StreamID, status: GRPCStatus, notifyHandler: Bool = true) {
        guard let call = self.calls[streamID], !call.finished else { return }
        call.finished = true
        call.timeout?.cancel()
        call.timeout = nil
        var trailers: HPACKHeaders
        if call.headersSent {
            trailers = status.code == .ok && status.message.isEmpty ? Self.okTrailers : Self.trailers(for: status)
        } else {
            trailers = Self.responseHeaders
            trailers.add(contentsOf: Self.trailers(for: status))
        }
        self.write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: trailers, endStream: true))))
        if !call.inboundClosed {
            self.write(HTTP2Frame(streamID: streamID, payload: .rstStream(.noError)))
        }
        self.calls.removeValue(forKey: streamID)
        if case .unary = call.method { self.unaryStreamsClosing.insert(streamID) }
        let bidi = call.bidi
        call.bidi = nil
        if notifyHandler { bidi?.cancelled() }
        self.succeedDrainIfIdle()
    }

    /// Responds to a call that never got state, with a single trailers-only HEADERS frame.
    private func rejectEarly(_ streamID: HTTP2StreamID, clientEnded: Bool, httpStatus: String, status: GRPCStatus) {
        var headers: HPACKHeaders = [":status": httpStatus, "content-type": "application/grpc"]
        headers.add(contentsOf: Self.trailers(for: status))
        self.write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: headers, endStream: true))))
        if !clientEnded {
            // The client may still be sending; reset so it stops and no stream state lingers.
            self.write(HTTP2Frame(streamID: streamID, payload: .rstStream(.noError)))
        }
    }

    private static func trailers(for status: GRPCStatus) -> HPACKHeaders {
        var trailers: HPACKHeaders = ["grpc-status": String(status.code.rawValue)]
        if !status.message.isEmpty {
            trailers.add(name: "grpc-message", value: GRPCMessageEncoding.percentEncode(status.message))
        }
        return trailers
    }

    private func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>? = nil) {
        guard let context = self.context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(self.wrapOutboundOut(frame), promise: promise)
        self.needsFlush = true
    }

    /// Outside a read cycle, writes are flushed by one task queued behind whatever the event loop
    /// already has to run. Replies completed together (the applier finishes a whole batch at once)
    /// therefore leave in one `writev` instead of one each; inside a read cycle,
    /// `channelReadComplete` flushes.
    private func flushIfOutsideReadCycle() {
        guard !self.inReadCycle, self.needsFlush, !self.flushScheduled, let context = self.context else { return }
        self.flushScheduled = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = bound.value
            handler.flushScheduled = false
            guard handler.needsFlush, let context = handler.context else { return }
            handler.needsFlush = false
            context.flush()
        }
    }

    private func cancel(_ call: Call) {
        call.timeout?.cancel()
        call.timeout = nil
        if !call.finished {
            call.finished = true
            if let bidi = call.bidi {
                call.bidi = nil
                bidi.cancelled()
            }
        }
    }

    private func cancelAll() {
        let calls = self.calls
        self.calls.removeAll()
        self.unaryStreamsClosing.removeAll()
        for call in calls.values { self.cancel(call) }
    }
}
