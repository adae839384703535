// The client side of gRPC over HTTP/2 (CairnHTTP2): every call is a stream on one connection,
// and one handler on the connection's channel reads and writes the bytes, as the server does.
import CairnGRPC
import CairnHTTP2
import Logging
import NIOCore
import Synchronization

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
    var streamID: UInt32?
    var decoder: GRPCMessageDecoder
    var sawResponseHeaders = false
    var closed = false
    /// Bytes received and consumed but not yet credited back to the server.
    var uncreditedBytes = 0
    /// The consumer asked for no more: credit waits for `resume`.
    var paused = false
    var deadlineTask: Scheduled<Void>?
    /// Request frames waiting for the server's windows.
    var outbound = HTTP2OutboundStream(sendWindow: 0)
    /// What the server may still send on this stream.
    var receiveWindow = 0
    /// When the call's deadline passes (sent as the time left when the stream opens).
    var deadline: NIODeadline?
    /// Opens the stream (again after REFUSED_STREAM); set by `start`.
    var open: ((ClientCall) -> Void)?
    /// The request as given to `start` when it was complete there (unary, server streaming):
    /// such a call may be sent again when the server refused its stream unprocessed.
    var completeRequest: ByteBuffer?
    var retries = 0
    /// END_STREAM queued (no more request messages) and written.
    var requestEnded = false
    var localEnded = false

    init(maxMessageBytes: Int, onMessage: @escaping (ByteBuffer) -> Bool, onClose: @escaping (GRPCStatus) -> Void) {
        self.decoder = GRPCMessageDecoder(maxMessageBytes: maxMessageBytes)
        self.onMessage = onMessage
        self.onClose = onClose
    }
}

