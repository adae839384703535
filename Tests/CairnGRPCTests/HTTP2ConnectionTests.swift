import CairnGRPC
import CairnHTTP2
import NIOCore
import NIOEmbedded
import Testing

/// The server's HTTP/2 rules, driven by raw frames: protocol errors end the connection with
/// the right GOAWAY code, flow control holds replies back, limits refuse streams.
@Suite struct HTTP2ConnectionTests {
    /// The GOAWAY the server sent (its error code), and whether it closed the connection.
    static func goAwayCode(_ c: RawClient) throws -> HTTP2ErrorCode? {
        let frames = try c.received()
        guard let g = frames.last(where: { $0.header.type == HTTP2.FrameType.goAway }) else { return nil }
        return HTTP2ErrorCode(rawValue: g.payload.getInteger(at: g.payload.readerIndex + 4, as: UInt32.self)!)
    }

    static func frame(_ type: UInt8, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8]) -> ByteBuffer {
        var b = ByteBuffer()
        HTTP2FrameEncoder.writeHeader(HTTP2FrameHeader(length: payload.count, type: type, flags: flags, streamID: stream), into: &b)
        b.writeBytes(payload)
        return b
    }

    @Test func protocolErrorsEndTheConnectionWithGoAway() throws {
        let cases: [(String, [HTTP2Setting]?, ByteBuffer, HTTP2ErrorCode)] = [
            ("first frame not SETTINGS", nil, Self.frame(HTTP2.FrameType.ping, stream: 0, [UInt8](repeating: 0, count: 8)), .protocolError),
            ("DATA on an idle stream", [], Self.frame(HTTP2.FrameType.data, stream: 7, [1, 2, 3]), .protocolError),
            ("HEADERS on an even stream", [], Self.frame(HTTP2.FrameType.headers, flags: HTTP2.Flags.endHeaders, stream: 2, [0x82]), .protocolError),
            ("garbage header block", [], Self.frame(HTTP2.FrameType.headers, flags: HTTP2.Flags.endHeaders, stream: 1, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), .compressionError),
            ("connection window overflow", [], Self.frame(HTTP2.FrameType.windowUpdate, stream: 0, [0x7f, 0xff, 0xff, 0xff]), .flowControlError),
            ("zero connection WINDOW_UPDATE", [], Self.frame(HTTP2.FrameType.windowUpdate, stream: 0, [0, 0, 0, 0]), .protocolError),
            ("PING of 4 bytes", [], Self.frame(HTTP2.FrameType.ping, stream: 0, [0, 0, 0, 0]), .frameSizeError),
            ("frame above SETTINGS_MAX_FRAME_SIZE", [], Self.frame(HTTP2.FrameType.data, stream: 1, [UInt8](repeating: 0, count: 16_385)), .frameSizeError),
            ("CONTINUATION without HEADERS", [], Self.frame(HTTP2.FrameType.continuation, flags: HTTP2.Flags.endHeaders, stream: 1, [0x82]), .protocolError),
            ("PUSH_PROMISE from a client", [], Self.frame(HTTP2.FrameType.pushPromise, stream: 1, [0, 0, 0, 2]), .protocolError),
            ("SETTINGS_ENABLE_PUSH 2", [], Self.frame(HTTP2.FrameType.settings, stream: 0, [0, 2, 0, 0, 0, 2]), .protocolError),
            ("SETTINGS_INITIAL_WINDOW_SIZE 2^31", [], Self.frame(HTTP2.FrameType.settings, stream: 0, [0, 4, 0x80, 0, 0, 0]), .flowControlError),
        ]
        for (name, settings, bad, code) in cases {
            let c = try RawClient(settings: settings)
            _ = try c.received()
            try c.send(bad)
            #expect(try Self.goAwayCode(c) == code, "\(name)")
            c.channel.embeddedEventLoop.run()
            #expect(!c.channel.isActive, "\(name): the connection is closed")
            _ = try? c.channel.finish(acceptAlreadyClosed: true)
        }
    }

    @Test func aHeaderBlockGrowingWithoutEndIsCutOff() throws {
        let c = try RawClient()
        _ = try c.received()
        try c.send(Self.frame(HTTP2.FrameType.headers, stream: 1, [0x83]))
        for _ in 0..<8 { try c.send(Self.frame(HTTP2.FrameType.continuation, stream: 1, [UInt8](repeating: 0x82, count: 16_000))) }
        #expect(try Self.goAwayCode(c) == .enhanceYourCalm)
        _ = try? c.channel.finish(acceptAlreadyClosed: true)
    }

    @Test func aFloodOfPingsIsCalmed() throws {
        var config = GRPCServerConfiguration()
        config.maxControlFramesPerWindow = 10
        let c = try RawClient(configuration: config)
        _ = try c.received()
        for i in 0..<9 { try c.send { HTTP2FrameEncoder.writePing(UInt64(i), ack: false, into: &$0) } }
        let frames = try c.received()
        #expect(frames.filter { $0.header.type == HTTP2.FrameType.ping && $0.header.has(HTTP2.Flags.ack) }.count == 9)
        #expect(!frames.contains { $0.header.type == HTTP2.FrameType.goAway }, "the SETTINGS and 9 pings are within the limit")
        try c.send { HTTP2FrameEncoder.writePing(99, ack: false, into: &$0) }
        #expect(try Self.goAwayCode(c) == .enhanceYourCalm)
        _ = try? c.channel.finish(acceptAlreadyClosed: true)
    }

    /// The client's window of 10 bytes per stream: the reply goes out 10 bytes at a time, each
    /// after a WINDOW_UPDATE, the trailers last.
    @Test func repliesWaitForTheClientsWindow() throws {
        let c = try RawClient(settings: [HTTP2Setting(HTTP2.Setting.initialWindowSize, 10)])
        _ = try c.received()
        let body = String(repeating: "m", count: 33)
        try c.call(1, body, path: "/test.Echo/Unary")
        var got = try c.received().filter { $0.header.streamID == 1 }
        #expect(got.map(\.header.type) == [HTTP2.FrameType.headers, HTTP2.FrameType.data])
        #expect(got.last?.header.length == 10)
        var data = got.last!.payload
        for _ in 0..<2 {
            try c.send { HTTP2FrameEncoder.writeWindowUpdate(streamID: 1, increment: 10, into: &$0) }
            got = try c.received().filter { $0.header.streamID == 1 }
            #expect(got.map(\.header.type) == [HTTP2.FrameType.data])
            var p = got.last!.payload
            data.writeBuffer(&p)
        }
        try c.send { HTTP2FrameEncoder.writeWindowUpdate(streamID: 1, increment: 100, into: &$0) }
        got = try c.received().filter { $0.header.streamID == 1 }
        #expect(got.map(\.header.type) == [HTTP2.FrameType.data, HTTP2.FrameType.headers], "the last 8 bytes, then trailers")
        var last = got.first!.payload
        data.writeBuffer(&last)
        #expect(data.readableBytes == 5 + 33)
        #expect(String(buffer: data.getSlice(at: data.readerIndex + 5, length: 33)!) == body)
        _ = try? c.channel.finish(acceptAlreadyClosed: true)
    }

    @Test func streamsBeyondTheLimitAreRefused() throws {
        var config = GRPCServerConfiguration()
        config.maxConcurrentStreams = 2
        let c = try RawClient(configuration: config)
        _ = try c.received()
        try c.call(1, "a")
        try c.call(3, "b")
        try c.call(5, "c")
        let frames = try c.received()
        #expect(frames.map(\.header.type) == [HTTP2.FrameType.rstStream])
        #expect(frames.first?.header.streamID == 5)
        #expect(c.started == ["a", "b"])
        c.answerAll()
        _ = try c.received()
        try c.call(7, "d")
        #expect(c.started == ["a", "b", "d"], "room again once the first two are answered")
        _ = try? c.channel.finish(acceptAlreadyClosed: true)
    }

    /// Padding, a priority block, the request ended by trailers instead of END_STREAM on DATA.
    @Test func paddingPriorityAndRequestTrailers() throws {
        let c = try RawClient()
        _ = try c.received()
        var block = RawClient.requestBlock(path: "/test.Echo/Unary")
        var headers: [UInt8] = [3]  // pad length
        headers += [0, 0, 0, 0, 16]  // priority: dependency 0, weight 16
        headers += Array(block.readBytes(length: block.readableBytes)!)
        headers += [0, 0, 0]
        try c.send(Self.frame(HTTP2.FrameType.headers, flags: HTTP2.Flags.endHeaders | HTTP2.Flags.padded | HTTP2.Flags.priority, stream: 1, headers))
        let message: [UInt8] = [0, 0, 0, 0, 2] + Array("hi".utf8)
        try c.send(Self.frame(HTTP2.FrameType.data, flags: HTTP2.Flags.padded, stream: 1, [4] + message + [0, 0, 0, 0]))
        var trailers = ByteBuffer()
        HPACKEncoder.appendLiteral(name: "x-trailer".utf8, value: "1".utf8, into: &trailers)
        try c.send(Self.frame(HTTP2.FrameType.headers, flags: HTTP2.Flags.endHeaders | HTTP2.Flags.endStream, stream: 1, Array(trailers.readableBytesView)))
        let got = try c.received().filter { $0.header.streamID == 1 }
        #expect(got.map(\.header.type) == [HTTP2.FrameType.headers, HTTP2.FrameType.data, HTTP2.FrameType.headers])
        #expect(got.count == 3 && String(buffer: got[1].payload.getSlice(at: got[1].payload.readerIndex + 5, length: 2)!) == "hi")
        _ = try? c.channel.finish(acceptAlreadyClosed: true)
    }
}

