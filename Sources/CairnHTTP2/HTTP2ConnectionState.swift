import NIOCore

/// The connection-level HTTP/2 state both ends keep alike: the peer's settings, the two
/// connection windows, header blocks spread over CONTINUATION frames, the streams waiting
/// for connection window, and the budget of control frames. Each endpoint keeps its streams
/// and decides what frames mean for them.
public struct HTTP2ConnectionState {
    public private(set) var peerInitialWindow = HTTP2.defaultWindowBytes
    public private(set) var peerMaxFrameBytes = HTTP2.defaultMaxFrameBytes
    public private(set) var peerMaxConcurrentStreams = Int.max
    /// What we may still send on the connection.
    public var sendWindow = HTTP2.defaultWindowBytes
    /// What the peer may still send us on the connection.
    public private(set) var receiveWindow = HTTP2.defaultWindowBytes
    /// The connection window we keep crediting back to (raised from 65,535 at start).
    public let receiveWindowTarget: Int
    /// Streams with data held back by the connection's send window, oldest first (each once).
    private var blocked: [UInt32] = []
    private var blockedSet: Set<UInt32> = []
    private var continuation: (streamID: UInt32, block: ByteBuffer, endStream: Bool)?
    private let maxHeaderBlockBytes: Int
    private let maxControlFrames: Int
    private let controlWindow: TimeAmount
    private var controlFrames = 0
    private var controlWindowStart = NIODeadline.now()

    public init(receiveWindowTarget: Int, maxHeaderBlockBytes: Int, maxControlFrames: Int, controlWindow: TimeAmount) {
        self.receiveWindowTarget = max(receiveWindowTarget, HTTP2.defaultWindowBytes)
        self.maxHeaderBlockBytes = maxHeaderBlockBytes
        self.maxControlFrames = maxControlFrames
        self.controlWindow = controlWindow
    }

    /// The WINDOW_UPDATE that raises the connection window to its target (part of the preface).
    public mutating func writeInitialWindowUpdate(into out: inout ByteBuffer) {
        let raise = self.receiveWindowTarget - self.receiveWindow
        guard raise > 0 else { return }
        HTTP2FrameEncoder.writeWindowUpdate(streamID: 0, increment: raise, into: &out)
        self.receiveWindow += raise
    }

    /// Counts one control frame; more than the budget within the window is ENHANCE_YOUR_CALM.
    public mutating func countControlFrame() throws(HTTP2ConnectionError) {
        self.controlFrames += 1
        guard self.controlFrames > self.maxControlFrames else { return }
        let now = NIODeadline.now()
        if now - self.controlWindowStart > self.controlWindow {
            self.controlWindowStart = now
            self.controlFrames = 1
            return
        }
        throw HTTP2ConnectionError(.enhanceYourCalm, "too many control frames")
    }

    /// DATA of `length` bytes (padding included) arrived: charges the connection window and,
    /// once half of it is used, writes the WINDOW_UPDATE that restores it (returns true then).
    @discardableResult
    public mutating func receivedData(length: Int, into out: inout ByteBuffer) throws(HTTP2ConnectionError) -> Bool {
        guard length <= self.receiveWindow else {
            throw HTTP2ConnectionError(.flowControlError, "DATA beyond the connection window")
        }
        self.receiveWindow -= length
        guard self.receiveWindow <= self.receiveWindowTarget / 2 else { return false }
        HTTP2FrameEncoder.writeWindowUpdate(streamID: 0, increment: self.receiveWindowTarget - self.receiveWindow, into: &out)
        self.receiveWindow = self.receiveWindowTarget
        return true
    }

    /// A connection WINDOW_UPDATE.
    public mutating func windowUpdate(increment: Int) throws(HTTP2ConnectionError) {
        guard increment > 0 else { throw HTTP2ConnectionError(.protocolError, "connection WINDOW_UPDATE of 0") }
        guard self.sendWindow + increment <= HTTP2.maxWindowBytes else {
            throw HTTP2ConnectionError(.flowControlError, "connection window overflows")
        }
        self.sendWindow += increment
    }

