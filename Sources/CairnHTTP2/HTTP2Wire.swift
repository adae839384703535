import NIOCore

/// HTTP/2's wire constants (RFC 9113): frame types, flags, error codes, settings.
///
/// Only what a gRPC endpoint needs: no server push, no priorities (PRIORITY frames and the
/// priority fields of HEADERS are read and ignored, as RFC 9113 allows).
public enum HTTP2 {
    /// The client connection preface, before the client's first SETTINGS frame.
    public static let clientPreface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// Bytes of every frame header: 24-bit length, type, flags, 31-bit stream id.
    public static let frameHeaderBytes = 9
    /// SETTINGS_MAX_FRAME_SIZE's initial (and smallest) value.
    public static let defaultMaxFrameBytes = 16_384
    /// The largest SETTINGS_MAX_FRAME_SIZE a peer may announce.
    public static let maxAllowedFrameBytes = (1 << 24) - 1
    /// Every flow-control window starts here (SETTINGS_INITIAL_WINDOW_SIZE's default; also the
    /// connection window, which only WINDOW_UPDATE changes).
    public static let defaultWindowBytes = 65_535
    /// A window may never exceed 2^31 - 1.
    public static let maxWindowBytes = Int(Int32.max)
    /// SETTINGS_HEADER_TABLE_SIZE's default: the HPACK dynamic table's size.
    public static let defaultHeaderTableBytes = 4_096
    /// The largest stream id.
    public static let maxStreamID: UInt32 = 0x7fff_ffff

    public enum FrameType {
        public static let data: UInt8 = 0x0
        public static let headers: UInt8 = 0x1
        public static let priority: UInt8 = 0x2
        public static let rstStream: UInt8 = 0x3
        public static let settings: UInt8 = 0x4
        public static let pushPromise: UInt8 = 0x5
        public static let ping: UInt8 = 0x6
        public static let goAway: UInt8 = 0x7
        public static let windowUpdate: UInt8 = 0x8
        public static let continuation: UInt8 = 0x9
    }

    public enum Flags {
        /// DATA, HEADERS.
        public static let endStream: UInt8 = 0x1
        /// SETTINGS, PING.
        public static let ack: UInt8 = 0x1
        /// HEADERS, CONTINUATION.
        public static let endHeaders: UInt8 = 0x4
        /// DATA, HEADERS.
        public static let padded: UInt8 = 0x8
        /// HEADERS.
        public static let priority: UInt8 = 0x20
    }

    public enum Setting {
        public static let headerTableSize: UInt16 = 0x1
        public static let enablePush: UInt16 = 0x2
        public static let maxConcurrentStreams: UInt16 = 0x3
        public static let initialWindowSize: UInt16 = 0x4
        public static let maxFrameSize: UInt16 = 0x5
        public static let maxHeaderListSize: UInt16 = 0x6
    }
}

/// An HTTP/2 error code (RST_STREAM, GOAWAY).
public struct HTTP2ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let noError = HTTP2ErrorCode(rawValue: 0x0)
    public static let protocolError = HTTP2ErrorCode(rawValue: 0x1)
    public static let internalError = HTTP2ErrorCode(rawValue: 0x2)
    public static let flowControlError = HTTP2ErrorCode(rawValue: 0x3)
    public static let settingsTimeout = HTTP2ErrorCode(rawValue: 0x4)
    public static let streamClosed = HTTP2ErrorCode(rawValue: 0x5)
    public static let frameSizeError = HTTP2ErrorCode(rawValue: 0x6)
    public static let refusedStream = HTTP2ErrorCode(rawValue: 0x7)
    public static let cancel = HTTP2ErrorCode(rawValue: 0x8)
    public static let compressionError = HTTP2ErrorCode(rawValue: 0x9)
    public static let connectError = HTTP2ErrorCode(rawValue: 0xa)
    public static let enhanceYourCalm = HTTP2ErrorCode(rawValue: 0xb)
    public static let inadequateSecurity = HTTP2ErrorCode(rawValue: 0xc)
    public static let http11Required = HTTP2ErrorCode(rawValue: 0xd)

    public var description: String {
        let names = [
            "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
            "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
        ]
        return Int(self.rawValue) < names.count ? names[Int(self.rawValue)] : "0x\(String(self.rawValue, radix: 16))"
    }
}

/// A connection error: the connection ends with GOAWAY carrying `code`.
public struct HTTP2ConnectionError: Error, Sendable, CustomStringConvertible {
    public var code: HTTP2ErrorCode
    public var reason: String
    public init(_ code: HTTP2ErrorCode, _ reason: String) {
        self.code = code
        self.reason = reason
    }
    public var description: String { "HTTP/2 connection error \(self.code): \(self.reason)" }
}

