import CairnGRPC
import CairnHTTP2
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

/// A client speaking raw HTTP/2 bytes to the connection handler on an embedded channel:
/// orderings a real client cannot be made to produce on demand.
final class RawClient {
    final class Calls: Sendable {
        let started = Mutex<[String]>([])
        let held = Mutex<[EventLoopPromise<ByteBuffer>]>([])
    }

    let calls = Calls()
    let channel = EmbeddedChannel()
    private var reader = HTTP2FrameReader(maxFrameBytes: HTTP2.maxAllowedFrameBytes)
    var started: [String] { calls.started.withLock { $0 } }

    init(configuration: GRPCServerConfiguration = GRPCServerConfiguration(), settings: [HTTP2Setting]? = []) throws {
        var router = GRPCRouter()
        router.register(service: "test.Echo", method: "Held", .unary { [calls] req, ctx in
            calls.started.withLock { $0.append(String(buffer: req)) }
            let p = ctx.eventLoop.makePromise(of: ByteBuffer.self)
            calls.held.withLock { $0.append(p) }
            return p.futureResult
        })
        router.register(service: "test.Echo", method: "Unary", .unary { req, ctx in ctx.eventLoop.makeSucceededFuture(req) })
        try channel.pipeline.syncOperations.addHandler(GRPCConnectionHandler(router: router, configuration: configuration))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        var hello = ByteBuffer(bytes: HTTP2.clientPreface)
        if let settings { HTTP2FrameEncoder.writeSettings(settings, into: &hello) }
        try send(hello)
    }

    func send(_ bytes: ByteBuffer) throws {
        try channel.writeInbound(bytes)
    }

    func send(_ build: (inout ByteBuffer) -> Void) throws {
        var b = ByteBuffer()
        build(&b)
        try send(b)
    }

    static func requestBlock(path: String) -> ByteBuffer {
        var b = ByteBuffer()
        HPACKEncoder.appendIndexed(3, into: &b)  // :method POST
        HPACKEncoder.appendIndexed(6, into: &b)  // :scheme http
        HPACKEncoder.appendLiteral(nameIndex: 4, value: path.utf8, into: &b)
        HPACKEncoder.appendLiteral(nameIndex: 1, value: "localhost".utf8, into: &b)
        HPACKEncoder.appendLiteral(nameIndex: 31, value: "application/grpc".utf8, into: &b)
        HPACKEncoder.appendLiteral(name: "te".utf8, value: "trailers".utf8, into: &b)
        return b
    }

    /// HEADERS and one DATA frame with a gRPC message, ending the stream.
    func call(_ id: UInt32, _ body: String, path: String = "/test.Echo/Held") throws {
        try send { b in
            HTTP2FrameEncoder.writeHeaders(streamID: id, block: Self.requestBlock(path: path), endStream: false, maxFrameBytes: 16384, into: &b)
            let message = Array(body.utf8)
            HTTP2FrameEncoder.writeDataHeader(streamID: id, length: 5 + message.count, endStream: true, into: &b)
            b.writeInteger(UInt8(0))
            b.writeInteger(UInt32(message.count))
            b.writeBytes(message)
        }
    }

    /// Frames the handler wrote, once queued flushes ran.
    func received() throws -> [(header: HTTP2FrameHeader, payload: ByteBuffer)] {
        channel.embeddedEventLoop.run()
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let b) = data else { continue }
            reader.append(b)
        }
        var out: [(HTTP2FrameHeader, ByteBuffer)] = []
        while let f = try reader.next() { out.append(f) }
        return out
    }

    func answerAll() {
        let held = calls.held.withLock { h in
            defer { h = [] }
            return h
        }
        for p in held { p.succeed(ByteBuffer(string: "ok")) }
    }

    /// Whether a drain's promise succeeded (read on the embedded loop).
    final class DrainWatch {
        var done = false
    }

    /// Asks the handler to drain; returns what it wrote (the first GOAWAY and its PING), the
    /// PING's data, and a watch on the drain's promise.
    func startDrain() throws -> (frames: [(header: HTTP2FrameHeader, payload: ByteBuffer)], ping: UInt64, watch: DrainWatch) {
        let drained = channel.eventLoop.makePromise(of: Void.self)
        let watch = DrainWatch()
        drained.futureResult.whenSuccess { watch.done = true }
        channel.pipeline.fireUserInboundEventTriggered(GRPCDrainRequest(promise: drained))
        let frames = try received()
        let ping = frames.last.flatMap { $0.payload.getInteger(at: $0.payload.readerIndex, as: UInt64.self) } ?? 0
        return (frames, ping, watch)
    }

    static func goAwayLastStream(_ f: (header: HTTP2FrameHeader, payload: ByteBuffer)) -> UInt32? {
        guard f.header.type == HTTP2.FrameType.goAway else { return nil }
        return f.payload.getInteger(at: f.payload.readerIndex, as: UInt32.self)
    }
}