/// The reviewer's cases: hostile input that must stay bounded.
@Suite struct HTTP2BoundsTests {
    /// A peer that always leaves the next frame one byte short at the end of each read: the
    /// reader keeps only what it has not returned (it grew by every byte before).
    @Test func aReaderFedNeverAlignedReadsStaysSmall() throws {
        var r = HTTP2FrameReader()
        var frame = ByteBuffer()
        HTTP2FrameEncoder.writeHeader(HTTP2FrameHeader(length: 16_000, type: 0xfa, flags: 0, streamID: 0), into: &frame)
        frame.writeBytes([UInt8](repeating: 1, count: 16_000))
        var stream = ByteBuffer()
        for _ in 0..<200 { stream.writeImmutableBuffer(frame) }
        var frames = 0
        var largest = 0
        while stream.readableBytes > 0 {
            // Reads of one frame's size, offset by one byte: every read ends inside a frame.
            r.append(stream.readSlice(length: min(stream.readableBytes, frame.readableBytes + (frames == 0 ? 1 : 0)))!)
            while try r.next() != nil { frames += 1 }
            largest = max(largest, r.storageBytes)
        }
        #expect(frames == 200)
        #expect(largest < 4 * frame.readableBytes, "held \(largest) bytes for frames of \(frame.readableBytes)")
    }