/// The 9-byte header of every frame.
public struct HTTP2FrameHeader: Sendable, Equatable {
    public var length: Int
    public var type: UInt8
    public var flags: UInt8
    public var streamID: UInt32

    public init(length: Int, type: UInt8, flags: UInt8, streamID: UInt32) {
        self.length = length
        self.type = type
        self.flags = flags
        self.streamID = streamID
    }

    public func has(_ flag: UInt8) -> Bool { self.flags & flag != 0 }
}

/// One SETTINGS parameter.
public struct HTTP2Setting: Sendable, Equatable {
    public var id: UInt16
    public var value: UInt32
    public init(_ id: UInt16, _ value: UInt32) {
        self.id = id
        self.value = value
    }
}

/// Writes frames into a `ByteBuffer`.
public enum HTTP2FrameEncoder {
    public static func writeHeader(_ h: HTTP2FrameHeader, into out: inout ByteBuffer) {
        precondition(h.length >= 0 && h.length <= HTTP2.maxAllowedFrameBytes && h.streamID <= HTTP2.maxStreamID)
        out.writeInteger(UInt8(truncatingIfNeeded: h.length >> 16))
        out.writeInteger(UInt16(truncatingIfNeeded: h.length))
        out.writeInteger(h.type)
        out.writeInteger(h.flags)
        out.writeInteger(h.streamID)
    }

    /// A header block as HEADERS (plus CONTINUATION frames when it exceeds `maxFrameBytes`).
    public static func writeHeaders(
        streamID: UInt32, block: ByteBuffer, endStream: Bool, maxFrameBytes: Int, into out: inout ByteBuffer
    ) {
        var rest = block
        var first = true
        repeat {
            let n = min(rest.readableBytes, maxFrameBytes)
            let chunk = rest.readSlice(length: n)!
            let last = rest.readableBytes == 0
            var flags: UInt8 = last ? HTTP2.Flags.endHeaders : 0
            if first && endStream { flags |= HTTP2.Flags.endStream }
            let type = first ? HTTP2.FrameType.headers : HTTP2.FrameType.continuation
            self.writeHeader(HTTP2FrameHeader(length: n, type: type, flags: flags, streamID: streamID), into: &out)
            out.writeImmutableBuffer(chunk)
            first = false
        } while rest.readableBytes > 0
    }

    /// The header of a DATA frame whose `length` payload bytes the caller writes next.
    public static func writeDataHeader(streamID: UInt32, length: Int, endStream: Bool, into out: inout ByteBuffer) {
        self.writeHeader(
            HTTP2FrameHeader(length: length, type: HTTP2.FrameType.data, flags: endStream ? HTTP2.Flags.endStream : 0, streamID: streamID),
            into: &out)
    }

    public static func writeSettings(_ settings: [HTTP2Setting], into out: inout ByteBuffer) {
        self.writeHeader(HTTP2FrameHeader(length: 6 * settings.count, type: HTTP2.FrameType.settings, flags: 0, streamID: 0), into: &out)
        for s in settings {
            out.writeInteger(s.id)
            out.writeInteger(s.value)
        }
    }

    public static func writeSettingsAck(into out: inout ByteBuffer) {
        self.writeHeader(HTTP2FrameHeader(length: 0, type: HTTP2.FrameType.settings, flags: HTTP2.Flags.ack, streamID: 0), into: &out)
    }

    public static func writePing(_ data: UInt64, ack: Bool, into out: inout ByteBuffer) {
        self.writeHeader(
            HTTP2FrameHeader(length: 8, type: HTTP2.FrameType.ping, flags: ack ? HTTP2.Flags.ack : 0, streamID: 0), into: &out)
        out.writeInteger(data)
    }

    public static func writeGoAway(lastStreamID: UInt32, code: HTTP2ErrorCode, debug: String = "", into out: inout ByteBuffer) {
        let debugBytes = Array(debug.utf8.prefix(256))
        self.writeHeader(
            HTTP2FrameHeader(length: 8 + debugBytes.count, type: HTTP2.FrameType.goAway, flags: 0, streamID: 0), into: &out)
        out.writeInteger(lastStreamID & HTTP2.maxStreamID)
        out.writeInteger(code.rawValue)
        out.writeBytes(debugBytes)
    }

    public static func writeRSTStream(streamID: UInt32, code: HTTP2ErrorCode, into out: inout ByteBuffer) {
        self.writeHeader(HTTP2FrameHeader(length: 4, type: HTTP2.FrameType.rstStream, flags: 0, streamID: streamID), into: &out)
        out.writeInteger(code.rawValue)
    }

