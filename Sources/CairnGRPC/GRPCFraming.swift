import CairnHTTP2
import NIOCore

/// Incremental decoder of gRPC length-prefixed messages (1-byte compressed flag + 4-byte big-endian length).
///
/// When a whole message lies within one appended buffer it is returned as a slice of that buffer
/// (no copy); only messages split across DATA frames are accumulated. Memory per stream is bounded
/// by `maxMessageBytes` plus one frame, because the length is checked as soon as the prefix arrives.
public struct GRPCMessageDecoder: Sendable {
    /// The largest accepted message payload (excluding the 5-byte prefix).
    public let maxMessageBytes: Int
    private var received = ReceiveBuffer()

    public init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// True when bytes of an incomplete message are buffered.
    public var hasPartialMessage: Bool { self.received.readableBytes > 0 }

    /// Appends received DATA frame bytes.
    public mutating func append(_ data: ByteBuffer) { self.received.append(data) }

    /// Bytes of an unfinished message held (and of messages not yet taken with `next`).
    public var bufferedBytes: Int { self.received.readableBytes }

    /// Bytes of storage held (tests).
    public var storageBytes: Int { self.received.storageBytes }

    /// Returns the next complete message, `nil` if more bytes are needed, or throws a `GRPCStatus`.
    ///
    /// A set compressed flag throws `INTERNAL` (no compression is ever negotiated by this server);
    /// an oversized length throws `RESOURCE_EXHAUSTED`.
    public mutating func next() throws(GRPCStatus) -> ByteBuffer? {
        guard self.received.readableBytes >= 5 else { return nil }
        let flag = self.received.integer(at: 0, as: UInt8.self)!
        let length = Int(self.received.integer(at: 1, as: UInt32.self)!)
        if flag != 0 {
            throw GRPCStatus(.internal, "grpc: compressed flag set with identity or empty encoding")
        }
        if length > self.maxMessageBytes {
            throw GRPCStatus(
                .resourceExhausted,
                "grpc: received message larger than max (\(length) vs. \(self.maxMessageBytes))")
        }
        guard var framed = self.received.take(5 + length) else { return nil }
        framed.moveReaderIndex(forwardBy: 5)
        return framed
    }
}

/// Encoding of outbound gRPC length-prefixed messages.
public enum GRPCMessageFraming {
    /// Returns `message` with the 5-byte uncompressed prefix, allocated from `allocator`.
    public static func frame(_ message: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: 5 + message.readableBytes)
        out.writeInteger(UInt8(0))
        out.writeInteger(UInt32(message.readableBytes))
        out.writeImmutableBuffer(message)
        return out
    }
}

/// Parsing of the `grpc-timeout` request header.
public enum GRPCTimeout {
    /// Parses `grpc-timeout` ("1-8 ASCII digits" followed by one of `H M S m u n`), or `nil` if malformed.
    public static func parse(_ value: String) -> TimeAmount? {
        let bytes = value.utf8
        guard bytes.count >= 2, bytes.count <= 9 else { return nil }
        var amount: Int64 = 0
        var digits = 0
        var unit: UInt8 = 0
        for (i, b) in bytes.enumerated() {
            if i == bytes.count - 1 {
                unit = b
            } else {
                guard b >= 0x30 && b <= 0x39 else { return nil }
                amount = amount * 10 + Int64(b - 0x30)
                digits += 1
            }
        }
        guard digits >= 1 else { return nil }
        switch unit {
        case UInt8(ascii: "H"): return .hours(amount)
        case UInt8(ascii: "M"): return .minutes(amount)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }
}