@Suite struct DrainTests {
    /// A client may open a stream after the server's GOAWAY left but before the client read it
    /// (they cross on the wire). Such a stream must be either served or refused unprocessed;
    /// the connection must not fail with calls in flight (their writes would be applied
    /// without an answer, as seen under SIGTERM with 32 writers). The first GOAWAY names the
    /// largest id, so the crossed call is served; the drain ends after the PING round trip,
    /// the final GOAWAY naming the last stream, and every call answered.
    @Test func aStreamThatCrossesTheGoAwayIsServedAndTheDrainWaitsForIt() throws {
        let c = try RawClient()
        try c.call(1, "before")
        _ = try c.received()

        let (first, ping, drain) = try c.startDrain()
        #expect(first.map(\.header.type) == [HTTP2.FrameType.goAway, HTTP2.FrameType.ping], "GOAWAY, then PING")
        #expect(first.first.flatMap(RawClient.goAwayLastStream) == HTTP2.maxStreamID, "the first GOAWAY names the largest id: it refuses nothing")

        try c.call(3, "crossed")
        #expect(c.started == ["before", "crossed"], "a stream opened before the client read the GOAWAY is served")

        try c.send { HTTP2FrameEncoder.writePing(ping, ack: true, into: &$0) }
        let final = try c.received()
        #expect(final.count == 1)
        #expect(final.first.flatMap(RawClient.goAwayLastStream) == 3, "the final GOAWAY names the last stream started")
        #expect(!drain.done, "two calls are still in flight")

        c.answerAll()
        let replies = try c.received()
        for id: UInt32 in [1, 3] {
            #expect(replies.filter { $0.header.streamID == id }.map(\.header.type) == [HTTP2.FrameType.headers, HTTP2.FrameType.data, HTTP2.FrameType.headers])
        }
        #expect(drain.done, "drained once both calls were answered and their replies written")

        // A stream opened after the final GOAWAY (a client breaking the protocol) never runs.
        try c.call(5, "late")
        #expect(c.started == ["before", "crossed"])
        let refused = try c.received()
        #expect(refused.map(\.header.type) == [HTTP2.FrameType.rstStream])
        #expect(refused.first?.header.streamID == 5)
        #expect(refused.first.flatMap { $0.payload.getInteger(at: $0.payload.readerIndex, as: UInt32.self) } == HTTP2ErrorCode.refusedStream.rawValue)
        _ = try c.channel.finish(acceptAlreadyClosed: true)
    }

    /// The drain does not end before the PING's round trip, even with nothing in flight.
    @Test func anIdleConnectionDrainsAfterThePingRoundTrip() throws {
        let c = try RawClient()
        _ = try c.received()
        let (first, ping, drain) = try c.startDrain()
        #expect(!drain.done)
        #expect(first.map(\.header.type) == [HTTP2.FrameType.goAway, HTTP2.FrameType.ping])
        try c.send { HTTP2FrameEncoder.writePing(ping, ack: true, into: &$0) }
        let final = try c.received()
        #expect(final.first.flatMap(RawClient.goAwayLastStream) == 0, "no stream was started")
        #expect(drain.done)
        _ = try c.channel.finish(acceptAlreadyClosed: true)
    }
}
