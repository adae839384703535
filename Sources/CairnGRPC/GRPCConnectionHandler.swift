import CairnHTTP2
import NIOCore

/// Server tuning knobs.
public struct GRPCServerConfiguration: Sendable {
    /// Largest accepted request message payload (etcd: 1.5 MiB request + gRPC overhead).
    public var maxReceiveMessageBytes: Int = 1_572_864 + 512 * 1024
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised per connection; streams beyond it are refused.
    public var maxConcurrentStreams: Int = 1024
    /// SETTINGS_INITIAL_WINDOW_SIZE advertised for each stream's inbound window (at least
    /// HTTP/2's default 65,535: a smaller one would be enforced before the client saw it).
    public var initialStreamWindowSize: Int = 65_535
    /// Target inbound connection window; raised from HTTP/2's fixed 65,535 by WINDOW_UPDATE at once.
    public var connectionWindowSize: Int = 1 << 20
    /// SETTINGS_MAX_HEADER_LIST_SIZE advertised; a request with more is refused.
    public var maxHeaderListSize: Int = 16 * 1024
    /// PING, SETTINGS, RST_STREAM, PRIORITY, WINDOW_UPDATE and empty DATA frames accepted from a
    /// client per `controlFrameWindow`; beyond, GOAWAY(ENHANCE_YOUR_CALM). grpc-go clients
    /// (etcdctl) send a PING with each burst of DATA they read to estimate the bandwidth-delay
    /// product: a 300 MB Snapshot stream brings thousands within seconds.
    public var maxControlFramesPerWindow: Int = 300_000
    public var controlFrameWindow: TimeAmount = .seconds(30)
    /// Reply bytes a connection may hold waiting for the client's flow-control windows; beyond
    /// it, new streams are refused until the client reads.
    public var maxPendingOutboundBytes: Int = 64 << 20
    /// Request bytes a connection may hold undelivered (parts of messages, unary requests
    /// waiting for their stream's end); beyond it, streams' windows are not credited until
    /// some are delivered. Each stream can then still send at most its window.
    public var maxBufferedInboundBytes: Int = 64 << 20
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

    var streamWindowBytes: Int { min(max(self.initialStreamWindowSize, HTTP2.defaultWindowBytes), HTTP2.maxWindowBytes) }

    /// The SETTINGS sent in the server preface.
    public var http2Settings: [HTTP2Setting] {
        [
            HTTP2Setting(HTTP2.Setting.maxConcurrentStreams, UInt32(self.maxConcurrentStreams)),
            HTTP2Setting(HTTP2.Setting.initialWindowSize, UInt32(self.streamWindowBytes)),
            HTTP2Setting(HTTP2.Setting.maxHeaderListSize, UInt32(self.maxHeaderListSize)),
            HTTP2Setting(HTTP2.Setting.enablePush, 0),
        ]
    }
}

/// Asks a connection to drain for a graceful stop (fire it as a user inbound event on the
/// connection's channel). The server sends GOAWAY twice, as RFC 9113 §6.8 suggests: first
/// naming the largest stream id (the client opens no new streams; nothing it already sent is
/// refused) with a PING, then, once the PING's ACK shows that every stream the client opened
/// before it read the GOAWAY has arrived, naming the last stream the client started. `promise`
/// succeeds once that is done and every unary call on the connection has been answered and its
/// reply written (flow control may hold a reply back). Streams (Watch, LeaseKeepAlive) do not
/// end by themselves and are not waited for.
public struct GRPCDrainRequest: Sendable {
    public let promise: EventLoopPromise<Void>
    public init(promise: EventLoopPromise<Void>) { self.promise = promise }
}

