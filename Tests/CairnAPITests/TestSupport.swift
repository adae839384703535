// Copied from Tests/CairnGRPCTests/TestSupport.swift (client side only).
import CairnGRPC
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import Testing

/// What the test client saw on one stream.
struct StreamResponse: Sendable {
    var headers: [HPACKHeaders] = []
    var data = ByteBuffer()
    var reset: HTTP2ErrorCode?
    var ended = false

    var httpStatus: String? { self.headers.first?.first(name: ":status") }
    var grpcStatus: Int? { self.headers.last?.first(name: "grpc-status").flatMap { Int($0) } }
    var grpcMessage: String? {
        self.headers.last?.first(name: "grpc-message").map { GRPCMessageEncoding.percentDecode($0) }
    }

    /// Decoded response messages as raw bytes.
    func rawMessages() throws -> [ByteBuffer] {
        var decoder = GRPCMessageDecoder(maxMessageBytes: .max)
        decoder.append(self.data)
        var out: [ByteBuffer] = []
        while let m = try decoder.next() { out.append(m) }
        return out
    }

    /// Decoded response messages as strings.
    func messages() throws -> [String] {
        var decoder = GRPCMessageDecoder(maxMessageBytes: .max)
        decoder.append(self.data)
        var out: [String] = []
        while let m = try decoder.next() { out.append(String(buffer: m)) }
        #expect(!decoder.hasPartialMessage)
        return out
    }
}

/// Client-side frame collector on the HTTP/2 connection channel; credits every DATA frame at once.
final class ClientFrameHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    var responses: [HTTP2StreamID: StreamResponse] = [:]
    var waiters: [HTTP2StreamID: EventLoopPromise<StreamResponse>] = [:]
    var nextStreamID = HTTP2StreamID(1)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        var response = self.responses[frame.streamID] ?? StreamResponse()
        guard !response.ended else { return }
        switch frame.payload {
        case .headers(let h):
            response.headers.append(h.headers)
            response.ended = h.endStream
        case .data(let d):
            guard case .byteBuffer(var b) = d.data else { return }
            let n = b.readableBytes
            response.data.writeBuffer(&b)
            if n > 0 {
                context.write(self.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: n))), promise: nil)
                if !d.endStream {
                    context.write(self.wrapOutboundOut(HTTP2Frame(streamID: frame.streamID, payload: .windowUpdate(windowSizeIncrement: n))), promise: nil)
                }
                context.flush()
            }
            response.ended = d.endStream
        case .rstStream(let code):
            response.reset = code
            response.ended = true
        default:
            return
        }
        self.responses[frame.streamID] = response
        if response.ended, let waiter = self.waiters.removeValue(forKey: frame.streamID) {
            waiter.succeed(response)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {}

    func wait(for streamID: HTTP2StreamID, on eventLoop: any EventLoop) -> EventLoopFuture<StreamResponse> {
        if let r = self.responses[streamID], r.ended { return eventLoop.makeSucceededFuture(r) }
        let p = eventLoop.makePromise(of: StreamResponse.self)
        self.waiters[streamID] = p
        return p.futureResult
    }
}

/// A minimal HTTP/2 gRPC client for tests, written on `NIOHTTP2Handler(mode: .client)`.
struct TestClient: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<ClientFrameHandler>

    static func connect(port: Int, group: any EventLoopGroup) async throws -> TestClient {
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client))
                    try channel.pipeline.syncOperations.addHandler(ClientFrameHandler())
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ClientFrameHandler.self), eventLoop: channel.eventLoop)
        }.get()
        return TestClient(channel: channel, handler: handler)
    }

    /// Allocates the next client stream ID.
    func newStream() async throws -> HTTP2StreamID {
        let h = self.handler
        return try await self.channel.eventLoop.submit {
            let id = h.value.nextStreamID
            h.value.nextStreamID = HTTP2StreamID(Int(id) + 2)
            return id
        }.get()
    }

    static func requestHeaders(
        path: String, method: String = "POST", contentType: String = "application/grpc", extra: [(String, String)] = []
    ) -> HPACKHeaders {
        var h: HPACKHeaders = [
            ":method": method, ":scheme": "http", ":path": path, ":authority": "localhost",
            "content-type": contentType, "te": "trailers",
        ]
        for (k, v) in extra { h.add(name: k, value: v) }
        return h
    }

    static func framed(_ strings: [String]) -> ByteBuffer {
        var out = ByteBuffer()
        for s in strings { out.writeImmutableBuffer(GRPCMessageFraming.frame(ByteBuffer(string: s), allocator: .init())) }
        return out
    }

    /// Writes frames and flushes once.
    func send(_ frames: [HTTP2Frame]) async throws {
        let channel = self.channel
        try await channel.eventLoop.flatSubmit {
            let last = channel.eventLoop.makePromise(of: Void.self)
            for (i, f) in frames.enumerated() {
                channel.write(f, promise: i == frames.count - 1 ? last : nil)
            }
            channel.flush()
            return last.futureResult
        }.get()
    }

    func response(_ streamID: HTTP2StreamID) async throws -> StreamResponse {
        let h = self.handler
        let el = self.channel.eventLoop
        return try await el.flatSubmit { h.value.wait(for: streamID, on: el) }.get()
    }

    /// A unary call: headers, one DATA frame with `body` (already framed), end of stream.
    func unary(path: String, body: ByteBuffer, headers: HPACKHeaders? = nil) async throws -> StreamResponse {
        let id = try await self.newStream()
        try await self.send([
            HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers ?? Self.requestHeaders(path: path)))),
            HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body), endStream: true))),
        ])
        return try await self.response(id)
    }
}

