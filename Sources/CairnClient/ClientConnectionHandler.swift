// The client side of gRPC over HTTP/2 (CairnHTTP2): every call is a stream on one connection,
// and one handler on the connection's channel reads and writes the bytes, as the server does.
import CairnGRPC
import CairnHTTP2
import Logging
import NIOCore

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
    var waitingForConnectionWindow = false
    /// What the server may still send on this stream.
    var receiveWindow = 0

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
    private var waitingToStart: [(ClientCall, start: (ClientCall) -> Void)] = []
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

    init(authority: String, logger: Logger) {
        self.authority = authority
        self.logger = logger
    }

    var activeCalls: Int { self.calls.count }

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
    /// stream when `endStream`), flushed. A deadline RSTs the stream and ends the call with
    /// DEADLINE_EXCEEDED.
    func start(
        _ call: ClientCall, path: String, timeout: Duration?, message: ByteBuffer?, endStream: Bool,
        metadata: [(String, String)]
    ) {
        guard let context = self.context, self.unusable == nil, self.nextStreamID < HTTP2.maxStreamID else {
            call.closed = true
            call.onClose(self.unusable ?? GRPCStatus(.unavailable, "connection closed"))
            return
        }
        if let timeout {
            // The task runs on this event loop and is cancelled when the call ends.
            let bound = NIOLoopBound((self, call), eventLoop: context.eventLoop)
            call.deadlineTask = context.eventLoop.scheduleTask(in: .nanoseconds(Self.nanoseconds(timeout))) {
                let (handler, call) = bound.value
                handler.reset(call, status: GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
            }
        }
        let open: (ClientCall) -> Void = { [unowned self] call in
            self.open(call, path: path, timeout: timeout, message: message, endStream: endStream, metadata: metadata)
        }
        if self.calls.count >= self.h2.peerMaxConcurrentStreams {
            self.waitingToStart.append((call, open))
        } else {
            open(call)
        }
    }

    private func open(
        _ call: ClientCall, path: String, timeout: Duration?, message: ByteBuffer?, endStream: Bool,
        metadata: [(String, String)]
    ) {
        guard !call.closed else { return }
        let id = self.nextStreamID
        self.nextStreamID += 2
        call.streamID = id
        call.outbound = HTTP2OutboundStream(sendWindow: self.h2.peerInitialWindow)
        call.receiveWindow = Self.streamWindowBytes
        self.calls[id] = call
        var block = self.headerBlock(path)
        if let timeout {
            HPACKEncoder.appendLiteral(name: "grpc-timeout".utf8, value: Self.encodeTimeout(timeout).utf8, into: &block)
        }
        for (name, value) in metadata { HPACKEncoder.appendLiteral(name: name.lowercased().utf8, value: value.utf8, into: &block) }
        let noBody = message == nil && endStream
        HTTP2FrameEncoder.writeHeaders(streamID: id, block: block, endStream: noBody, maxFrameBytes: self.h2.peerMaxFrameBytes, into: &self.out)
        if let message {
            call.outbound.append(.data(self.framed(message), endStream: endStream, nil))
            self.pump(call)
        }
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
    func send(_ call: ClientCall, message: ByteBuffer?, endStream: Bool, promise: EventLoopPromise<Void>?) {
        guard self.context != nil, call.streamID != nil, !call.closed else {
            promise?.fail(GRPCStatus(.unavailable, "stream closed"))
            return
        }
        call.outbound.append(.data(message.map(self.framed) ?? ByteBuffer(), endStream: endStream, promise))
        self.pump(call)
        self.flush()
    }

    /// Ends `call` locally: RST_STREAM(CANCEL) to the server, `status` to the caller.
    func reset(_ call: ClientCall, status: GRPCStatus) {
        guard !call.closed else { return }
        if let id = call.streamID {
            HTTP2FrameEncoder.writeRSTStream(streamID: id, code: .cancel, into: &self.out)
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
        _ = call.outbound.dropAll(failing: status)
        if let id = call.streamID, self.calls.removeValue(forKey: id) != nil {
            self.startWaiting()
        }
        call.onClose(status)
    }

    private func startWaiting() {
        while !self.waitingToStart.isEmpty, self.calls.count < self.h2.peerMaxConcurrentStreams, self.unusable == nil {
            let (call, open) = self.waitingToStart.removeFirst()
            open(call)
        }
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
        if case .blockedOnConnection = outcome, !call.waitingForConnectionWindow {
            call.waitingForConnectionWindow = true
            self.h2.waitForWindow(id)
        }
    }

    private func pumpConnectionBlocked() {
        while let id = self.h2.nextWaiting() {
            guard let call = self.calls[id] else { continue }
            call.waitingForConnectionWindow = false
            self.pump(call)
            if call.waitingForConnectionWindow { break }
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
            case .refusedStream: status = GRPCStatus(.unavailable, "stream refused by server")
            case .cancel: status = GRPCStatus(.cancelled, "stream cancelled by server")
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
            if self.unusable == nil { self.unusable = GRPCStatus(.unavailable, "server sent GOAWAY (\(code))") }
            for (id, call) in self.calls where id > last {
                self.finish(call, GRPCStatus(.unavailable, "stream refused by GOAWAY"))
            }
            let waiting = self.waitingToStart
            self.waitingToStart = []
            for (call, _) in waiting { self.finish(call, GRPCStatus(.unavailable, "stream refused by GOAWAY")) }
        case HTTP2.FrameType.windowUpdate:
            guard h.length == 4 else { throw HTTP2ConnectionError(.frameSizeError, "WINDOW_UPDATE of \(h.length) bytes") }
            let increment = Int(payload.getInteger(at: payload.readerIndex, as: UInt32.self)! & 0x7fff_ffff)
            if h.streamID == 0 {
                try self.h2.windowUpdate(increment: increment)
                self.pumpConnectionBlocked()
            } else if let call = self.calls[h.streamID] {
                guard increment > 0, call.outbound.sendWindow + increment <= HTTP2.maxWindowBytes else {
                    return self.reset(call, status: GRPCStatus(.internal, "bad WINDOW_UPDATE from server"))
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
        let delta = try self.h2.applySettings(payload)
        if delta != 0 {
            for call in self.calls.values { call.outbound.sendWindow += delta }
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
        guard let code = fields.firstValue("grpc-status".utf8).flatMap({ Int(String(decoding: $0, as: UTF8.self)) }) else {
            self.finish(call, GRPCStatus(.internal, "server closed the stream without sending trailers"))
            return
        }
        let message = fields.firstValue("grpc-message".utf8).map { GRPCMessageEncoding.percentDecode(String(decoding: $0, as: UTF8.self)) } ?? ""
        if call.decoder.hasPartialMessage, code == 0 {
            self.finish(call, GRPCStatus(.internal, "server closed the stream inside a message"))
            return
        }
        if !endStream {
            // Trailers must end the stream; stop it.
            self.reset(call, status: GRPCStatus(.internal, "server sent trailers without ending the stream"))
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
            return self.reset(call, status: GRPCStatus(.internal, "server sent beyond the stream's window"))
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
            self.finish(call, GRPCStatus(.internal, "server closed the stream without sending trailers"))
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
        if self.unusable == nil { self.unusable = status }
        let waiting = self.waitingToStart
        self.waitingToStart = []
        for (call, _) in waiting { self.finish(call, status) }
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