/// A gRPC server connection: HTTP/2 (RFC 9113, with HPACK from `CairnHTTP2`) and gRPC's
/// message framing, status trailers, deadlines and method routing in one handler on the
/// connection's channel, reading and writing bytes.
///
/// Why not NIOHTTP2: a put's whole server path has a budget of 35 µs of CPU, and NIOHTTP2's
/// general machinery (a frame enum, per-frame state machine and header validation, HPACK into
/// `String`s, user events per stream, a flow-control buffer consulted on every flush) cost
/// 11-13 µs of it per unary call on this machine (perf, 100 clients). Here a request's header
/// block is decoded to byte arrays (table entries shared, not copied), the method is found by
/// its path bytes, and a reply's HEADERS, DATA and trailers are precomputed bytes plus the
/// message, appended to one buffer flushed once per event-loop turn. It also fixes two NIOHTTP2
/// (1.46) behaviours: a stream crossing a GOAWAY killed the whole connection, and
/// `HTTP2PingData`'s collection view holds 7 of its 8 bytes.
///
/// All state is confined to the connection's event loop. Inbound flow control: each stream's
/// window is credited as its bytes are consumed, the connection's once half of it is used.
/// Outbound: replies wait (per stream, in order) for the client's windows.
public final class GRPCConnectionHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = IOData

    /// One stream: the HTTP/2 state and the gRPC call on it.
    final class Stream {
        let id: UInt32
        let context: GRPCCallContext
        let method: GRPCMethodHandler
        var decoder: GRPCMessageDecoder
        /// END_STREAM received.
        var remoteClosed = false
        var headersSent = false
        /// The call has ended (trailers queued or the stream reset); nothing more is sent.
        var finished = false
        var unaryRequest: ByteBuffer?
        var bidi: (any GRPCBidiStreamHandler)?
        var timeout: Scheduled<Void>?
        /// What the client may still send us, and what of it we have consumed but not yet credited.
        var receiveWindow: Int
        var receivedUncredited = 0
        /// What waits for window, and the stream's send window.
        var outbound: HTTP2OutboundStream
        /// The unary handler is running (dispatched, not yet completed).
        var running = false
        /// Request bytes held: a partial message in `decoder`, or `unaryRequest`.
        var bufferedInbound = 0
        /// Listed in `withheldCredit`.
        var creditWithheld = false

        init(id: UInt32, context: GRPCCallContext, method: GRPCMethodHandler, maxMessageBytes: Int, receiveWindow: Int, sendWindow: Int) {
            self.id = id
            self.context = context
            self.method = method
            self.decoder = GRPCMessageDecoder(maxMessageBytes: maxMessageBytes)
            self.receiveWindow = receiveWindow
            self.outbound = HTTP2OutboundStream(sendWindow: sendWindow)
        }

        var isUnary: Bool {
            if case .unary = self.method { return true }
            return false
        }
    }

    enum DrainPhase {
        case awaitingPingAck
        case finalGoAwaySent
    }

    /// The PING payload that marks the drain's round trip ("cairndra").
    static let drainPingData: UInt64 = 0x6361_6972_6e64_7261

    private let router: GRPCRouter
    private let configuration: GRPCServerConfiguration
    private var context: ChannelHandlerContext?

    // HTTP/2 connection state.
    private var reader = HTTP2FrameReader()
    private var prefaceReceived = false
    private var settingsReceived = false
    private var hpack = HPACKDecoder()
    private var streams: [UInt32: Stream] = [:]
    /// The highest stream id the client used (streams at or below it are no longer idle).
    private var lastClientStreamID: UInt32 = 0
    /// Peer settings, connection windows, header blocks in progress, control-frame budget.
    private var h2: HTTP2ConnectionState
    /// A connection error was sent; the connection is closing and reads nothing more.
    private var closing = false
    /// Unary calls whose stream the client reset while their handler still runs: they count
    /// against the stream limit until the handler completes (else HEADERS, END_STREAM and
    /// RST_STREAM, repeated, would start calls without bound: "rapid reset").
    private var abandonedRunning: Set<UInt32> = []
    /// Reply bytes waiting in streams' outbound queues for window.
    private var pendingOutboundBytes = 0
    /// The sum of streams' `bufferedInbound`.
    private var bufferedInboundBytes = 0
    /// Streams whose window credit waits for `bufferedInboundBytes` to fall under its limit.
    private var withheldCredit: [UInt32] = []

    // Output: frames are appended here and written once per read cycle or event-loop turn.
    private var out = ByteBuffer()
    private var inReadCycle = false
    private var flushScheduled = false
    private var needsFlush = false

    // Graceful drain.
    private var drained: EventLoopPromise<Void>?
    private var drainPhase: DrainPhase?
    /// The last stream the final GOAWAY named: later streams are refused unprocessed.
    private var goAwayLastStreamID: UInt32?

    public init(router: GRPCRouter, configuration: GRPCServerConfiguration) {
        self.router = router
        self.configuration = configuration
        self.h2 = HTTP2ConnectionState(
            receiveWindowTarget: configuration.connectionWindowSize, maxHeaderBlockBytes: 4 * configuration.maxHeaderListSize,
            maxControlFrames: configuration.maxControlFramesPerWindow, controlWindow: configuration.controlFrameWindow)
    }

    /// Number of calls with live per-stream state (event loop only; for tests and metrics).
    public var activeCallCount: Int { self.streams.count }

    // MARK: - Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.out = context.channel.allocator.buffer(capacity: 4096)
        // The server preface: our SETTINGS, then the connection window raised to its target.
        HTTP2FrameEncoder.writeSettings(self.configuration.http2Settings, into: &self.out)
        self.h2.writeInitialWindowUpdate(into: &self.out)
        self.needsFlush = true
        if context.channel.isActive { self.flushNow() }
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.flushNow()
        context.fireChannelActive()
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
        context.close(promise: nil)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Backpressure: a client that does not read stops being read, so control frames it
        // sends (each answered) cannot pile up replies in memory.
        let writable = context.channel.isWritable
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: writable)
        if writable { context.read() }
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let drain = event as? GRPCDrainRequest {
            self.startDrain(drain.promise)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.closing else { return }
        self.inReadCycle = true
        self.reader.append(self.unwrapInboundIn(data))
        do throws(HTTP2ConnectionError) {
            if !self.prefaceReceived {
                guard let preface = self.reader.readRaw(HTTP2.clientPreface.count) else { return }
                guard preface.readableBytesView.elementsEqual(HTTP2.clientPreface) else {
                    throw HTTP2ConnectionError(.protocolError, "invalid connection preface")
                }
                self.prefaceReceived = true
            }
            while !self.closing, let (header, payload) = try self.reader.next() {
                try self.process(header, payload)
            }
        } catch {
            self.connectionError(error)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.inReadCycle = false
        if self.needsFlush { self.flushNow() }
        context.fireChannelReadComplete()
    }

    // MARK: - Frames in

    private func process(_ h: HTTP2FrameHeader, _ payload: ByteBuffer) throws(HTTP2ConnectionError) {
        if !self.settingsReceived {
            guard h.type == HTTP2.FrameType.settings, !h.has(HTTP2.Flags.ack) else {
                throw HTTP2ConnectionError(.protocolError, "the first frame must be SETTINGS")
            }
            self.settingsReceived = true
        }
        if self.h2.expectsContinuation {
            try self.h2.countControlFrame()
            if let block = try self.h2.headerFragment(h, payload) {
                try self.headerBlock(streamID: block.streamID, block.block, endStream: block.endStream)
            }
            return
        }
        switch h.type {
        case HTTP2.FrameType.data:
            try self.data(h, payload)
        case HTTP2.FrameType.headers:
            try self.headers(h, payload)
        case HTTP2.FrameType.priority:
            guard h.streamID != 0 else { throw HTTP2ConnectionError(.protocolError, "PRIORITY on stream 0") }
            try self.h2.countControlFrame()
            // Malformed: a stream error, but never an RST_STREAM on a stream not yet opened.
            if h.length != 5 && h.streamID <= self.lastClientStreamID { self.resetStream(h.streamID, .frameSizeError) }
        case HTTP2.FrameType.rstStream:
            guard h.streamID != 0 else { throw HTTP2ConnectionError(.protocolError, "RST_STREAM on stream 0") }
            guard h.length == 4 else { throw HTTP2ConnectionError(.frameSizeError, "RST_STREAM of \(h.length) bytes") }
            guard h.streamID <= self.lastClientStreamID else {
                throw HTTP2ConnectionError(.protocolError, "RST_STREAM on idle stream \(h.streamID)")
            }
            try self.h2.countControlFrame()
            if let s = self.streams[h.streamID] { self.drop(s) }
        case HTTP2.FrameType.settings:
            try self.settings(h, payload)
        case HTTP2.FrameType.pushPromise:
            throw HTTP2ConnectionError(.protocolError, "PUSH_PROMISE from a client")
        case HTTP2.FrameType.ping:
            guard h.streamID == 0 else { throw HTTP2ConnectionError(.protocolError, "PING on stream \(h.streamID)") }
            guard h.length == 8 else { throw HTTP2ConnectionError(.frameSizeError, "PING of \(h.length) bytes") }
            let data = payload.getInteger(at: payload.readerIndex, as: UInt64.self)!
            if h.has(HTTP2.Flags.ack) {
                if data == Self.drainPingData { self.drainPingAcknowledged() }
            } else {
                try self.h2.countControlFrame()
                HTTP2FrameEncoder.writePing(data, ack: true, into: &self.out)
                self.needsFlush = true
            }
        case HTTP2.FrameType.goAway:
            guard h.streamID == 0 else { throw HTTP2ConnectionError(.protocolError, "GOAWAY on stream \(h.streamID)") }
            guard h.length >= 8 else { throw HTTP2ConnectionError(.frameSizeError, "GOAWAY of \(h.length) bytes") }
            // The client is leaving; its streams in flight still get their answers.
        case HTTP2.FrameType.windowUpdate:
            try self.h2.countControlFrame()
            try self.windowUpdate(h, payload)
        case HTTP2.FrameType.continuation:
            throw HTTP2ConnectionError(.protocolError, "CONTINUATION without HEADERS")
        default:
            try self.h2.countControlFrame()  // Unknown frame types are ignored (RFC 9113 §4.1), and counted.
        }
    }

    private func settings(_ h: HTTP2FrameHeader, _ payload: ByteBuffer) throws(HTTP2ConnectionError) {
        guard h.streamID == 0 else { throw HTTP2ConnectionError(.protocolError, "SETTINGS on stream \(h.streamID)") }
        if h.has(HTTP2.Flags.ack) {
            guard h.length == 0 else { throw HTTP2ConnectionError(.frameSizeError, "SETTINGS ACK with a payload") }
            return
        }
        try self.h2.countControlFrame()
        let delta = try self.h2.applySettings(payload)
        if delta != 0 {
            for s in self.streams.values {
                s.outbound.sendWindow += delta
                guard s.outbound.sendWindow <= HTTP2.maxWindowBytes else {
                    throw HTTP2ConnectionError(.flowControlError, "stream window overflows")
                }
            }
            if delta > 0 { for s in Array(self.streams.values) { self.pump(s) } }
        }
        HTTP2FrameEncoder.writeSettingsAck(into: &self.out)
        self.needsFlush = true
    }

    private func windowUpdate(_ h: HTTP2FrameHeader, _ payload: ByteBuffer) throws(HTTP2ConnectionError) {
        guard h.length == 4 else { throw HTTP2ConnectionError(.frameSizeError, "WINDOW_UPDATE of \(h.length) bytes") }
        let increment = Int(payload.getInteger(at: payload.readerIndex, as: UInt32.self)! & 0x7fff_ffff)
        if h.streamID == 0 {
            try self.h2.windowUpdate(increment: increment)
            self.pumpConnectionBlocked()
            return
        }
        guard h.streamID <= self.lastClientStreamID else {
            throw HTTP2ConnectionError(.protocolError, "WINDOW_UPDATE on idle stream \(h.streamID)")
        }
        guard let s = self.streams[h.streamID] else { return }  // closed: a late update
        guard increment > 0 else { return self.resetStream(h.streamID, .protocolError) }
        s.outbound.sendWindow += increment
        guard s.outbound.sendWindow <= HTTP2.maxWindowBytes else { return self.resetStream(h.streamID, .flowControlError) }
        self.pump(s)
    }

    private func headers(_ h: HTTP2FrameHeader, _ payload: ByteBuffer) throws(HTTP2ConnectionError) {
        guard h.streamID != 0, h.streamID & 1 == 1 else {
            throw HTTP2ConnectionError(.protocolError, "HEADERS on stream \(h.streamID)")
        }
        if let block = try self.h2.headerFragment(h, http2HeaderFragment(h, payload)) {
            try self.headerBlock(streamID: block.streamID, block.block, endStream: block.endStream)
        }
    }

    private func headerBlock(streamID: UInt32, _ block: ByteBuffer, endStream: Bool) throws(HTTP2ConnectionError) {
        var fields: [HPACKField] = []
        fields.reserveCapacity(12)
        let listBytes: Int
        do { listBytes = try self.hpack.decode(block, into: &fields, maxListBytes: self.configuration.maxHeaderListSize) } catch {
            throw HTTP2ConnectionError(.compressionError, error.reason)
        }
        if let s = self.streams[streamID] {
            // Trailers: they must end the stream.
            guard !s.remoteClosed else { return self.resetStream(streamID, .streamClosed) }
            guard endStream else { return self.resetStream(streamID, .protocolError) }
            self.remoteEnded(s)
            return
        }
        guard streamID > self.lastClientStreamID else { return }  // a stream already closed or reset
        self.lastClientStreamID = streamID
        if let last = self.goAwayLastStreamID, streamID > last {
            // Opened after the final GOAWAY (only a client breaking the protocol does): never started.
            return self.resetStream(streamID, .refusedStream)
        }
        guard self.streams.count + self.abandonedRunning.count < self.configuration.maxConcurrentStreams,
            self.pendingOutboundBytes <= self.configuration.maxPendingOutboundBytes
        else {
            return self.resetStream(streamID, .refusedStream)
        }
        if listBytes > self.configuration.maxHeaderListSize {
            return self.rejectEarly(
                streamID, clientEnded: endStream, httpStatus: nil,
                status: GRPCStatus(.resourceExhausted, "grpc: header list of \(listBytes) bytes exceeds \(self.configuration.maxHeaderListSize)"))
        }
        self.startCall(streamID, fields: fields, endStream: endStream)
    }

    private func data(_ h: HTTP2FrameHeader, _ payload: ByteBuffer) throws(HTTP2ConnectionError) {
        guard h.streamID != 0 else { throw HTTP2ConnectionError(.protocolError, "DATA on stream 0") }
        let flowBytes = h.length
        if try self.h2.receivedData(length: flowBytes, into: &self.out) { self.needsFlush = true }
        if flowBytes == 0 && !h.has(HTTP2.Flags.endStream) { try self.h2.countControlFrame() }
        guard let s = self.streams[h.streamID] else {
            guard h.streamID <= self.lastClientStreamID else {
                throw HTTP2ConnectionError(.protocolError, "DATA on idle stream \(h.streamID)")
            }
            return  // a stream we reset or refused: its data in flight is dropped
        }
        guard !s.remoteClosed else { return self.resetStream(h.streamID, .streamClosed) }
        guard flowBytes <= s.receiveWindow else { return self.resetStream(h.streamID, .flowControlError) }
        s.receiveWindow -= flowBytes
        guard let bytes = http2Unpad(payload, flags: h.flags) else {
            throw HTTP2ConnectionError(.protocolError, "DATA padding exceeds the payload")
        }
        let endStream = h.has(HTTP2.Flags.endStream)
        if !endStream && flowBytes > 0 {
            s.receivedUncredited += flowBytes
            if s.receivedUncredited >= self.configuration.streamWindowBytes / 2 { self.credit(s) }
        }
        guard !s.finished else {
            if endStream { self.remoteEnded(s) }
            return
        }
        s.decoder.append(bytes)
        defer { self.updateBuffered(s) }
        do throws(GRPCStatus) {
            while let message = try s.decoder.next() {
                switch s.method {
                case .unary:
                    if s.unaryRequest != nil {
                        throw GRPCStatus(.internal, "grpc: too many request messages for unary call")
                    }
                    s.unaryRequest = message
                case .bidirectional:
                    s.bidi?.receive(message)
                    if s.finished { return }
                }
            }
        } catch {
            self.finish(s, status: error)
            return
        }
        if endStream { self.remoteEnded(s) }
    }

    // MARK: - Calls

    private func startCall(_ streamID: UInt32, fields: [HPACKField], endStream: Bool) {
        guard let context = self.context else { return }
        var method: [UInt8]?
        var path: [UInt8]?
        var contentType: [UInt8]?
        var timeout: [UInt8]?
        var encoding: [UInt8]?
        for f in fields {
            switch f.name.count {
            case 5 where f.name == GRPCHeaderNames.path: path = f.value
            case 7 where f.name == GRPCHeaderNames.method: method = f.value
            case 12 where f.name == GRPCHeaderNames.contentType: contentType = f.value
            case 12 where f.name == GRPCHeaderNames.timeout: timeout = f.value
            case 13 where f.name == GRPCHeaderNames.encoding: encoding = f.value
            default: break
            }
        }
        guard method == GRPCHeaderNames.post else {
            return self.rejectEarly(streamID, clientEnded: endStream, httpStatus: "405", status: GRPCStatus(.internal, "grpc: method must be POST"))
        }
        let ct = contentType ?? []
        guard ct == GRPCHeaderNames.applicationGRPC || ct.starts(with: GRPCHeaderNames.applicationGRPCPlus)
            || ct.starts(with: GRPCHeaderNames.applicationGRPCSemicolon)
        else {
            return self.rejectEarly(
                streamID, clientEnded: endStream, httpStatus: "415",
                status: GRPCStatus(.internal, "invalid gRPC request content-type \"\(String(decoding: ct, as: UTF8.self))\""))
        }
        if let encoding, encoding != GRPCHeaderNames.identity {
            return self.rejectEarly(
                streamID, clientEnded: endStream, httpStatus: nil,
                status: GRPCStatus(
                    .unimplemented, "grpc: Decompressor is not installed for grpc-encoding \"\(String(decoding: encoding, as: UTF8.self))\""))
        }
        var deadline: NIODeadline?
        var timeoutAmount: TimeAmount?
        if let timeout {
            let text = String(decoding: timeout, as: UTF8.self)
            guard let amount = GRPCTimeout.parse(text) else {
                return self.rejectEarly(
                    streamID, clientEnded: endStream, httpStatus: nil, status: GRPCStatus(.internal, "transport: malformed grpc-timeout: \(text)"))
            }
            timeoutAmount = amount
            deadline = .now() + amount
        }
        let route: (path: String, handler: GRPCMethodHandler)
        switch self.router.route(path ?? []) {
        case .success(let r): route = r
        case .failure(let status): return self.rejectEarly(streamID, clientEnded: endStream, httpStatus: nil, status: status)
        }
        let callContext = GRPCCallContext(
            streamID: streamID, path: route.path, headers: GRPCMetadata(fields), eventLoop: context.eventLoop, deadline: deadline)
        let s = Stream(
            id: streamID, context: callContext, method: route.handler, maxMessageBytes: self.configuration.maxReceiveMessageBytes,
            receiveWindow: self.configuration.streamWindowBytes, sendWindow: self.h2.peerInitialWindow)
        self.streams[streamID] = s
        if let amount = timeoutAmount {
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            // Armed until the stream's last frame leaves, not only until the call ends: a reply
            // held back by a client that never opens its window is dropped at the deadline.
            s.timeout = context.eventLoop.scheduleTask(in: amount) {
                let handler = bound.value
                guard let s = handler.streams[streamID] else { return }
                s.timeout = nil
                handler.finish(s, status: GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
                if handler.streams[streamID] != nil { handler.resetStream(streamID, .cancel) }  // still waiting for window
                handler.flushIfOutsideReadCycle()
            }
        }
        if case .bidirectional(let factory) = route.handler {
            s.bidi = factory(callContext, GRPCStreamWriter(connection: self, streamID: streamID))
        }
        if endStream { self.remoteEnded(s) }
    }

    private func remoteEnded(_ s: Stream) {
        guard !s.remoteClosed else { return }
        s.remoteClosed = true
        // A finished call's stream leaves the table when its trailers do.
        guard !s.finished else { return }
        if s.decoder.hasPartialMessage {
            return self.finish(s, status: GRPCStatus(.internal, "grpc: stream ended inside a message"))
        }
        switch s.method {
        case .unary(let body):
            guard let request = s.unaryRequest else {
                return self.finish(s, status: GRPCStatus(.internal, "grpc: no request message for unary call"))
            }
            s.unaryRequest = nil
            self.updateBuffered(s)
            s.running = true
            let eventLoop = s.context.eventLoop
            let bound = NIOLoopBound(self, eventLoop: eventLoop)
            let streamID = s.id
            let future = body(request, s.context)
            if future.eventLoop === eventLoop {
                future.whenComplete { bound.value.completeUnary(streamID, result: $0) }
            } else {
                future.hop(to: eventLoop).whenComplete { bound.value.completeUnary(streamID, result: $0) }
            }
        case .bidirectional:
            s.bidi?.endOfInput()
        }
    }

    private func completeUnary(_ streamID: UInt32, result: Result<ByteBuffer, any Error>) {
        if self.abandonedRunning.remove(streamID) != nil { return }
        guard let s = self.streams[streamID] else { return }
        s.running = false
        guard !s.finished else { return }
        switch result {
        case .success(let response):
            self.sendMessage(response, on: s, promise: nil)
            self.finish(s, status: .ok)
        case .failure(let error):
            self.finish(s, status: (error as? GRPCStatus) ?? GRPCStatus(.unknown, "\(error)"))
        }
        self.flushIfOutsideReadCycle()
    }

    // MARK: - Frames out

    func sendMessage(_ message: ByteBuffer, on streamID: UInt32, promise: EventLoopPromise<Void>? = nil) -> Bool {
        guard let s = self.streams[streamID], !s.finished else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return false
        }
        self.sendMessage(message, on: s, promise: promise)
        self.flushIfOutsideReadCycle()
        return true
    }

    func finishFromApplication(_ streamID: UInt32, status: GRPCStatus) {
        guard let s = self.streams[streamID] else { return }
        self.finish(s, status: status, notifyHandler: false)
        self.flushIfOutsideReadCycle()
    }

    private func sendMessage(_ message: ByteBuffer, on s: Stream, promise: EventLoopPromise<Void>?) {
        if !s.headersSent {
            s.headersSent = true
            HTTP2FrameEncoder.writeHeaders(
                streamID: s.id, block: GRPCHeaderBlocks.responseHeaders, endStream: false, maxFrameBytes: self.h2.peerMaxFrameBytes,
                into: &self.out)
            self.needsFlush = true
        }
        let total = 5 + message.readableBytes
        if s.outbound.isEmpty, total <= s.outbound.sendWindow, total <= self.h2.sendWindow, total <= self.h2.peerMaxFrameBytes,
            message.readableBytes <= Self.copyLimitBytes
        {
            // The common case: one DATA frame, the message copied into the output buffer.
            s.outbound.sendWindow -= total
            self.h2.sendWindow -= total
            HTTP2FrameEncoder.writeDataHeader(streamID: s.id, length: total, endStream: false, into: &self.out)
            self.out.writeInteger(UInt8(0))
            self.out.writeInteger(UInt32(message.readableBytes))
            self.out.writeImmutableBuffer(message)
            self.needsFlush = true
            if let promise { self.writeOut(promise: promise) }
            return
        }
        var framed = ByteBuffer()
        if message.readableBytes <= Self.copyLimitBytes {
            framed = GRPCMessageFraming.frame(message, allocator: self.context?.channel.allocator ?? ByteBufferAllocator())
            s.outbound.append(.data(framed, endStream: false, promise))
            self.pendingOutboundBytes += framed.readableBytes
        } else {
            // A large message is not copied whole into a framed buffer first: its prefix and the
            // message go as separate pieces, and only the frames cut from them are copied out.
            var prefix = ByteBuffer()
            prefix.writeInteger(UInt8(0))
            prefix.writeInteger(UInt32(message.readableBytes))
            s.outbound.append(.data(prefix, endStream: false, nil))
            s.outbound.append(.data(message, endStream: false, promise))
            self.pendingOutboundBytes += 5 + message.readableBytes
        }
        self.pump(s)
    }

    /// Messages up to this size are copied into the output buffer; larger ones are written as
    /// they are.
    static let copyLimitBytes = 16 << 10

    /// Sends what `s` has queued, as far as the windows allow.
    private func pump(_ s: Stream) {
        guard !s.outbound.isEmpty else { return }
        let (outcome, sent) = s.outbound.pump(
            streamID: s.id, connectionWindow: &self.h2.sendWindow, maxFrameBytes: self.h2.peerMaxFrameBytes,
            copyLimit: Self.copyLimitBytes, into: &self.out,
            flushOut: { out, promise in self.writeOut(&out, promise: promise) },
            writeDirect: { bytes, promise in
                guard let context = self.context else {
                    promise?.fail(ChannelError.ioOnClosedChannel)
                    return
                }
                context.write(self.wrapOutboundOut(.byteBuffer(bytes)), promise: promise)
            })
        self.pendingOutboundBytes -= sent
        self.needsFlush = true
        switch outcome {
        case .ended:
            self.trailersSent(s)
        case .blockedOnConnection:
            self.h2.waitForWindow(s.id)
        case .drained, .blockedOnStream:
            break
        }
    }

    private func pumpConnectionBlocked() {
        for id in self.h2.takeWaiting() {
            if let s = self.streams[id] { self.pump(s) }
        }
        self.flushIfOutsideReadCycle()
    }

    /// Ends a call: trailers (or trailers-only), then the stream is done.
    ///
    /// `notifyHandler` is true when the server (not the bidi handler itself) ends the call, e.g. on
    /// deadline or a malformed request, so the handler learns through `cancelled()`.
    private func finish(_ s: Stream, status: GRPCStatus, notifyHandler: Bool = true) {
        guard !s.finished else { return }
        s.finished = true
        let block: ByteBuffer
        if s.headersSent {
            block = status.code == .ok && status.message.isEmpty ? GRPCHeaderBlocks.okTrailers : GRPCHeaderBlocks.trailers(status)
        } else {
            block = GRPCHeaderBlocks.trailersOnly(status, httpStatus: nil)
        }
        s.outbound.append(.headers(block))
        let bidi = s.bidi
        s.bidi = nil
        if notifyHandler { bidi?.cancelled() }
        self.pump(s)
    }

    /// The stream's last frame left: if the client is still sending, reset it so it stops.
    private func trailersSent(_ s: Stream) {
        if !s.remoteClosed {
            HTTP2FrameEncoder.writeRSTStream(streamID: s.id, code: .noError, into: &self.out)
        }
        s.timeout?.cancel()
        s.timeout = nil
        self.forget(s)
        self.succeedDrainIfIdle()
    }

    /// Removes `s` from the table and from the connection's byte counts.
    private func forget(_ s: Stream) {
        guard self.streams.removeValue(forKey: s.id) != nil else { return }
        if s.running { self.abandonedRunning.insert(s.id) }
        self.bufferedInboundBytes -= s.bufferedInbound
        s.bufferedInbound = 0
        self.creditWithheldIfRoom()
    }

    /// Ends a stream at once (reset by either side): its call is cancelled, its queued
    /// frames dropped.
    private func drop(_ s: Stream) {
        self.forget(s)
        self.cancel(s)
        self.succeedDrainIfIdle()
    }

    /// Sends the stream's uncredited bytes back as window, unless the connection holds too
    /// many undelivered request bytes: then the credit waits (`creditWithheldIfRoom`).
    private func credit(_ s: Stream) {
        guard s.receivedUncredited > 0 else { return }
        if self.bufferedInboundBytes > self.configuration.maxBufferedInboundBytes {
            if !s.creditWithheld {
                s.creditWithheld = true
                self.withheldCredit.append(s.id)
            }
            return
        }
        HTTP2FrameEncoder.writeWindowUpdate(streamID: s.id, increment: s.receivedUncredited, into: &self.out)
        s.receiveWindow += s.receivedUncredited
        s.receivedUncredited = 0
        self.needsFlush = true
    }

    private func creditWithheldIfRoom() {
        while !self.withheldCredit.isEmpty, self.bufferedInboundBytes <= self.configuration.maxBufferedInboundBytes {
            let id = self.withheldCredit.removeFirst()
            guard let s = self.streams[id] else { continue }
            s.creditWithheld = false
            self.credit(s)
        }
    }

    /// Recounts the request bytes `s` holds.
    private func updateBuffered(_ s: Stream) {
        guard self.streams[s.id] === s else { return }  // forgotten meanwhile: nothing counted
        let now = s.decoder.bufferedBytes + (s.unaryRequest?.readableBytes ?? 0)
        self.bufferedInboundBytes += now - s.bufferedInbound
        let fell = now < s.bufferedInbound
        s.bufferedInbound = now
        if fell { self.creditWithheldIfRoom() }
    }

    /// Answers a stream that never got a call, with one trailers-only HEADERS frame.
    private func rejectEarly(_ streamID: UInt32, clientEnded: Bool, httpStatus: String?, status: GRPCStatus) {
        HTTP2FrameEncoder.writeHeaders(
            streamID: streamID, block: GRPCHeaderBlocks.trailersOnly(status, httpStatus: httpStatus), endStream: true,
            maxFrameBytes: self.h2.peerMaxFrameBytes, into: &self.out)
        if !clientEnded {
            // The client may still be sending; reset so it stops and no stream state lingers.
            HTTP2FrameEncoder.writeRSTStream(streamID: streamID, code: .noError, into: &self.out)
        }
        self.needsFlush = true
    }

    /// A stream error: RST_STREAM, and the call (if any) is cancelled.
    private func resetStream(_ streamID: UInt32, _ code: HTTP2ErrorCode) {
        HTTP2FrameEncoder.writeRSTStream(streamID: streamID, code: code, into: &self.out)
        self.needsFlush = true
        if let s = self.streams[streamID] { self.drop(s) }
    }

    /// A connection error: GOAWAY with the code, then the connection closes.
    private func connectionError(_ error: HTTP2ConnectionError) {
        guard !self.closing, let context = self.context else { return }
        self.closing = true
        HTTP2FrameEncoder.writeGoAway(lastStreamID: self.lastClientStreamID, code: error.code, debug: error.reason, into: &self.out)
        let written = context.eventLoop.makePromise(of: Void.self)
        self.writeOut(promise: written)
        context.flush()
        written.futureResult.whenComplete { _ in context.close(promise: nil) }
        // A peer that stops reading would hold the GOAWAY's write, and the connection, forever.
        let channel = context.channel
        context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        self.cancelAll()
    }

    /// Writes the output buffer so far (with `promise`, completed once it reached the socket).
    private func writeOut(promise: EventLoopPromise<Void>?) {
        self.writeOut(&self.out, promise: promise)
    }

    /// Writes `out` (the output buffer, passed in while it is borrowed) and starts a new one.
    private func writeOut(_ out: inout ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let context = self.context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if out.readableBytes == 0 {
            if let promise { context.write(self.wrapOutboundOut(.byteBuffer(out)), promise: promise) }
            return
        }
        context.write(self.wrapOutboundOut(.byteBuffer(out)), promise: promise)
        out = context.channel.allocator.buffer(capacity: 4096)
        self.needsFlush = true
    }

    private func flushNow() {
        guard let context = self.context else { return }
        self.writeOut(promise: nil)
        self.needsFlush = false
        context.flush()
    }

    /// Outside a read cycle, writes are flushed by one task queued behind whatever the event loop
    /// already has to run. Replies completed together (the applier finishes a whole batch at once)
    /// therefore leave in one write instead of one each; inside a read cycle,
    /// `channelReadComplete` flushes.
    private func flushIfOutsideReadCycle() {
        guard !self.inReadCycle, self.needsFlush, !self.flushScheduled, let context = self.context else { return }
        self.flushScheduled = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = bound.value
            handler.flushScheduled = false
            if handler.needsFlush { handler.flushNow() }
        }
    }

    // MARK: - Draining

    private func startDrain(_ promise: EventLoopPromise<Void>) {
        if let already = self.drained {
            already.futureResult.cascade(to: promise)
            return
        }
        self.drained = promise
        if self.drainPhase == .finalGoAwaySent {
            // Drained before: no second GOAWAY (a client may close on one naming a higher id).
            return self.succeedDrainIfIdle()
        }
        self.drainPhase = .awaitingPingAck
        HTTP2FrameEncoder.writeGoAway(lastStreamID: HTTP2.maxStreamID, code: .noError, into: &self.out)
        HTTP2FrameEncoder.writePing(Self.drainPingData, ack: false, into: &self.out)
        self.needsFlush = true
        self.flushIfOutsideReadCycle()
    }

    /// The drain's PING came back: the client has read the first GOAWAY, and every stream it
    /// opened before that has reached us. Name the last one.
    private func drainPingAcknowledged() {
        guard self.drainPhase == .awaitingPingAck else { return }
        self.drainPhase = .finalGoAwaySent
        self.goAwayLastStreamID = self.lastClientStreamID
        HTTP2FrameEncoder.writeGoAway(lastStreamID: self.lastClientStreamID, code: .noError, into: &self.out)
        self.needsFlush = true
        self.flushIfOutsideReadCycle()
        self.succeedDrainIfIdle()
    }

    /// While draining: succeeds the drain once no unary call is left and the last replies
    /// reached the socket (the member stops and closes connections right after).
    private func succeedDrainIfIdle() {
        guard let promise = self.drained, self.drainPhase == .finalGoAwaySent else { return }
        guard !self.streams.values.contains(where: \.isUnary) else { return }
        self.drained = nil
        guard let context = self.context else { return promise.succeed() }
        let written = context.eventLoop.makePromise(of: Void.self)
        self.writeOut(promise: written)
        self.needsFlush = false
        context.flush()
        written.futureResult.whenComplete { _ in promise.succeed() }
    }

    // MARK: - Cleanup

    private func cancel(_ s: Stream) {
        s.timeout?.cancel()
        s.timeout = nil
        self.pendingOutboundBytes -= s.outbound.dropAll(failing: ChannelError.ioOnClosedChannel)
        if !s.finished {
            s.finished = true
            if let bidi = s.bidi {
                s.bidi = nil
                bidi.cancelled()
            }
        }
    }

    private func cancelAll() {
        let all = self.streams
        self.streams.removeAll()
        self.h2.forgetWaiting()
        self.withheldCredit.removeAll()
        self.abandonedRunning.removeAll()
        self.bufferedInboundBytes = 0
        for s in all.values { self.cancel(s) }
        self.succeedDrainIfIdle()
    }
}

