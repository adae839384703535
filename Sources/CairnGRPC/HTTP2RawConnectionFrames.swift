import NIOCore
import NIOHTTP2

/// Connection-level HTTP/2 frames (GOAWAY, PING) written to the socket past NIOHTTP2's
/// connection state machine: sent as a user outbound event from a handler after
/// `NIOHTTP2Handler`, written by ``HTTP2RawFrameWriter`` placed before it.
///
/// The graceful drain needs it: NIOHTTP2 (1.46) refuses every new stream once a GOAWAY went
/// through it, even one naming the largest stream id, and then treats the refused stream's DATA
/// as a connection error, which closes the connection with every call on it in flight. A
/// client opening a stream while the GOAWAY is on its way (they cross on the wire) would lose
/// its other calls. Written raw, the first GOAWAY leaves NIOHTTP2 serving such streams; the
/// final one, sent once no stream can still cross, goes through NIOHTTP2.
public struct HTTP2RawConnectionFrames: Sendable {
    public let bytes: ByteBuffer

    /// GOAWAY (type 0x7) on stream 0, without debug data.
    public static func goAway(lastStreamID: HTTP2StreamID, errorCode: HTTP2ErrorCode) -> ByteBuffer {
        var b = ByteBuffer()
        Self.writeHeader(into: &b, length: 8, type: 0x7, flags: 0)
        b.writeInteger(UInt32(Int32(lastStreamID)) & 0x7fff_ffff)
        b.writeInteger(UInt32(errorCode.networkCode))
        return b
    }

    /// PING (type 0x6) on stream 0, not an ACK, its 8 bytes of data `value` in network order (as
    /// `HTTP2PingData(withInteger: value)`; that type's own collection view shows 7 of them).
    public static func ping(_ value: UInt64) -> ByteBuffer {
        var b = ByteBuffer()
        Self.writeHeader(into: &b, length: 8, type: 0x6, flags: 0)
        b.writeInteger(value)
        return b
    }

    public init(_ bytes: ByteBuffer) { self.bytes = bytes }

    private static func writeHeader(into b: inout ByteBuffer, length: Int, type: UInt8, flags: UInt8) {
        b.writeInteger(UInt8(truncatingIfNeeded: length >> 16))
        b.writeInteger(UInt16(truncatingIfNeeded: length))
        b.writeInteger(type)
        b.writeInteger(flags)
        b.writeInteger(UInt32(0))  // stream 0
    }
}

/// Writes (and flushes) ``HTTP2RawConnectionFrames`` events as bytes; every other write passes through.
/// Sits between the socket and `NIOHTTP2Handler`, whose writes are whole frames, so the raw
/// frames never split one.
public final class HTTP2RawFrameWriter: ChannelOutboundHandler {
    public typealias OutboundIn = IOData
    public typealias OutboundOut = IOData

    public init() {}

    public func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if let frames = event as? HTTP2RawConnectionFrames {
            // Flushed here: NIOHTTP2Handler passes a flush on only when it wrote a frame itself.
            context.writeAndFlush(self.wrapOutboundOut(.byteBuffer(frames.bytes)), promise: promise)
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }
}