    @Test func aMessageDecoderFedPartialMessagesStaysSmall() throws {
        var d = GRPCMessageDecoder(maxMessageBytes: 1 << 20)
        let message = TestMessages.framed(String(repeating: "x", count: 1000))
        var stream = ByteBuffer()
        for _ in 0..<500 { stream.writeImmutableBuffer(message) }
        var got = 0
        var largest = 0
        while stream.readableBytes > 0 {
            d.append(stream.readSlice(length: min(stream.readableBytes, 1001))!)
            while try d.next() != nil { got += 1 }
            largest = max(largest, d.storageBytes)
        }
        #expect(got == 500)
        #expect(largest < 8 * message.readableBytes, "held \(largest) bytes for messages of \(message.readableBytes)")
    }

    /// HEADERS, END_STREAM and RST_STREAM, repeated: the reset calls still running count
    /// against the stream limit, so the server does not start calls without bound.
    @Test func rapidResetCannotExceedTheStreamLimit() throws {
        var config = GRPCServerConfiguration()
        config.maxConcurrentStreams = 4
        let c = try RawClient(configuration: config)
        _ = try c.received()
        var id: UInt32 = 1
        for _ in 0..<20 {
            try c.call(id, "r\(id)")
            try c.send { HTTP2FrameEncoder.writeRSTStream(streamID: id, code: .cancel, into: &$0) }
            id += 2
        }
        #expect(c.started.count == 4, "only 4 held calls may run: \(c.started.count) started")
        let refused = try c.received().filter { $0.header.type == HTTP2.FrameType.rstStream }
        #expect(refused.count == 16)
        c.answerAll()  // their handlers complete: room again
        try c.call(id, "after")
        #expect(c.started.last == "after")
        _ = try? c.channel.finish(acceptAlreadyClosed: true)
    }