    /// Applies a (non-ACK) SETTINGS frame's payload. Returns by how much every stream's send
    /// window changes (SETTINGS_INITIAL_WINDOW_SIZE, the last value in the frame counting).
    /// `fromServer`: the peer is the server, which must never enable push (RFC 9113 §6.5.2).
    public mutating func applySettings(_ payload: ByteBuffer, fromServer: Bool = false) throws(HTTP2ConnectionError) -> Int {
        guard payload.readableBytes % 6 == 0 else {
            throw HTTP2ConnectionError(.frameSizeError, "SETTINGS of \(payload.readableBytes) bytes")
        }
        var p = payload
        var initialWindow: Int?
        while let id = p.readInteger(as: UInt16.self), let value = p.readInteger(as: UInt32.self) {
            switch id {
            case HTTP2.Setting.enablePush:
                guard value <= 1, !(fromServer && value != 0) else {
                    throw HTTP2ConnectionError(.protocolError, "SETTINGS_ENABLE_PUSH \(value)")
                }
            case HTTP2.Setting.initialWindowSize:
                guard value <= UInt32(HTTP2.maxWindowBytes) else {
                    throw HTTP2ConnectionError(.flowControlError, "SETTINGS_INITIAL_WINDOW_SIZE \(value)")
                }
                initialWindow = Int(value)
            case HTTP2.Setting.maxFrameSize:
                guard value >= UInt32(HTTP2.defaultMaxFrameBytes), value <= UInt32(HTTP2.maxAllowedFrameBytes) else {
                    throw HTTP2ConnectionError(.protocolError, "SETTINGS_MAX_FRAME_SIZE \(value)")
                }
                self.peerMaxFrameBytes = Int(value)
            case HTTP2.Setting.maxConcurrentStreams:
                self.peerMaxConcurrentStreams = Int(value)
            default:
                break  // HEADER_TABLE_SIZE: our encoders use no dynamic table. Others are advisory.
            }
        }
        guard let initialWindow else { return 0 }
        let delta = initialWindow - self.peerInitialWindow
        self.peerInitialWindow = initialWindow
        return delta
    }

    /// Starts or continues a header block. Returns the whole block once END_HEADERS arrived.
    /// Call it for HEADERS (its block already unpadded, priority fields skipped) and for every
    /// frame while `expectsContinuation`.
    public mutating func headerFragment(
        _ h: HTTP2FrameHeader, _ fragment: ByteBuffer
    ) throws(HTTP2ConnectionError) -> (streamID: UInt32, block: ByteBuffer, endStream: Bool)? {
        if var pending = self.continuation {
            self.continuation = nil  // `pending` then holds the block's only reference: appended in place
            guard h.type == HTTP2.FrameType.continuation, h.streamID == pending.streamID else {
                throw HTTP2ConnectionError(.protocolError, "expected CONTINUATION of stream \(pending.streamID)")
            }
            guard pending.block.readableBytes + fragment.readableBytes <= self.maxHeaderBlockBytes else {
                throw HTTP2ConnectionError(.enhanceYourCalm, "header block exceeds \(self.maxHeaderBlockBytes) bytes")
            }
            pending.block.writeImmutableBuffer(fragment)
            if h.has(HTTP2.Flags.endHeaders) { return pending }
            self.continuation = pending
            return nil
        }
        let endStream = h.has(HTTP2.Flags.endStream)
        if h.has(HTTP2.Flags.endHeaders) { return (h.streamID, fragment, endStream) }
        self.continuation = (h.streamID, fragment, endStream)
        return nil
    }

    /// A header block is open: the next frame must be its CONTINUATION.
    public var expectsContinuation: Bool { self.continuation != nil }

    /// Notes that `streamID` waits for connection window (listed once however often noted).
    public mutating func waitForWindow(_ streamID: UInt32) {
        if self.blockedSet.insert(streamID).inserted { self.blocked.append(streamID) }
    }

    /// The streams waiting for connection window, oldest first, once there is some; the list
    /// is emptied: a stream that finds the window used up again waits again (`waitForWindow`).
    public mutating func takeWaiting() -> [UInt32] {
        guard self.sendWindow > 0, !self.blocked.isEmpty else { return [] }
        defer {
            self.blocked = []
            self.blockedSet = []
        }
        return self.blocked
    }

    public mutating func forgetWaiting() {
        self.blocked.removeAll()
        self.blockedSet.removeAll()
    }
}

/// The HEADERS frame's header block fragment: padding removed, priority fields skipped.
public func http2HeaderFragment(_ h: HTTP2FrameHeader, _ payload: ByteBuffer) throws(HTTP2ConnectionError) -> ByteBuffer {
    guard var block = http2Unpad(payload, flags: h.flags) else {
        throw HTTP2ConnectionError(.protocolError, "HEADERS padding exceeds the payload")
    }
    if h.has(HTTP2.Flags.priority) {
        guard block.readSlice(length: 5) != nil else { throw HTTP2ConnectionError(.frameSizeError, "HEADERS priority truncated") }
    }
    return block
}