/// Header names and values the server compares requests with, as bytes.
enum GRPCHeaderNames {
    static let path = Array(":path".utf8)
    static let method = Array(":method".utf8)
    static let contentType = Array("content-type".utf8)
    static let timeout = Array("grpc-timeout".utf8)
    static let encoding = Array("grpc-encoding".utf8)
    static let post = Array("POST".utf8)
    static let identity = Array("identity".utf8)
    static let applicationGRPC = Array("application/grpc".utf8)
    static let applicationGRPCPlus = Array("application/grpc+".utf8)
    static let applicationGRPCSemicolon = Array("application/grpc;".utf8)
}

/// The header blocks of replies, HPACK-encoded once (static-table entries and literals that
/// leave the client's dynamic table alone).
enum GRPCHeaderBlocks {
    /// `:status: 200`, `content-type: application/grpc`.
    static let responseHeaders: ByteBuffer = {
        var b = ByteBuffer()
        HPACKEncoder.appendIndexed(8, into: &b)
        HPACKEncoder.appendLiteral(nameIndex: 31, value: "application/grpc".utf8, into: &b)
        return b
    }()

    /// `grpc-status: 0`.
    static let okTrailers: ByteBuffer = {
        var b = ByteBuffer()
        HPACKEncoder.appendLiteral(name: "grpc-status".utf8, value: "0".utf8, into: &b)
        return b
    }()

    static func trailers(_ status: GRPCStatus) -> ByteBuffer {
        var b = ByteBuffer()
        self.appendStatus(status, into: &b)
        return b
    }

    /// A whole answer in one block: HTTP status, content type and the gRPC status.
    static func trailersOnly(_ status: GRPCStatus, httpStatus: String?) -> ByteBuffer {
        var b = ByteBuffer()
        if let httpStatus {
            HPACKEncoder.appendLiteral(nameIndex: 8, value: httpStatus.utf8, into: &b)
        } else {
            HPACKEncoder.appendIndexed(8, into: &b)
        }
        HPACKEncoder.appendLiteral(nameIndex: 31, value: "application/grpc".utf8, into: &b)
        self.appendStatus(status, into: &b)
        return b
    }

    private static func appendStatus(_ status: GRPCStatus, into b: inout ByteBuffer) {
        HPACKEncoder.appendLiteral(name: "grpc-status".utf8, value: String(status.code.rawValue).utf8, into: &b)
        if !status.message.isEmpty {
            HPACKEncoder.appendLiteral(name: "grpc-message".utf8, value: GRPCMessageEncoding.percentEncode(status.message).utf8, into: &b)
        }
    }
}