    /// A client that never opens its window holds a reply only until the call's deadline.
    @Test func aReplyHeldByAClosedWindowIsDroppedAtTheDeadline() throws {
        let c = try RawClient(settings: [HTTP2Setting(HTTP2.Setting.initialWindowSize, 0)])
        _ = try c.received()
        var block = RawClient.requestBlock(path: "/test.Echo/Unary")
        HPACKEncoder.appendLiteral(name: "grpc-timeout".utf8, value: "50m".utf8, into: &block)
        try c.send { b in
            HTTP2FrameEncoder.writeHeaders(streamID: 1, block: block, endStream: false, maxFrameBytes: 16384, into: &b)
            HTTP2FrameEncoder.writeDataHeader(streamID: 1, length: 7, endStream: true, into: &b)
            b.writeBytes([0, 0, 0, 0, 2] + Array("hi".utf8))
        }
        let first = try c.received().filter { $0.header.streamID == 1 }
        #expect(first.map(\.header.type) == [HTTP2.FrameType.headers], "only the response headers: no window for the message")
        #expect(try c.channel.pipeline.syncOperations.handler(type: GRPCConnectionHandler.self).activeCallCount == 1)
        c.channel.embeddedEventLoop.advanceTime(by: .milliseconds(60))
        let after = try c.received().filter { $0.header.streamID == 1 }
        #expect(after.last?.header.type == HTTP2.FrameType.rstStream, "reset at the deadline: \(after.map(\.header.type))")
        #expect(try c.channel.pipeline.syncOperations.handler(type: GRPCConnectionHandler.self).activeCallCount == 0)
        _ = try? c.channel.finish(acceptAlreadyClosed: true)
    }

    /// A SETTINGS frame full of INITIAL_WINDOW_SIZE entries is applied once: the last value
    /// counts, as RFC 9113 orders.
    @Test func repeatedSettingsInOneFrameApplyTheLast() throws {
        let c = try RawClient(settings: [HTTP2Setting(HTTP2.Setting.initialWindowSize, 0)])
        _ = try c.received()
        try c.call(1, "abc", path: "/test.Echo/Unary")
        _ = try c.received()
        let many = (0..<2000).map { HTTP2Setting(HTTP2.Setting.initialWindowSize, UInt32($0 % 7)) } + [HTTP2Setting(HTTP2.Setting.initialWindowSize, 1000)]
        try c.send { HTTP2FrameEncoder.writeSettings(many, into: &$0) }
        let got = try c.received().filter { $0.header.streamID == 1 }
        #expect(got.map(\.header.type) == [HTTP2.FrameType.data, HTTP2.FrameType.headers], "the held reply goes once the window is 1000")
        _ = try? c.channel.finish(acceptAlreadyClosed: true)
    }
}

enum TestMessages {
    static func framed(_ s: String) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(UInt8(0))
        b.writeInteger(UInt32(s.utf8.count))
        b.writeString(s)
        return b
    }
}
