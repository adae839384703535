@testable import CairnGRPC
import GRPCTestClient
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Sends raw bytes on a new TCP connection and returns everything received until the server closes.
func exchange(
    port: Int, group: any EventLoopGroup, _ request: String, closingAfter limit: TimeAmount = .seconds(5)
) async throws -> String {
    let collector = ResponseCollector(promise: group.next().makePromise())
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
        }
        .connect(host: "127.0.0.1", port: port).get()
    if !request.isEmpty {
        try await channel.writeAndFlush(ByteBuffer(string: request))
    }
    // A server that never closes fails the test with what it sent instead of hanging it.
    let deadline = channel.eventLoop.scheduleTask(in: limit) { channel.close(promise: nil) }
    let bytes = try await collector.promise.futureResult.get()
    deadline.cancel()
    return String(decoding: bytes.readableBytesView, as: UTF8.self)
}

final class ResponseCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<ByteBuffer>
    let received = Mutex(ByteBuffer())
    init(promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        _ = self.received.withLock { $0.writeBuffer(&bytes) }
    }
    func channelInactive(context: ChannelHandlerContext) {
        self.promise.succeed(self.received.withLock { $0 })
    }
}

/// The status line, headers (without Date) and body of one HTTP response.
struct ParsedResponse {
    var statusLine: String
    var headers: [String]
    var body: String

    init(_ text: String) {
        let parts = text.split(separator: "\r\n\r\n", maxSplits: 1, omittingEmptySubsequences: false)
        let lines = parts[0].split(separator: "\r\n").map(String.init)
        self.statusLine = lines.first ?? ""
        self.headers = lines.dropFirst().filter { !$0.hasPrefix("date: ") && !$0.hasPrefix("Date: ") }.sorted()
        self.body = parts.count > 1 ? String(parts[1]) : ""
    }
}

let cors = [
    "Access-Control-Allow-Headers: accept, content-type, authorization",
    "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE",
    "Access-Control-Allow-Origin: *",
]

final class Health: Sendable {
    let healthy = Atomic<Bool>(true)
}

func etcdEndpoints(_ health: Health, clientPort: Bool = true) -> HTTPEndpoints {
    .etcd(
        health: { health.healthy.load(ordering: .relaxed) },
        version: { .init(server: "3.4.23", cluster: "3.4.0") },
        metrics: { Array("# TYPE cairn_up gauge\ncairn_up 1\n".utf8) },
        servesVersion: clientPort, addsCORSHeaders: clientPort)
}

func get(_ path: String, method: String = "GET", version: String = "1.1", host: Bool = true) -> String {
    "\(method) \(path) HTTP/\(version)\r\n" + (host ? "Host: x\r\n" : "") + (version == "1.1" ? "Connection: close\r\n" : "") + "\r\n"
}