/// Multiplexes calls over one HTTP/2 connection (RFC 9113, prior knowledge, no TLS yet).
///
/// All methods run on the channel's event loop. Request headers are HPACK-encoded without the
/// dynamic table (a block per path is built once); responses are decoded with `HPACKDecoder`.
/// Flow control: requests wait for the server's windows (per stream, in order); received bytes
/// are credited back once half a window is consumed (a stream's only while its consumer wants
/// more), so a busy download costs a WINDOW_UPDATE per half window, not one per DATA frame.
final class ClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = IOData

    /// The stream window we announce (SETTINGS_INITIAL_WINDOW_SIZE) and the connection window
    /// we raise to: a streaming response (Snapshot, Range of megabytes) flows without waiting
    /// for a round trip per 64 KiB.
    static let streamWindowBytes = 1 << 20
    static let connectionWindowBytes = 16 << 20
    static let maxHeaderListBytes = 1 << 20
    /// PING and SETTINGS frames accepted per second from the server. grpc-go servers (etcd)
    /// send a PING with each burst of DATA they receive to estimate the bandwidth-delay product,
    /// thousands per second on a busy connection; this bounds a server gone wrong.
    static let maxControlFramesPerSecond = 200_000
    /// Header blocks cached per request path (etcd's API has about forty methods).
    static let maxCachedPaths = 128

    private var context: ChannelHandlerContext?
    private var calls: [UInt32: ClientCall] = [:]
    private var nextStreamID: UInt32 = 1
    /// Calls waiting for the server's SETTINGS_MAX_CONCURRENT_STREAMS to leave room, in order.
    private var waitingToStart: [ClientCall] = []
    private var waitingHead = 0
    /// Set when the connection closed or the server sent GOAWAY: no new calls start here.
    private(set) var unusable: GRPCStatus?
    private let authority: String
    private let logger: Logger

    private var reader = HTTP2FrameReader(maxFrameBytes: HTTP2.defaultMaxFrameBytes)
    private var hpack = HPACKDecoder()
    /// Peer settings, connection windows, header blocks in progress, control-frame budget.
    private var h2 = HTTP2ConnectionState(
        receiveWindowTarget: ClientConnectionHandler.connectionWindowBytes,
        maxHeaderBlockBytes: 4 * ClientConnectionHandler.maxHeaderListBytes,
        maxControlFrames: ClientConnectionHandler.maxControlFramesPerSecond, controlWindow: .seconds(1))
    private var headerBlocks: [String: ByteBuffer] = [:]

    private var out = ByteBuffer()
    /// A connection error was found: nothing more is read.
    private var failed = false
    /// True between the first `channelRead` of a socket read and its `channelReadComplete`:
    /// writes made then (calls started from completions, window updates) are flushed once at
    /// the read's end instead of once each.
    private var inReadBurst = false

    /// Read from other threads: the connection takes no new calls (GOAWAY, stream ids used up).
    private let health: ClientConnectionHealth

    init(authority: String, health: ClientConnectionHealth, logger: Logger) {
        self.authority = authority
        self.health = health
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.out = context.channel.allocator.buffer(capacity: 4096)
        if context.channel.isActive { self.sendPreface(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.sendPreface(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    private var prefaceSent = false

    private func sendPreface(_ context: ChannelHandlerContext) {
        guard !self.prefaceSent else { return }
        self.prefaceSent = true
        self.out.writeBytes(HTTP2.clientPreface)
        HTTP2FrameEncoder.writeSettings(
            [
                HTTP2Setting(HTTP2.Setting.enablePush, 0),
                HTTP2Setting(HTTP2.Setting.initialWindowSize, UInt32(Self.streamWindowBytes)),
                HTTP2Setting(HTTP2.Setting.maxHeaderListSize, UInt32(Self.maxHeaderListBytes)),
            ], into: &self.out)
        self.h2.writeInitialWindowUpdate(into: &self.out)
        self.flush()
    }

    // MARK: - Calls

    /// Opens a stream for `call`: request headers, then `message` if given (ending the request
    /// stream when `endStream`), flushed; or queues it while the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS is reached. A deadline RSTs the stream and ends the call
    /// with DEADLINE_EXCEEDED. On an unusable connection the call fails on the next turn of the
    /// event loop (never inside this call).
    func start(
        _ call: ClientCall, path: String, timeout: Duration?, message: ByteBuffer?, endStream: Bool,
        metadata: [(String, String)]
    ) {
        guard let context = self.context, self.unusable == nil else {
            let status = self.unusable ?? GRPCStatus(.unavailable, "connection closed")
            call.closed = true
            if let loop = self.context?.eventLoop {
                loop.execute { call.onClose(status) }
            } else {
                call.onClose(status)
            }
            return
        }
        if let timeout {
            call.deadline = .now() + .nanoseconds(Self.nanoseconds(timeout))
            // The task runs on this event loop and is cancelled when the call ends.
            let bound = NIOLoopBound((self, call), eventLoop: context.eventLoop)
            call.deadlineTask = context.eventLoop.scheduleTask(in: .nanoseconds(Self.nanoseconds(timeout))) {
                let (handler, call) = bound.value
                handler.reset(call, status: GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
            }
        }
        if let message {
            call.outbound.append(.data(self.framed(message), endStream: endStream, nil))
            if endStream { call.completeRequest = message }
        }
        call.requestEnded = endStream
        let noBody = message == nil && endStream
        call.open = { [unowned self] call in
            self.open(call, path: path, noBody: noBody, metadata: metadata)
        }
        if self.calls.count >= self.h2.peerMaxConcurrentStreams {
            self.waitingToStart.append(call)
        } else {
            self.open(call)
        }
    }

    private func open(_ call: ClientCall) {
        call.open?(call)
    }

    private func open(_ call: ClientCall, path: String, noBody: Bool, metadata: [(String, String)]) {
        guard !call.closed else { return }
        guard self.nextStreamID <= HTTP2.maxStreamID - 2 else {
            // Stream ids used up: this connection takes no more calls; a new one will.
            self.markUnusable(GRPCStatus(.unavailable, "stream ids exhausted on this connection"))
            self.finish(call, GRPCStatus(.unavailable, "stream ids exhausted on this connection"))
            return
        }
        let id = self.nextStreamID
        self.nextStreamID += 2
        call.streamID = id
        call.outbound.sendWindow = self.h2.peerInitialWindow
        call.receiveWindow = Self.streamWindowBytes
        self.calls[id] = call
        var block = self.headerBlock(path)
        if let deadline = call.deadline {
            let left = max(deadline - .now(), .nanoseconds(1))
            HPACKEncoder.appendLiteral(name: "grpc-timeout".utf8, value: Self.encodeTimeout(.nanoseconds(left.nanoseconds)).utf8, into: &block)
        }
        for (name, value) in metadata { HPACKEncoder.appendLiteral(name: name.lowercased().utf8, value: value.utf8, into: &block) }
        HTTP2FrameEncoder.writeHeaders(streamID: id, block: block, endStream: noBody, maxFrameBytes: self.h2.peerMaxFrameBytes, into: &self.out)
        if noBody { call.localEnded = true }
        self.pump(call)
        self.flush()
    }

    /// `:method POST`, `:scheme http`, the path, the authority, `content-type`, `te`.
    private func headerBlock(_ path: String) -> ByteBuffer {
        if let cached = self.headerBlocks[path] { return cached }
        var b = ByteBuffer()
        HPACKEncoder.appendIndexed(3, into: &b)
        HPACKEncoder.appendIndexed(6, into: &b)
        HPACKEncoder.appendLiteral(nameIndex: 4, value: path.utf8, into: &b)
        HPACKEncoder.appendLiteral(nameIndex: 1, value: self.authority.utf8, into: &b)
        HPACKEncoder.appendLiteral(nameIndex: 31, value: "application/grpc".utf8, into: &b)
        HPACKEncoder.appendLiteral(name: "te".utf8, value: "trailers".utf8, into: &b)
        if self.headerBlocks.count < Self.maxCachedPaths { self.headerBlocks[path] = b }
        return b
    }

    private func framed(_ message: ByteBuffer) -> ByteBuffer {
        GRPCMessageFraming.frame(message, allocator: self.context?.channel.allocator ?? ByteBufferAllocator())
    }

    /// Sends one more request message (or only ends the request stream when `message` is nil).
    /// A call still waiting for a stream keeps them until it opens.
    func send(_ call: ClientCall, message: ByteBuffer?, endStream: Bool, promise: EventLoopPromise<Void>?) {
        guard self.context != nil, !call.closed else {
            promise?.fail(GRPCStatus(.unavailable, "stream closed"))
            return
        }
        guard !call.requestEnded else {
            promise?.fail(GRPCStatus(.internal, "the request stream was already ended"))
            return
        }
        call.requestEnded = endStream
        call.completeRequest = nil  // a stream that carried more than one message is not sent again
        call.outbound.append(.data(message.map(self.framed) ?? ByteBuffer(), endStream: endStream, promise))
        if call.streamID != nil {
            self.pump(call)
            self.flush()
        }
    }

    /// Ends `call` locally: RST_STREAM (CANCEL unless `code` says otherwise) to the server,
    /// `status` to the caller.
    func reset(_ call: ClientCall, status: GRPCStatus, code: HTTP2ErrorCode = .cancel) {
        guard !call.closed else { return }
        if let id = call.streamID {
            HTTP2FrameEncoder.writeRSTStream(streamID: id, code: code, into: &self.out)
            self.flush()
        }
        self.finish(call, status)
    }

    /// Credits what a paused call held back and lets its window open again.
    func resume(_ call: ClientCall) {
        call.paused = false
        guard !call.closed, call.streamID != nil else { return }
        if call.uncreditedBytes >= Self.streamWindowBytes / 2 {
            self.creditStream(call)
            self.flush()
        }
    }

    private func finish(_ call: ClientCall, _ status: GRPCStatus) {
        guard !call.closed else { return }
        call.closed = true
        call.deadlineTask?.cancel()
        call.deadlineTask = nil
        _ = call.outbound.dropAll(failing: status.code == .ok ? GRPCStatus(.unavailable, "stream closed") : status)
        call.open = nil
        if let id = call.streamID, self.calls.removeValue(forKey: id) != nil {
            self.startWaiting()
            self.closeIfDone()
        }
        call.onClose(status)
    }

    private func startWaiting() {
        while self.waitingHead < self.waitingToStart.count, self.calls.count < self.h2.peerMaxConcurrentStreams, self.unusable == nil {
            let call = self.waitingToStart[self.waitingHead]
            self.waitingHead += 1
            self.open(call)
        }
        if self.waitingHead == self.waitingToStart.count {
            self.waitingToStart.removeAll(keepingCapacity: true)
            self.waitingHead = 0
        } else if self.waitingHead > 1024 && self.waitingHead * 2 > self.waitingToStart.count {
            self.waitingToStart.removeFirst(self.waitingHead)
            self.waitingHead = 0
        }
    }

    /// Times a refused call is sent again, and the wait before the first retry (doubling).
    static let maxRetries = 5
    static let firstRetryDelay = TimeAmount.milliseconds(10)

    /// The server refused the stream unprocessed (REFUSED_STREAM: it may still count streams
    /// the client already reset, as Cairn's server does while their handlers run): a call whose
    /// whole request was known at start is queued again after a short wait, a few times at most
    /// and never past its deadline.
    private func retry(_ call: ClientCall) -> Bool {
        guard let request = call.completeRequest, call.retries < Self.maxRetries, self.unusable == nil,
            let id = call.streamID, let context = self.context
        else { return false }
        let delay = Self.firstRetryDelay * Int64(1 << call.retries)
        call.retries += 1
        self.calls.removeValue(forKey: id)
        call.streamID = nil
        call.sawResponseHeaders = false
        call.localEnded = false
        call.uncreditedBytes = 0
        call.decoder = GRPCMessageDecoder(maxMessageBytes: call.decoder.maxMessageBytes)
        _ = call.outbound.dropAll(failing: GRPCStatus(.unavailable, "stream refused"))
        call.outbound.append(.data(self.framed(request), endStream: true, nil))
        self.startWaiting()  // the slot it held
        let bound = NIOLoopBound((self, call), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: delay) {
            let (handler, call) = bound.value
            guard !call.closed else { return }
            guard handler.unusable == nil else { return handler.finish(call, handler.unusable!) }
            handler.waitingToStart.append(call)
            handler.startWaiting()
        }
        return true
    }

    /// No new calls start here; the connection closes once its calls are done, so that the
    /// next call dials a new one.
    private func markUnusable(_ status: GRPCStatus) {
        if self.unusable == nil {
            self.unusable = status
            self.health.markUnusable()
        }
        let waiting = self.waitingToStart[self.waitingHead...]
        self.waitingToStart = []
        self.waitingHead = 0
        for call in waiting { self.finish(call, status) }
        self.closeIfDone()
    }

    private func closeIfDone() {
        guard self.unusable != nil, self.calls.isEmpty, let context = self.context else { return }
        self.flush()
        context.close(promise: nil)
    }

    // MARK: - Output

    private func pump(_ call: ClientCall) {
        guard let id = call.streamID, !call.outbound.isEmpty else { return }
        let (outcome, _) = call.outbound.pump(
            streamID: id, connectionWindow: &self.h2.sendWindow, maxFrameBytes: self.h2.peerMaxFrameBytes,
            copyLimit: 16 << 10, into: &self.out,
            flushOut: { out, promise in self.writeOut(&out, promise: promise) },
            writeDirect: { bytes, promise in
                guard let context = self.context else {
                    promise?.fail(GRPCStatus(.unavailable, "connection closed"))
                    return
                }
                context.write(self.wrapOutboundOut(.byteBuffer(bytes)), promise: promise)
            })
        switch outcome {
        case .blockedOnConnection:
            self.h2.waitForWindow(id)
        case .ended:
            call.localEnded = true
        default:
            break
        }
    }

    private func pumpConnectionBlocked() {
        for id in self.h2.takeWaiting() {
            if let call = self.calls[id] { self.pump(call) }
        }
    }

    private func writeOut(_ out: inout ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let context = self.context else {
            promise?.fail(GRPCStatus(.unavailable, "connection closed"))
            return
        }
        context.write(self.wrapOutboundOut(.byteBuffer(out)), promise: promise)
        out = context.channel.allocator.buffer(capacity: 4096)
    }

    /// Flushes now, or at the end of the current read burst.
    private func flush() {
        guard !self.inReadBurst, let context = self.context else { return }
        if self.out.readableBytes > 0 { self.writeOut(&self.out, promise: nil) }
        context.flush()
    }

    // MARK: - Input

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.inReadBurst = true
        self.reader.append(self.unwrapInboundIn(data))
        do throws(HTTP2ConnectionError) {
            while !self.failed, let (header, payload) = try self.reader.next() {
                try self.process(header, payload)
            }
        } catch {
            self.connectionError(error)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.inReadBurst = false
        self.flush()
        context.fireChannelReadComplete()
    }

    private func process(_ h: HTTP2FrameHeader, _ payload: ByteBuffer) throws(HTTP2ConnectionError) {
        if self.h2.expectsContinuation {
            if let block = try self.h2.headerFragment(h, payload) {
                try self.headerBlock(streamID: block.streamID, block.block, endStream: block.endStream)
            }
            return
        }
        switch h.type {
        case HTTP2.FrameType.data:
            try self.data(h, payload)
        case HTTP2.FrameType.headers:
            guard h.streamID != 0 else { throw HTTP2ConnectionError(.protocolError, "HEADERS on stream 0") }
            if let block = try self.h2.headerFragment(h, http2HeaderFragment(h, payload)) {
                try self.headerBlock(streamID: block.streamID, block.block, endStream: block.endStream)
            }
        case HTTP2.FrameType.rstStream:
            guard h.length == 4, h.streamID != 0 else { throw HTTP2ConnectionError(.protocolError, "malformed RST_STREAM") }
            guard let call = self.calls[h.streamID] else { return }
            let code = HTTP2ErrorCode(rawValue: payload.getInteger(at: payload.readerIndex, as: UInt32.self)!)
            let status: GRPCStatus
            switch code {
            case .refusedStream:
                if self.retry(call) { return }
                status = GRPCStatus(.unavailable, "stream refused by server")
            case .cancel: status = GRPCStatus(.cancelled, "stream cancelled by server")
            case .enhanceYourCalm, .flowControlError:
                status = GRPCStatus(.resourceExhausted, "stream terminated by RST_STREAM with error code: \(code)")
            case .inadequateSecurity:
                status = GRPCStatus(.permissionDenied, "stream terminated by RST_STREAM with error code: \(code)")
            default: status = GRPCStatus(.internal, "stream terminated by RST_STREAM with error code: \(code)")
            }
            self.finish(call, status)
        case HTTP2.FrameType.settings:
            try self.settings(h, payload)
        case HTTP2.FrameType.ping:
            guard h.streamID == 0, h.length == 8 else { throw HTTP2ConnectionError(.protocolError, "malformed PING") }
            if !h.has(HTTP2.Flags.ack) {
                try self.h2.countControlFrame()
                HTTP2FrameEncoder.writePing(payload.getInteger(at: payload.readerIndex, as: UInt64.self)!, ack: true, into: &self.out)
            }
        case HTTP2.FrameType.goAway:
            guard h.streamID == 0, h.length >= 8 else { throw HTTP2ConnectionError(.protocolError, "malformed GOAWAY") }
            let last = payload.getInteger(at: payload.readerIndex, as: UInt32.self)! & HTTP2.maxStreamID
            let code = HTTP2ErrorCode(rawValue: payload.getInteger(at: payload.readerIndex + 4, as: UInt32.self)!)
            for (id, call) in self.calls where id > last {
                self.finish(call, GRPCStatus(.unavailable, "stream refused by GOAWAY"))
            }
            self.markUnusable(GRPCStatus(.unavailable, "server sent GOAWAY (\(code))"))
        case HTTP2.FrameType.windowUpdate:
            guard h.length == 4 else { throw HTTP2ConnectionError(.frameSizeError, "WINDOW_UPDATE of \(h.length) bytes") }
            let increment = Int(payload.getInteger(at: payload.readerIndex, as: UInt32.self)! & 0x7fff_ffff)
            if h.streamID == 0 {
                try self.h2.windowUpdate(increment: increment)
                self.pumpConnectionBlocked()
            } else if let call = self.calls[h.streamID] {
                guard increment > 0, call.outbound.sendWindow + increment <= HTTP2.maxWindowBytes else {
                    return self.reset(call, status: GRPCStatus(.internal, "bad WINDOW_UPDATE from server"), code: .flowControlError)
                }
                call.outbound.sendWindow += increment
                self.pump(call)
            }
        case HTTP2.FrameType.pushPromise:
            throw HTTP2ConnectionError(.protocolError, "PUSH_PROMISE though push is disabled")
        case HTTP2.FrameType.continuation:
            throw HTTP2ConnectionError(.protocolError, "CONTINUATION without HEADERS")
        default:
            break  // PRIORITY and unknown frame types
        }
    }

    private func settings(_ h: HTTP2FrameHeader, _ payload: ByteBuffer) throws(HTTP2ConnectionError) {
        guard h.streamID == 0 else { throw HTTP2ConnectionError(.protocolError, "SETTINGS on a stream") }
        if h.has(HTTP2.Flags.ack) { return }
        try self.h2.countControlFrame()
        let delta = try self.h2.applySettings(payload, fromServer: true)
        if delta != 0 {
            for call in self.calls.values {
                call.outbound.sendWindow += delta
                guard call.outbound.sendWindow <= HTTP2.maxWindowBytes else {
                    throw HTTP2ConnectionError(.flowControlError, "stream window overflows")
                }
            }
            if delta > 0 { for call in Array(self.calls.values) { self.pump(call) } }
        }
        HTTP2FrameEncoder.writeSettingsAck(into: &self.out)
        self.startWaiting()
    }

    private func headerBlock(streamID: UInt32, _ block: ByteBuffer, endStream: Bool) throws(HTTP2ConnectionError) {
        var fields: [HPACKField] = []
        do { _ = try self.hpack.decode(block, into: &fields, maxListBytes: Self.maxHeaderListBytes) } catch {
            throw HTTP2ConnectionError(.compressionError, error.reason)
        }
        guard let call = self.calls[streamID] else { return }
        if !call.sawResponseHeaders {
            call.sawResponseHeaders = true
            if let status = fields.firstValue(":status".utf8).map({ String(decoding: $0, as: UTF8.self) }), status != "200" {
                self.reset(call, status: GRPCStatus(Self.codeForHTTPStatus(status), "unexpected HTTP status code received from server: \(status)"))
                return
            }
            if !endStream { return }
        }
        // Trailers (or trailers-only): the call's status.
        guard endStream else {
            // Trailers must end the stream; stop it.
            self.reset(call, status: GRPCStatus(.internal, "server sent trailers without ending the stream"), code: .protocolError)
            return
        }
        if !call.localEnded, let id = call.streamID {
            // The server answered before the request ended: tell it to stop reading (as grpc-go).
            HTTP2FrameEncoder.writeRSTStream(streamID: id, code: .noError, into: &self.out)
        }
        guard let code = fields.firstValue("grpc-status".utf8).flatMap({ Int(String(decoding: $0, as: UTF8.self)) }) else {
            self.finish(call, GRPCStatus(.internal, "server closed the stream without sending trailers"))
            return
        }
        let message = fields.firstValue("grpc-message".utf8).map { GRPCMessageEncoding.percentDecode(String(decoding: $0, as: UTF8.self)) } ?? ""
        if call.decoder.hasPartialMessage, code == 0 {
            self.finish(call, GRPCStatus(.internal, "server closed the stream inside a message"))
            return
        }
        self.finish(call, GRPCStatus(GRPCStatusCode(rawValue: code), message))
    }

    private func data(_ h: HTTP2FrameHeader, _ payload: ByteBuffer) throws(HTTP2ConnectionError) {
        guard h.streamID != 0 else { throw HTTP2ConnectionError(.protocolError, "DATA on stream 0") }
        let n = h.length
        // The connection window is always credited: each stream's window bounds what it holds.
        try self.h2.receivedData(length: n, into: &self.out)
        guard let call = self.calls[h.streamID] else { return }  // ended or reset: late data
        guard n <= call.receiveWindow else {
            return self.reset(call, status: GRPCStatus(.internal, "server sent beyond the stream's window"), code: .flowControlError)
        }
        call.receiveWindow -= n
        guard let bytes = http2Unpad(payload, flags: h.flags) else { throw HTTP2ConnectionError(.protocolError, "bad DATA padding") }
        call.decoder.append(bytes)
        do {
            while !call.closed, let message = try call.decoder.next() {
                if !call.onMessage(message) { call.paused = true }
            }
        } catch {
            self.reset(call, status: error)
            return
        }
        if call.closed { return }
        if h.has(HTTP2.Flags.endStream) {
            self.reset(call, status: GRPCStatus(.internal, "server closed the stream without sending trailers"), code: .noError)
            return
        }
        call.uncreditedBytes += n
        if !call.paused && call.uncreditedBytes >= Self.streamWindowBytes / 2 { self.creditStream(call) }
    }

    private func creditStream(_ call: ClientCall) {
        guard let id = call.streamID, call.uncreditedBytes > 0 else { return }
        HTTP2FrameEncoder.writeWindowUpdate(streamID: id, increment: call.uncreditedBytes, into: &self.out)
        call.receiveWindow += call.uncreditedBytes
        call.uncreditedBytes = 0
    }

    // MARK: - Connection end

    private func connectionError(_ error: HTTP2ConnectionError) {
        self.failed = true
        self.logger.debug("HTTP/2 connection error", metadata: ["error": "\(error)"])
        HTTP2FrameEncoder.writeGoAway(lastStreamID: 0, code: error.code, debug: error.reason, into: &self.out)
        self.inReadBurst = false
        self.flush()
        self.failAll(GRPCStatus(.internal, "connection error: \(error)"))
        self.context?.close(promise: nil)
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
        self.markUnusable(status)
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

/// Whether a connection still takes new calls, readable from any thread (the event loop sets it).
final class ClientConnectionHealth: Sendable {
    private let unusable = Atomic<Bool>(false)
    var isUsable: Bool { !self.unusable.load(ordering: .acquiring) }
    func markUnusable() { self.unusable.store(true, ordering: .releasing) }
}
