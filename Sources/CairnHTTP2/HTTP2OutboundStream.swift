import NIOCore

/// One stream's outbound side under HTTP/2 flow control: what waits for window, in order, and
/// the stream's send window. The connection owns the connection window and passes it in.
///
/// DATA is cut to the windows and to the peer's SETTINGS_MAX_FRAME_SIZE; HEADERS (trailers)
/// wait behind the DATA queued before them; an empty DATA frame that ends the stream needs no
/// window. A write promise completes once its last byte was handed to the channel's write.
public struct HTTP2OutboundStream {
    public enum Item {
        /// Payload bytes (a framed gRPC message or a piece of one); `endStream` on the last frame.
        case data(ByteBuffer, endStream: Bool, EventLoopPromise<Void>?)
        /// A header block (trailers); always ends the stream.
        case headers(ByteBuffer)
    }

    public enum Outcome {
        /// Nothing left to send.
        case drained
        /// Waiting for the stream's window (a WINDOW_UPDATE on it, or a larger initial window).
        case blockedOnStream
        /// Waiting for the connection's window.
        case blockedOnConnection
        /// The stream's last frame (END_STREAM) was written.
        case ended
    }

    public var sendWindow: Int
    public private(set) var items: [Item] = []
    /// DATA bytes queued.
    public private(set) var queuedBytes = 0

    public init(sendWindow: Int) { self.sendWindow = sendWindow }

    public var isEmpty: Bool { self.items.isEmpty }

    public mutating func append(_ item: Item) {
        if case .data(let b, _, _) = item { self.queuedBytes += b.readableBytes }
        self.items.append(item)
    }

    /// Drops everything queued, failing the write promises; returns the DATA bytes dropped.
    public mutating func dropAll(failing error: any Error) -> Int {
        for case .data(_, _, let promise?) in self.items { promise.fail(error) }
        let dropped = self.queuedBytes
        self.items = []
        self.queuedBytes = 0
        return dropped
    }

    /// Writes frames for what is queued, as far as the windows allow. Payload pieces up to
    /// `copyLimit` bytes are copied into `out`; larger ones go through `writeDirect` (after
    /// `flushOut`, which must write `out` first so the order holds). `sent` counts the DATA
    /// bytes that left the queue.
    public mutating func pump(
        streamID: UInt32, connectionWindow: inout Int, maxFrameBytes: Int, copyLimit: Int, into out: inout ByteBuffer,
        flushOut: (inout ByteBuffer, EventLoopPromise<Void>?) -> Void,
        writeDirect: (ByteBuffer, EventLoopPromise<Void>?) -> Void
    ) -> (outcome: Outcome, sent: Int) {
        var sent = 0
        while let first = self.items.first {
            switch first {
            case .headers(let block):
                self.items.removeFirst()
                HTTP2FrameEncoder.writeHeaders(streamID: streamID, block: block, endStream: true, maxFrameBytes: maxFrameBytes, into: &out)
                return (.ended, sent)
            case .data(var bytes, let endStream, let promise):
                // An empty frame (END_STREAM alone) needs no window, even a negative one (a
                // smaller SETTINGS_INITIAL_WINDOW_SIZE can push a window below zero).
                let n = bytes.readableBytes == 0 ? 0 : min(bytes.readableBytes, self.sendWindow, connectionWindow, maxFrameBytes)
                if n <= 0 && bytes.readableBytes > 0 {
                    return (self.sendWindow <= 0 ? .blockedOnStream : .blockedOnConnection, sent)
                }
                let chunk = bytes.readSlice(length: n)!
                self.sendWindow -= n
                connectionWindow -= n
                self.queuedBytes -= n
                sent += n
                let done = bytes.readableBytes == 0
                HTTP2FrameEncoder.writeDataHeader(streamID: streamID, length: n, endStream: done && endStream, into: &out)
                if n <= copyLimit {
                    out.writeImmutableBuffer(chunk)
                    if done, let promise { flushOut(&out, promise) }
                } else {
                    flushOut(&out, nil)
                    writeDirect(chunk, done ? promise : nil)
                }
                if done {
                    self.items.removeFirst()
                    if endStream { return (.ended, sent) }
                } else {
                    self.items[0] = .data(bytes, endStream: endStream, promise)
                }
            }
        }
        return (.drained, sent)
    }
}