@Suite(.timeLimit(.minutes(1)), .serialized) struct HTTPTests {
    @Test func etcdEndpointsOnTheClientPort() async throws {
        let health = Health()
        let server = try await TestServer.start(httpEndpoints: etcdEndpoints(health))
        let port = server.port
        let group = server.group

        let ok = ParsedResponse(try await exchange(port: port, group: group, get("/health")))
        #expect(ok.statusLine == "HTTP/1.1 200 OK")
        #expect(ok.headers == (cors + ["Connection: close", "Content-Length: 17", "Content-Type: text/plain; charset=utf-8"]).sorted())
        #expect(ok.body == #"{"health":"true"}"#)
        #expect(try await exchange(port: port, group: group, get("/health?serializable=true")).contains(#"{"health":"true"}"#))

        health.healthy.store(false, ordering: .relaxed)
        let sick = ParsedResponse(try await exchange(port: port, group: group, get("/health")))
        #expect(sick.statusLine == "HTTP/1.1 503 Service Unavailable")
        #expect(sick.headers.contains("X-Content-Type-Options: nosniff"))
        #expect(sick.body == "{\"health\":\"false\"}\n")

        let version = ParsedResponse(try await exchange(port: port, group: group, get("/version")))
        #expect(version.statusLine == "HTTP/1.1 200 OK")
        #expect(version.headers.contains("Content-Type: application/json"))
        #expect(version.body == #"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#)

        let metrics = ParsedResponse(try await exchange(port: port, group: group, get("/metrics", method: "POST")))
        #expect(metrics.statusLine == "HTTP/1.1 200 OK")
        #expect(metrics.headers.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"))
        #expect(metrics.body == "# TYPE cairn_up gauge\ncairn_up 1\n")

        let missing = ParsedResponse(try await exchange(port: port, group: group, get("/health/")))
        #expect(missing.statusLine == "HTTP/1.1 404 Not Found")
        #expect(missing.headers == (cors + [
            "Connection: close", "Content-Length: 19", "Content-Type: text/plain; charset=utf-8",
            "X-Content-Type-Options: nosniff",
        ]).sorted())
        #expect(missing.body == "404 page not found\n")

        for method in ["POST", "PUT"] {
            let refused = ParsedResponse(try await exchange(port: port, group: group, get("/health", method: method)))
            #expect(refused.statusLine == "HTTP/1.1 405 Method Not Allowed")
            #expect(refused.headers.contains("Allow: GET"))
            #expect(refused.body == "Method Not Allowed\n")
        }
        let head = ParsedResponse(try await exchange(port: port, group: group, get("/version", method: "HEAD")))
        #expect(head.statusLine == "HTTP/1.1 405 Method Not Allowed")
        #expect(head.body == "")

        // HTTP/1.0 gets a 1.0 answer and a close; HTTP/1.1 without Host gets Go's 400.
        let old = ParsedResponse(try await exchange(port: port, group: group, get("/version", version: "1.0", host: false)))
        #expect(old.statusLine == "HTTP/1.0 200 OK")
        let noHost = ParsedResponse(try await exchange(port: port, group: group, get("/health", host: false)))
        #expect(noHost.statusLine == "HTTP/1.1 400 Bad Request: missing required Host header")
        #expect(noHost.body == "400 Bad Request: missing required Host header")
        try await server.stop()
    }

    @Test func keepAliveServesSeveralRequests() async throws {
        let server = try await TestServer.start(httpEndpoints: etcdEndpoints(Health()))
        let text = try await exchange(
            port: server.port, group: server.group,
            "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(text.ranges(of: "HTTP/1.1 200 OK").count == 2)
        #expect(text.hasSuffix(#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#))
        try await server.stop()
    }

    @Test func garbageAndSilenceAreClosed() async throws {
        let server = try await TestServer.start(
            httpEndpoints: etcdEndpoints(Health()), protocolDetectionTimeout: .milliseconds(200))
        for garbage in ["garbage\r\n\r\n", "\u{0}\u{1}\u{2}\u{3}", " GET / HTTP/1.1\r\n\r\n", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"] {
            #expect(try await exchange(port: server.port, group: server.group, garbage).isEmpty, "\(garbage)")
        }
        try await server.stop()
    }

    @Test func badHTTP1Gets400() async throws {
        let server = try await TestServer.start(httpEndpoints: etcdEndpoints(Health()))
        // A method token followed by nonsense reaches NIOHTTP1, which answers 400 and closes.
        let start = ContinuousClock.now
        let bad = try await exchange(port: server.port, group: server.group, "GET \u{1}\u{2}\r\n\r\n")
        #expect(bad.hasPrefix("HTTP/1.1 400 Bad Request"))
        #expect(ContinuousClock.now - start < .seconds(4), "closed by the server, not by the test's deadline")
        try await server.stop()
    }

    @Test func silenceIsClosed() async throws {
        let server = try await TestServer.start(
            httpEndpoints: etcdEndpoints(Health()), protocolDetectionTimeout: .milliseconds(200))
        // Silent, and a preface prefix that never completes: closed by the detection timeout.
        #expect(try await exchange(port: server.port, group: server.group, "").isEmpty)
        #expect(try await exchange(port: server.port, group: server.group, "PRI * HT").isEmpty)
        // gRPC still works on the same server after all that.
        try await server.expectEchoWorks()
        try await server.stop()
    }

    @Test func grpcAndHTTPShareThePort() async throws {
        let server = try await TestServer.start(httpEndpoints: etcdEndpoints(Health()))
        let client = try await server.client()
        let r = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed(["ping"]))
        #expect(try r.messages() == ["ping"])
        #expect(ParsedResponse(try await exchange(port: server.port, group: server.group, get("/health"))).statusLine
            == "HTTP/1.1 200 OK")
        // The sniffer left the gRPC connection's pipeline.
        let channel = server.box.channels.withLock { $0[0] }
        let sniffers = try await channel.eventLoop.submit {
            (try? channel.pipeline.syncOperations.handler(type: ProtocolSniffingHandler.self)) != nil
        }.get()
        #expect(!sniffers)
        let again = try await client.unary(path: "/test.Echo/Unary", body: TestClient.framed(["pong"]))
        #expect(try again.messages() == ["pong"])
        try await client.channel.close()
        try await server.stop()
    }

    @Test func withoutEndpointsHTTPIsClosed() async throws {
        let server = try await TestServer.start()
        #expect(try await exchange(port: server.port, group: server.group, get("/health")).isEmpty)
        try await server.stop()
    }

    @Test func sniffingDecisions() {
        let preface = ProtocolSniffingHandler.http2Preface
        #expect(ProtocolSniffingHandler.decide(preface, http1Allowed: true) == .http2)
        #expect(ProtocolSniffingHandler.decide(Array(preface.prefix(3)), http1Allowed: true) == .undecided)
        #expect(ProtocolSniffingHandler.decide(Array("GET".utf8), http1Allowed: true) == .undecided)
        #expect(ProtocolSniffingHandler.decide(Array("GET ".utf8), http1Allowed: true) == .http1)
        #expect(ProtocolSniffingHandler.decide(Array("GET ".utf8), http1Allowed: false) == .reject)
        #expect(ProtocolSniffingHandler.decide(Array("get ".utf8), http1Allowed: true) == .reject)
        // "PRI" is a method token too: a PRI request that is not the preface goes to HTTP/1.
        #expect(ProtocolSniffingHandler.decide(Array("PRI * HTTP/1.1".utf8), http1Allowed: true) == .http1)
    }

    @Test func metricsListener() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await HTTPServer.start(
            host: "127.0.0.1", port: 0, group: group, endpoints: etcdEndpoints(Health(), clientPort: false))
        let port = server.port!
        let health = ParsedResponse(try await exchange(port: port, group: group, get("/health")))
        #expect(health.statusLine == "HTTP/1.1 200 OK")
        #expect(health.headers == ["Connection: close", "Content-Length: 17", "Content-Type: text/plain; charset=utf-8"])
        #expect(ParsedResponse(try await exchange(port: port, group: group, get("/metrics"))).body.contains("cairn_up 1"))
        // etcd's metrics port has no /version.
        #expect(ParsedResponse(try await exchange(port: port, group: group, get("/version"))).statusLine
            == "HTTP/1.1 404 Not Found")
        try await server.close()
        try await group.shutdownGracefully()
    }

    @Test func idleHTTP1ConnectionsAreClosed() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await HTTPServer.start(
            host: "127.0.0.1", port: 0, group: group, endpoints: etcdEndpoints(Health(), clientPort: false),
            idleTimeout: .milliseconds(200))
        let start = ContinuousClock.now
        // Half a request, then silence.
        #expect(try await exchange(port: server.port!, group: group, "GET /health HTTP/1.1\r\n").isEmpty)
        #expect(ContinuousClock.now - start < .seconds(4), "closed by the server, not by the test's deadline")
        try await server.close()
        try await group.shutdownGracefully()
    }
}