    public static func writeWindowUpdate(streamID: UInt32, increment: Int, into out: inout ByteBuffer) {
        precondition(increment > 0 && increment <= HTTP2.maxWindowBytes)
        self.writeHeader(HTTP2FrameHeader(length: 4, type: HTTP2.FrameType.windowUpdate, flags: 0, streamID: streamID), into: &out)
        out.writeInteger(UInt32(increment))
    }
}

/// Bytes received and not yet consumed, for a parser that takes whole units (frames, gRPC
/// messages) from the front. A unit within one read is handed out as a slice of it (no copy);
/// an unfinished one is kept, and what was consumed before it is dropped when more arrives, so
/// the storage holds one unfinished unit plus the newest read however the sender cuts them (a
/// peer that always ended its reads inside a unit grew the storage without end).
public struct ReceiveBuffer: Sendable {
    private var buffer: ByteBuffer?

    public init() {}

    /// Bytes received and not yet taken.
    public var readableBytes: Int { self.buffer?.readableBytes ?? 0 }

    /// Bytes of storage held (tests).
    public var storageBytes: Int { self.buffer?.capacity ?? 0 }

    public mutating func append(_ bytes: ByteBuffer) {
        if var existing = self.buffer, existing.readableBytes > 0 {
            self.buffer = nil  // so the write below does not copy the storage
            if existing.readerIndex > 0 { existing.discardReadBytes() }
            existing.writeImmutableBuffer(bytes)
            self.buffer = existing
        } else {
            self.buffer = bytes
        }
    }

    /// An integer `offset` bytes past the first byte not yet taken, if that many arrived.
    public func integer<T: FixedWidthInteger>(at offset: Int, as: T.Type = T.self) -> T? {
        guard let b = self.buffer else { return nil }
        return b.getInteger(at: b.readerIndex + offset, as: T.self)
    }

    /// Takes the first `count` bytes once that many arrived.
    public mutating func take(_ count: Int) -> ByteBuffer? {
        guard var b = self.buffer, b.readableBytes >= count else { return nil }
        self.buffer = nil
        let out = b.readSlice(length: count)!
        if b.readableBytes > 0 { self.buffer = b }
        return out
    }
}

/// Cuts a byte stream into frames: accumulates what the socket delivers and returns each
/// complete frame (its header and its payload as a slice, no copy when a frame lies within
/// one read).
public struct HTTP2FrameReader: Sendable {
    /// Frames longer than this are a FRAME_SIZE_ERROR (our SETTINGS_MAX_FRAME_SIZE).
    public var maxFrameBytes: Int
    private var received = ReceiveBuffer()

    public init(maxFrameBytes: Int = HTTP2.defaultMaxFrameBytes) {
        self.maxFrameBytes = maxFrameBytes
    }

    public mutating func append(_ bytes: ByteBuffer) { self.received.append(bytes) }

    /// Bytes of storage held (tests: stays near one frame however the input is cut).
    public var storageBytes: Int { self.received.storageBytes }

    /// Takes `count` raw bytes (the client preface) once that many arrived.
    public mutating func readRaw(_ count: Int) -> ByteBuffer? { self.received.take(count) }

    /// The next complete frame, or nil when more bytes are needed.
    public mutating func next() throws(HTTP2ConnectionError) -> (header: HTTP2FrameHeader, payload: ByteBuffer)? {
        guard self.received.readableBytes >= HTTP2.frameHeaderBytes else { return nil }
        let length = Int(self.received.integer(at: 0, as: UInt8.self)!) << 16 | Int(self.received.integer(at: 1, as: UInt16.self)!)
        if length > self.maxFrameBytes {
            throw HTTP2ConnectionError(.frameSizeError, "frame of \(length) bytes exceeds SETTINGS_MAX_FRAME_SIZE \(self.maxFrameBytes)")
        }
        guard var frame = self.received.take(HTTP2.frameHeaderBytes + length) else { return nil }
        let header = HTTP2FrameHeader(
            length: length, type: frame.getInteger(at: frame.readerIndex + 3, as: UInt8.self)!,
            flags: frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self)!,
            streamID: frame.getInteger(at: frame.readerIndex + 5, as: UInt32.self)! & HTTP2.maxStreamID)
        frame.moveReaderIndex(forwardBy: HTTP2.frameHeaderBytes)
        return (header, frame)
    }
}

/// Removes DATA/HEADERS padding (RFC 9113 §6.1): the pad-length byte and the padding itself.
/// Returns the unpadded content, or nil when the padding is longer than the payload.
@inlinable
public func http2Unpad(_ payload: ByteBuffer, flags: UInt8) -> ByteBuffer? {
    guard flags & HTTP2.Flags.padded != 0 else { return payload }
    var p = payload
    guard let pad = p.readInteger(as: UInt8.self), Int(pad) <= p.readableBytes else { return nil }
    return p.readSlice(length: p.readableBytes - Int(pad))
}
