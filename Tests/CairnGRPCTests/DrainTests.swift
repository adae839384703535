import CairnGRPC
import GRPCTestClient
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Synchronization
import Testing

/// The connection handler alone on an embedded channel, fed HTTP/2 frames directly: orderings a
/// real client cannot be made to produce on demand.
@Suite struct DrainTests {
    final class Calls: Sendable {
        let started = Mutex<[String]>([])
        let held = Mutex<[EventLoopPromise<ByteBuffer>]>([])
    }

    /// Stands where `HTTP2RawFrameWriter` is in a server: keeps the raw frames the handler sends.
    final class RawFrameCapture: ChannelOutboundHandler {
        typealias OutboundIn = HTTP2Frame
        var bytes = ByteBuffer()
        func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
            if var frames = (event as? HTTP2RawConnectionFrames)?.bytes { bytes.writeBuffer(&frames) }
            promise?.succeed()
        }

        /// The captured frames as (type, lastStreamID or ping data).
        func take() -> [(type: UInt8, value: UInt64)] {
            var out: [(UInt8, UInt64)] = []
            while let length = bytes.readInteger(as: UInt8.self).flatMap({ hi in bytes.readInteger(as: UInt16.self).map { Int(hi) << 16 | Int($0) } }),
                let type = bytes.readInteger(as: UInt8.self), let _ = bytes.readInteger(as: UInt8.self),
                let stream = bytes.readInteger(as: UInt32.self), stream == 0, length == 8,
                let value = bytes.readInteger(as: UInt64.self)
            {
                out.append((type, type == 0x7 ? value >> 32 : value))
            }
            return out
        }
    }

    final class Fixture {
        let calls = Calls()
        let channel = EmbeddedChannel()
        let raw = RawFrameCapture()
        var started: [String] { calls.started.withLock { $0 } }

        init() throws {
            var router = GRPCRouter()
            router.register(service: "test.Echo", method: "Held", .unary { [calls] req, ctx in
                calls.started.withLock { $0.append(String(buffer: req)) }
                let p = ctx.eventLoop.makePromise(of: ByteBuffer.self)
                calls.held.withLock { $0.append(p) }
                return p.futureResult
            })
            try channel.pipeline.syncOperations.addHandler(raw)
            try channel.pipeline.syncOperations.addHandler(
                GRPCConnectionHandler(router: router, configuration: GRPCServerConfiguration()))
        }

        func call(_ id: Int, _ body: String) throws {
            let stream = HTTP2StreamID(id)
            try channel.writeInbound(
                HTTP2Frame(streamID: stream, payload: .headers(.init(headers: TestClient.requestHeaders(path: "/test.Echo/Held")))))
            try channel.writeInbound(
                HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(TestClient.framed([body])), endStream: true))))
        }

        /// What the handler wrote, once queued flushes ran.
        func written() throws -> [HTTP2Frame] {
            channel.embeddedEventLoop.run()
            var out: [HTTP2Frame] = []
            while let f = try channel.readOutbound(as: HTTP2Frame.self) { out.append(f) }
            return out
        }

        func answerAll() {
            let held = calls.held.withLock { h in
                defer { h = [] }
                return h
            }
            for p in held { p.succeed(ByteBuffer(string: "ok")) }
        }
    }

    static func goAwayLastStream(_ f: HTTP2Frame) -> HTTP2StreamID? {
        if case .goAway(let last, .noError, _) = f.payload { return last }
        return nil
    }

    /// A client may open a stream after the server's GOAWAY left but before the client read it
    /// (they cross on the wire). Such a stream must be either served or refused unprocessed;
    /// the connection must not fail with calls in flight (their writes would be applied
    /// without an answer, as seen under SIGTERM with 32 writers). The first GOAWAY names the
    /// largest id, so the crossed call is served; the drain ends after the PING round trip,
    /// the final GOAWAY naming the last stream, and every call answered.
    @Test func aStreamThatCrossesTheGoAwayIsServedAndTheDrainWaitsForIt() throws {
        let fx = try Fixture()
        try fx.call(1, "before")
        _ = try fx.written()

        let drained = fx.channel.eventLoop.makePromise(of: Void.self)
        var done = false
        drained.futureResult.whenSuccess { done = true }
        fx.channel.pipeline.fireUserInboundEventTriggered(GRPCDrainRequest(promise: drained))
        #expect(try fx.written().isEmpty, "nothing through NIOHTTP2 yet")
        let first = fx.raw.take()
        #expect(first.map(\.type) == [0x7, 0x6], "GOAWAY, then PING, written raw: \(first)")
        #expect(first.first?.value == UInt64(Int32.max), "the first GOAWAY names the largest id: it refuses nothing")
        let ping = HTTP2PingData(withInteger: first.last?.value ?? 0)

        try fx.call(3, "crossed")
        #expect(fx.started == ["before", "crossed"], "a stream opened before the client read the GOAWAY is served")

        try fx.channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(ping, ack: true)))
        let final = try fx.written()
        #expect(final.count == 1)
        #expect(final.first.flatMap(Self.goAwayLastStream) == HTTP2StreamID(3), "the final GOAWAY names the last stream started")
        #expect(!done, "two calls are still in flight")

        fx.answerAll()
        let replies = try fx.written()
        #expect(replies.filter { $0.streamID == HTTP2StreamID(1) || $0.streamID == HTTP2StreamID(3) }.count == 6, "headers, message, trailers for each: \(replies)")
        // The streams close (NIOHTTP2 reports it once the trailers passed its flow control).
        for id in [1, 3] { fx.channel.pipeline.fireUserInboundEventTriggered(StreamClosedEvent(streamID: HTTP2StreamID(id), reason: nil)) }
        #expect(done, "drained once both calls were answered and their streams closed")

        // A stream opened after the final GOAWAY (a client breaking the protocol) never runs.
        try fx.call(5, "late")
        #expect(fx.started == ["before", "crossed"])
        let refused = try fx.written()
        if let f = refused.first, case .rstStream(.refusedStream) = f.payload {
            #expect(f.streamID == HTTP2StreamID(5))
        } else {
            Issue.record("expected RST_STREAM(REFUSED_STREAM), got \(refused)")
        }
        _ = try fx.channel.finish(acceptAlreadyClosed: true)
    }

    /// The drain does not end before the PING's round trip, even with nothing in flight.
    @Test func anIdleConnectionDrainsAfterThePingRoundTrip() throws {
        let fx = try Fixture()
        let drained = fx.channel.eventLoop.makePromise(of: Void.self)
        var done = false
        drained.futureResult.whenSuccess { done = true }
        fx.channel.pipeline.fireUserInboundEventTriggered(GRPCDrainRequest(promise: drained))
        let first = fx.raw.take()
        #expect(!done)
        #expect(first.map(\.type) == [0x7, 0x6])
        let ping = HTTP2PingData(withInteger: first.last?.value ?? 0)
        try fx.channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(ping, ack: true)))
        let final = try fx.written()
        #expect(final.first.flatMap(Self.goAwayLastStream) == .rootStream, "no stream was started")
        #expect(done)
        _ = try fx.channel.finish(acceptAlreadyClosed: true)
    }
}
