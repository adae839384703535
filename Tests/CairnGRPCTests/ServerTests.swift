import GRPCTestClient
import CairnGRPC
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import Testing

@Suite(.timeLimit(.minutes(1))) struct ServerTests {
    @Test func unaryEcho() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let r = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed(["ping"]))
        #expect(r.httpStatus == "200")
        #expect(r.headers.first?.first(name: "content-type") == "application/grpc")
        #expect(try r.messages() == ["ping"])
        #expect(r.grpcStatus == 0)
        #expect(r.headers.count == 2)  // response headers + trailers
        try await client.channel.close()
        try await server.stop()
    }

    @Test func unaryAsyncAndFailureStatus() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let r = try await client.unary(path: "/test.Echo/UnaryAsync", body: TestClient.framed(["async"]))
        #expect(try r.messages() == ["async"])
        #expect(r.grpcStatus == 0)
        let f = try await client.unary(path: "/test.Echo/Fail", body: TestClient.framed(["k"]))
        #expect(f.headers.count == 1)  // trailers-only
        #expect(f.grpcStatus == GRPCStatusCode.notFound.rawValue)
        #expect(f.headers[0].first(name: "grpc-message") == "no such key: %D0%BA%D0%BB%D1%8E%D1%87%25")
        #expect(f.grpcMessage == "no such key: ключ%")
        try await client.channel.close()
        try await server.stop()
    }

    /// A graceful stop's drain: GOAWAYs naming the largest id, then the last stream, and the drain completes only
    /// once the unary call in flight has been answered (which the client still receives).
    @Test func drainSendsGoAwayAndWaitsForTheUnaryCallInFlight() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let stream = try await client.newStream()
        try await client.send([
            HTTP2Frame(streamID: stream, payload: .headers(.init(headers: TestClient.requestHeaders(path: "/test.Echo/Held")))),
            HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(TestClient.framed(["late"])), endStream: true))),
        ])
        for _ in 0..<2000 where server.box.held.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(5)) }
        try #require(!server.box.held.withLock { $0.isEmpty }, "the held call reached the server")
        let channel = server.box.channels.withLock { $0[0] }
        let drained = channel.eventLoop.makePromise(of: Void.self)
        channel.pipeline.fireUserInboundEventTriggered(GRPCDrainRequest(promise: drained))
        // The GOAWAY arrives while the call is still held, so the drain cannot have completed.
        var goAways: [HTTP2StreamID] = []
        for _ in 0..<2000 where goAways.count < 2 {
            goAways = try await client.channel.eventLoop.submit { client.handler.value.goAways }.get()
            if goAways.count < 2 { try await Task.sleep(for: .milliseconds(5)) }
        }
        // The first names the largest id (refusing nothing that crosses it); after the PING's
        // round trip (NIOHTTP2's client answers it) the second names the last stream started.
        #expect(goAways == [.maxID, stream], "GOAWAY names the last stream the client started")
        let completedEarly = try await channel.eventLoop.submit {
            var done = false
            drained.futureResult.whenComplete { _ in done = true }
            return done
        }.get()
        #expect(!completedEarly, "the drain waits for the call in flight")
        // Answer the held call: the client gets its reply, and the drain completes.
        let held = server.box.held.withLock { $0[0] }
        held.succeed(TestClient.framed(["late"]).getSlice(at: 5, length: 4)!)
        let r = try await client.response(stream)
        #expect(r.grpcStatus == 0)
        #expect(try r.messages() == ["late"])
        try await drained.futureResult.get()
        try? await client.channel.close()  // (it may already be closed)
        try await server.stop()
    }

    @Test func concurrentStreamsOnOneConnection() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        var frames: [HTTP2Frame] = []
        var ids: [HTTP2StreamID] = []
        for i in 0..<100 {
            let id = try await client.newStream()
            ids.append(id)
            let path = i % 2 == 0 ? "/test.Echo/Unary" : "/test.Echo/UnaryAsync"
            frames.append(HTTP2Frame(streamID: id, payload: .headers(.init(headers: TestClient.requestHeaders(path: path)))))
        }
        for (i, id) in ids.enumerated() {
            frames.append(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(TestClient.framed(["m\(i)"])), endStream: true))))
        }
        try await client.send(frames)
        for (i, id) in ids.enumerated() {
            let r = try await client.response(id)
            #expect(try r.messages() == ["m\(i)"])
            #expect(r.grpcStatus == 0)
        }
        #expect(try await server.activeCalls() == 0)
        try await client.channel.close()
        try await server.stop()
    }

    @Test func messageSplitAcrossDataFrames() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let body = TestClient.framed([String(repeating: "a", count: 1000)])
        let id = try await client.newStream()
        var frames = [HTTP2Frame(streamID: id, payload: .headers(.init(headers: TestClient.requestHeaders(path: "/test.Echo/Unary"))))]
        var offset = 0
        for size in [3, 2, 500, 500] {  // splits the prefix itself, then the body
            let n = min(size, body.readableBytes - offset)
            frames.append(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body.getSlice(at: offset, length: n)!)))))
            offset += n
        }
        frames.append(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))))
        try await client.send(frames)
        let r = try await client.response(id)
        #expect(try r.messages() == [String(repeating: "a", count: 1000)])
        #expect(r.grpcStatus == 0)
        try await client.channel.close()
        try await server.stop()
    }

    @Test func largeUnaryExceedsInitialWindows() async throws {
        // 300 KB request: needs server WINDOW_UPDATEs on both the stream and the connection.
        let server = try await TestServer.start()
        let client = try await server.client()
        let big = String(repeating: "z", count: 300_000)
        let r = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed([big]))
        #expect(try r.messages() == [big])
        #expect(r.grpcStatus == 0)
        try await client.channel.close()
        try await server.stop()
    }

    @Test func severalMessagesInOneDataFrame() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let id = try await client.newStream()
        try await client.send([
            HTTP2Frame(streamID: id, payload: .headers(.init(headers: TestClient.requestHeaders(path: "/test.Echo/Bidi")))),
            HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(TestClient.framed(["one", "two", "three"])), endStream: true))),
        ])
        let r = try await client.response(id)
        #expect(try r.messages() == ["one", "two", "three"])
        #expect(r.grpcStatus == 0)
        try await client.channel.close()
        try await server.stop()
    }

    @Test func oversizedMessageIsResourceExhausted() async throws {
        let server = try await TestServer.start(maxReceiveMessageBytes: 1024)
        let client = try await server.client()
        let ok = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed([String(repeating: "x", count: 1024)]))
        #expect(ok.grpcStatus == 0)
        let r = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed([String(repeating: "x", count: 1025)]))
        #expect(r.grpcStatus == GRPCStatusCode.resourceExhausted.rawValue)
        #expect(r.grpcMessage == "grpc: received message larger than max (1025 vs. 1024)")
        #expect(try await server.activeCalls() == 0)
        try await client.channel.close()
        try await server.stop()
    }

    @Test func unknownServiceAndMethodAreUnimplemented() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let m = try await client.unary(path: "/test.Echo/Nope", body: TestClient.framed(["x"]))
        #expect(m.headers.count == 1)  // trailers-only
        #expect(m.httpStatus == "200")
        #expect(m.grpcStatus == GRPCStatusCode.unimplemented.rawValue)
        #expect(m.grpcMessage == "unknown method Nope for service test.Echo")
        let s = try await client.unary(path: "/other.Svc/Get", body: TestClient.framed(["x"]))
        #expect(s.grpcStatus == GRPCStatusCode.unimplemented.rawValue)
        #expect(s.grpcMessage == "unknown service other.Svc")
        // The connection still works afterwards.
        let ok = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed(["after"]))
        #expect(try ok.messages() == ["after"])
        try await client.channel.close()
        try await server.stop()
    }

    @Test func wrongContentTypeAndMethod() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let ct = try await client.unary(
            path: "/test.Echo/Unary", body: TestClient.framed(["x"]),
            headers: TestClient.requestHeaders(path: "/test.Echo/Unary", contentType: "application/json"))
        #expect(ct.httpStatus == "415")
        #expect(ct.grpcStatus == GRPCStatusCode.internal.rawValue)
        let get = try await client.unary(
            path: "/test.Echo/Unary", body: TestClient.framed(["x"]),
            headers: TestClient.requestHeaders(path: "/test.Echo/Unary", method: "PUT"))
        #expect(get.httpStatus == "405")
        let enc = try await client.unary(
            path: "/test.Echo/Unary", body: TestClient.framed(["x"]),
            headers: TestClient.requestHeaders(path: "/test.Echo/Unary", extra: [("grpc-encoding", "gzip")]))
        #expect(enc.grpcStatus == GRPCStatusCode.unimplemented.rawValue)
        var compressed = ByteBuffer(bytes: [1, 0, 0, 0, 1])
        compressed.writeString("x")
        let flag = try await client.unary(path: "/test.Echo/Unary", body: compressed)
        #expect(flag.grpcStatus == GRPCStatusCode.internal.rawValue)
        try await client.channel.close()
        try await server.stop()
    }

    @Test func grpcTimeoutHandling() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let bad = try await client.unary(
            path: "/test.Echo/Unary", body: TestClient.framed(["x"]),
            headers: TestClient.requestHeaders(path: "/test.Echo/Unary", extra: [("grpc-timeout", "12x")]))
        #expect(bad.grpcStatus == GRPCStatusCode.internal.rawValue)
        let good = try await client.unary(
            path: "/test.Echo/Unary", body: TestClient.framed(["x"]),
            headers: TestClient.requestHeaders(path: "/test.Echo/Unary", extra: [("grpc-timeout", "5S")]))
        #expect(good.grpcStatus == 0)
        let expired = try await client.unary(
            path: "/test.Echo/Never", body: TestClient.framed(["x"]),
            headers: TestClient.requestHeaders(path: "/test.Echo/Never", extra: [("grpc-timeout", "50m")]))
        #expect(expired.grpcStatus == GRPCStatusCode.deadlineExceeded.rawValue)
        #expect(try await server.activeCalls() == 0)
        try await client.channel.close()
        try await server.stop()
    }

    @Test func clientResetCleansUpState() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let id = try await client.newStream()
        try await client.send([
            HTTP2Frame(streamID: id, payload: .headers(.init(headers: TestClient.requestHeaders(path: "/test.Echo/Bidi")))),
            HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(TestClient.framed(["first"]))))),
        ])
        // A unary call on another stream whose answer proves the bidi headers were processed.
        _ = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed(["sync"]))
        #expect(try await server.activeCalls() == 1)
        try await client.send([HTTP2Frame(streamID: id, payload: .rstStream(.cancel))])
        var remaining = -1
        for _ in 0..<200 {
            remaining = try await server.activeCalls()
            if remaining == 0 { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(remaining == 0)
        #expect(server.box.cancellations.load(ordering: .relaxed) == 1)
        try await client.channel.close()
        try await server.stop()
    }

    @Test func connectionCloseCleansUpState() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let id = try await client.newStream()
        try await client.send([
            HTTP2Frame(streamID: id, payload: .headers(.init(headers: TestClient.requestHeaders(path: "/test.Echo/Bidi"))))
        ])
        _ = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed(["sync"]))
        #expect(try await server.activeCalls() == 1)
        try await client.channel.close()
        let conn = server.box.channels.withLock { $0[0] }
        try await conn.closeFuture.get()
        #expect(server.box.cancellations.load(ordering: .relaxed) == 1)
        try await server.stop()
    }

    @Test func bidiEchoThousandMessagesWithFlowControl() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let id = try await client.newStream()
        let payloads = (0..<1000).map { i in "msg-\(i)-" + String(repeating: "p", count: 200) }
        var frames = [HTTP2Frame(streamID: id, payload: .headers(.init(headers: TestClient.requestHeaders(path: "/test.Echo/Bidi"))))]
        for (i, p) in payloads.enumerated() {
            frames.append(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(TestClient.framed([p])), endStream: i == payloads.count - 1))))
        }
        // ~210 KB each way: > 64 KiB stream and connection windows in both directions.
        try await client.send(frames)
        let r = try await client.response(id)
        #expect(try r.messages() == payloads)
        #expect(r.data.readableBytes > 200_000)
        #expect(r.grpcStatus == 0)
        #expect(try await server.activeCalls() == 0)
        try await client.channel.close()
        try await server.stop()
    }

    @Test func garbageBytesCloseConnectionServerKeepsServing() async throws {
        let server = try await TestServer.start()
        let raw = try await ClientBootstrap(group: server.group).connect(host: "127.0.0.1", port: server.port).get()
        try await raw.writeAndFlush(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n\u{0}\u{1}garbage garbage garbage"))
        try await raw.closeFuture.get()  // server hung up
        let client = try await server.client()
        let r = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed(["still here"]))
        #expect(try r.messages() == ["still here"])
        try await client.channel.close()
        try await server.stop()
    }

    @Test func rejectedStreamsDoNotLeakConnectionWindow() async throws {
        // 40 rejected calls whose bodies (64 KB each, 2.5 MB total, > the 1 MiB connection window) are
        // partly dropped by NIOHTTP2Handler after the server resets the stream; the connection must stay usable.
        let server = try await TestServer.start()
        let client = try await server.client()
        let body = TestClient.framed([String(repeating: "q", count: 64_000)])
        for _ in 0..<40 {
            let id = try await client.newStream()
            try await client.send([
                HTTP2Frame(streamID: id, payload: .headers(.init(headers: TestClient.requestHeaders(path: "/test.Echo/Missing")))),
                HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body), endStream: true))),
            ])
            let r = try await client.response(id)
            #expect(r.grpcStatus == GRPCStatusCode.unimplemented.rawValue)
        }
        let big = String(repeating: "b", count: 900_000)
        let r = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed([big]))
        #expect(try r.messages() == [big])
        #expect(try await server.activeCalls() == 0)
        try await client.channel.close()
        try await server.stop()
    }
}
