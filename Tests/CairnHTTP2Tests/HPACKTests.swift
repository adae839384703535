import CairnHTTP2
import NIOCore
import Testing

private func bytes(_ hex: String) -> ByteBuffer {
    var out = ByteBuffer()
    var chars = Array(hex.utf8)[...]
    while chars.count >= 2 {
        out.writeInteger(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
        chars = chars.dropFirst(2)
    }
    return out
}

private func decode(_ d: inout HPACKDecoder, _ hex: String) throws -> [[String]] {
    var fields: [HPACKField] = []
    _ = try d.decode(bytes(hex), into: &fields)
    return fields.map { [String(decoding: $0.name, as: UTF8.self), String(decoding: $0.value, as: UTF8.self)] }
}

@Suite struct HPACKDecoderTests {
    /// RFC 7541 Appendix C.3: three requests sharing a dynamic table, no Huffman coding.
    @Test func rfcRequestsWithoutHuffman() throws {
        var d = HPACKDecoder()
        #expect(try decode(&d, "828684410f7777772e6578616d706c652e636f6d")
            == [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]])
        #expect(d.dynamicCount == 1)
        #expect(try decode(&d, "828684be58086e6f2d6361636865")
            == [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"], ["cache-control", "no-cache"]])
        #expect(try decode(&d, "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565")
            == [[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [":authority", "www.example.com"], ["custom-key", "custom-value"]])
        #expect(d.dynamicCount == 3)
    }

    /// RFC 7541 Appendix C.4: the same requests Huffman-coded (checks the code rebuilt from
    /// the lengths alone).
    @Test func rfcRequestsWithHuffman() throws {
        var d = HPACKDecoder()
        #expect(try decode(&d, "828684418cf1e3c2e5f23a6ba0ab90f4ff")
            == [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]])
        #expect(try decode(&d, "828684be5886a8eb10649cbf").last == ["cache-control", "no-cache"])
        #expect(try decode(&d, "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf").last == ["custom-key", "custom-value"])
    }

    /// Responses through a 256-byte table (a size update first), so entries are evicted; the
    /// blocks come from another HPACK implementation (python-hyper's hpack 4).
    @Test func evictionInASmallTable() throws {
        var d = HPACKDecoder()
        let date = "Mon, 21 Oct 2013 20:13:21 GMT"
        #expect(try decode(&d, "3fe101488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3")
            == [[":status", "302"], ["cache-control", "private"], ["date", date], ["location", "https://www.example.com"]])
        #expect(try decode(&d, "4883640effc1c0bf")
            == [[":status", "307"], ["cache-control", "private"], ["date", date], ["location", "https://www.example.com"]])
        let third = try decode(
            &d,
            "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007")
        #expect(third == [
            [":status", "200"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
            ["location", "https://www.example.com"], ["content-encoding", "gzip"],
            ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
        ])
        #expect(d.dynamicCount == 3, "the RFC's C.6.3 ends with three entries")
    }

    @Test func malformedBlocksAreErrors() {
        // Index 0, an index past the tables, a truncated integer and string, EOS inside a
        // Huffman string, padding that is not all ones, a size update above the limit and one
        // after a field.
        for hex in ["80", "ff00", "bf", "1f", "0003616263", "00038a", "0081ff", "0082fffffffc", "0081fe", "3fe21f", "823f"] {
            var d = HPACKDecoder()
            var fields: [HPACKField] = []
            #expect(throws: HPACKError.self, "\(hex)") { _ = try d.decode(bytes(hex), into: &fields) }
        }
    }

    @Test func oversizedListIsMeasuredButNotKept() throws {
        var d = HPACKDecoder()
        var fields: [HPACKField] = []
        var block = ByteBuffer()
        for i in 0..<10 { HPACKEncoder.appendLiteral(name: "k\(i)".utf8, value: String(repeating: "v", count: 100).utf8, into: &block) }
        let size = try d.decode(block, into: &fields, maxListBytes: 500)
        #expect(size == 10 * (2 + 100 + 32))
        #expect(fields.count == 3)
    }

    /// What our encoder writes, our decoder (and any other) reads back; it never indexes.
    @Test func encoderRoundTrip() throws {
        var block = ByteBuffer()
        let fields = [
            HPACKField(":status", "200"), HPACKField("content-type", "application/grpc"), HPACKField("grpc-status", "0"),
            HPACKField("grpc-message", String(repeating: "x", count: 300)),
        ]
        for f in fields { HPACKEncoder.append(f, into: &block) }
        var d = HPACKDecoder()
        var out: [HPACKField] = []
        _ = try d.decode(block, into: &out)
        #expect(out == fields)
        #expect(d.dynamicCount == 0)
    }
}

