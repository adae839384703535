import GRPCTestClient
import CairnGRPC
import NIOCore
import Testing

@Suite struct FramingTests {
    @Test func wholeMessageIsSliceOfFrame() throws {
        let frame = TestClient.framed(["hello", "world"])
        var decoder = GRPCMessageDecoder(maxMessageBytes: 100)
        decoder.append(frame)
        let a = try #require(try decoder.next())
        let b = try #require(try decoder.next())
        #expect(try decoder.next() == nil)
        #expect(String(buffer: a) == "hello" && String(buffer: b) == "world")
        #expect(!decoder.hasPartialMessage)
        // Zero copy: the message bytes live in the frame's storage.
        let framePtr = frame.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
        let msgPtr = a.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
        #expect(msgPtr == framePtr + 5)
    }

    @Test func messageSplitAcrossManyFrames() throws {
        let frame = TestClient.framed(["split-message-payload", "x"])
        var decoder = GRPCMessageDecoder(maxMessageBytes: 100)
        var out: [String] = []
        for i in 0..<frame.readableBytes {  // one byte per "frame"
            decoder.append(frame.getSlice(at: i, length: 1)!)
            while let m = try decoder.next() { out.append(String(buffer: m)) }
        }
        #expect(out == ["split-message-payload", "x"])
        #expect(!decoder.hasPartialMessage)
    }

    @Test func emptyMessage() throws {
        var decoder = GRPCMessageDecoder(maxMessageBytes: 0)
        decoder.append(TestClient.framed([""]))
        let m = try #require(try decoder.next())
        #expect(m.readableBytes == 0)
    }

    @Test func compressedFlagRejected() {
        var decoder = GRPCMessageDecoder(maxMessageBytes: 100)
        decoder.append(ByteBuffer(bytes: [1, 0, 0, 0, 1, 0x41]))
        #expect(throws: GRPCStatus.self) { try decoder.next() }
        do { _ = try decoder.next() } catch { #expect(error.code == .internal) }
    }

    @Test func oversizedRejectedFromPrefixAlone() {
        var decoder = GRPCMessageDecoder(maxMessageBytes: 10)
        decoder.append(ByteBuffer(bytes: [0, 0, 0, 0, 11]))  // body not yet received
        do {
            _ = try decoder.next()
            Issue.record("expected RESOURCE_EXHAUSTED")
        } catch {
            #expect(error.code == .resourceExhausted)
            #expect(error.message == "grpc: received message larger than max (11 vs. 10)")
        }
    }

    @Test func timeoutParsing() {
        #expect(GRPCTimeout.parse("1H") == .hours(1))
        #expect(GRPCTimeout.parse("2M") == .minutes(2))
        #expect(GRPCTimeout.parse("3S") == .seconds(3))
        #expect(GRPCTimeout.parse("100m") == .milliseconds(100))
        #expect(GRPCTimeout.parse("5u") == .microseconds(5))
        #expect(GRPCTimeout.parse("99999999n") == .nanoseconds(99_999_999))
        #expect(GRPCTimeout.parse("123456789n") == nil)  // > 8 digits
        #expect(GRPCTimeout.parse("10") == nil)
        #expect(GRPCTimeout.parse("S") == nil)
        #expect(GRPCTimeout.parse("1x") == nil)
        #expect(GRPCTimeout.parse("-1S") == nil)
        #expect(GRPCTimeout.parse("") == nil)
    }

    @Test func percentEncoding() {
        #expect(GRPCMessageEncoding.percentEncode("plain text") == "plain text")
        #expect(GRPCMessageEncoding.percentEncode("50%\n") == "50%25%0A")
        #expect(GRPCMessageEncoding.percentEncode("ключ") == "%D0%BA%D0%BB%D1%8E%D1%87")
        #expect(GRPCMessageEncoding.percentDecode("%D0%BA%D0%BB%D1%8E%D1%87 50%25") == "ключ 50%")
    }
}