@Suite struct HTTP2FrameReaderTests {
    @Test func framesSplitAcrossReadsAndOversizedFrames() throws {
        var out = ByteBuffer()
        HTTP2FrameEncoder.writePing(42, ack: false, into: &out)
        HTTP2FrameEncoder.writeWindowUpdate(streamID: 3, increment: 1000, into: &out)
        var r = HTTP2FrameReader()
        var parts = out
        r.append(parts.readSlice(length: 5)!)
        #expect(try r.next() == nil)
        r.append(parts.readSlice(length: 12)!)
        let ping = try #require(try r.next())
        #expect(ping.header == HTTP2FrameHeader(length: 8, type: HTTP2.FrameType.ping, flags: 0, streamID: 0))
        #expect(ping.payload.getInteger(at: ping.payload.readerIndex, as: UInt64.self) == 42)
        #expect(try r.next() == nil)
        r.append(parts)
        let wu = try #require(try r.next())
        #expect(wu.header.streamID == 3)
        var big = ByteBuffer()
        HTTP2FrameEncoder.writeHeader(HTTP2FrameHeader(length: 16385, type: 0, flags: 0, streamID: 1), into: &big)
        r.append(big)
        #expect(throws: HTTP2ConnectionError.self) { _ = try r.next() }
    }

    @Test func headerBlocksSplitIntoContinuations() throws {
        var block = ByteBuffer()
        block.writeBytes([UInt8](repeating: 7, count: 40_000))
        var out = ByteBuffer()
        HTTP2FrameEncoder.writeHeaders(streamID: 5, block: block, endStream: true, maxFrameBytes: 16_384, into: &out)
        var r = HTTP2FrameReader()
        r.append(out)
        var frames: [HTTP2FrameHeader] = []
        while let f = try r.next() { frames.append(f.header) }
        #expect(frames.map(\.type) == [HTTP2.FrameType.headers, HTTP2.FrameType.continuation, HTTP2.FrameType.continuation])
        #expect(frames.map(\.length) == [16_384, 16_384, 40_000 - 32_768])
        #expect(frames.map(\.flags) == [HTTP2.Flags.endStream, 0, HTTP2.Flags.endHeaders])
    }
}

@Suite struct HTTP2OutboundStreamTests {
    /// An END_STREAM with no payload needs no window: it goes even when the stream's window is
    /// negative (a smaller SETTINGS_INITIAL_WINDOW_SIZE can put it there), as a 0-byte frame.
    @Test func anEmptyEndOfStreamGoesWithANegativeWindow() throws {
        var stream = HTTP2OutboundStream(sendWindow: -10)
        stream.append(.data(ByteBuffer(), endStream: true, nil))
        var connection = 100
        var out = ByteBuffer()
        let (outcome, sent) = stream.pump(
            streamID: 3, connectionWindow: &connection, maxFrameBytes: 16_384, copyLimit: 16_384, into: &out,
            flushOut: { _, _ in }, writeDirect: { _, _ in })
        guard case .ended = outcome else { Issue.record("expected the stream to end, got \(outcome)"); return }
        #expect(sent == 0)
        #expect(connection == 100 && stream.sendWindow == -10, "no window taken")
        var r = HTTP2FrameReader()
        r.append(out)
        let f = try #require(try r.next())
        #expect(f.header == HTTP2FrameHeader(length: 0, type: HTTP2.FrameType.data, flags: HTTP2.Flags.endStream, streamID: 3))
    }

    /// Data waits for window, is cut to the peer's frame size, and the trailers wait behind it.
    @Test func dataIsCutToWindowsAndFrameSize() throws {
        var stream = HTTP2OutboundStream(sendWindow: 25_000)
        var payload = ByteBuffer()
        payload.writeBytes([UInt8](repeating: 1, count: 40_000))
        stream.append(.data(payload, endStream: false, nil))
        stream.append(.headers(ByteBuffer(bytes: [0x88])))
        var connection = 1_000_000
        var out = ByteBuffer()
        let pump = { (s: inout HTTP2OutboundStream, c: inout Int, o: inout ByteBuffer) in
            s.pump(streamID: 1, connectionWindow: &c, maxFrameBytes: 16_384, copyLimit: 1 << 20, into: &o, flushOut: { _, _ in }, writeDirect: { _, _ in })
        }
        var result = pump(&stream, &connection, &out)
        guard case .blockedOnStream = result.outcome else { Issue.record("\(result.outcome)"); return }
        #expect(result.sent == 25_000)
        stream.sendWindow += 100_000
        result = pump(&stream, &connection, &out)
        guard case .ended = result.outcome else { Issue.record("\(result.outcome)"); return }
        var r = HTTP2FrameReader()
        r.append(out)
        var frames: [HTTP2FrameHeader] = []
        while let f = try r.next() { frames.append(f.header) }
        #expect(frames.map(\.length) == [16_384, 8_616, 15_000, 1])
        #expect(frames.last?.type == HTTP2.FrameType.headers)
        #expect(frames.last?.flags == HTTP2.Flags.endHeaders | HTTP2.Flags.endStream)
    }
}
