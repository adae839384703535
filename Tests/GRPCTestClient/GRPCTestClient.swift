// A minimal HTTP/2 gRPC client for tests of the gRPC transport and of the
// services on it: raw frames on the connection channel, every DATA frame
// credited at once, responses collected per stream.
import CairnGRPC
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

/// What the test client saw on one stream.
public struct StreamResponse: Sendable {
    public var headers: [HPACKHeaders] = []
    public var data = ByteBuffer()
    public var reset: HTTP2ErrorCode?
    public var ended = false

    public var httpStatus: String? { self.headers.first?.first(name: ":status") }
    public var grpcStatus: Int? { self.headers.last?.first(name: "grpc-status").flatMap { Int($0) } }
    public var grpcMessage: String? {
        self.headers.last?.first(name: "grpc-message").map { GRPCMessageEncoding.percentDecode($0) }
    }

    /// Decoded response messages as raw bytes.
    public func rawMessages() throws -> [ByteBuffer] {
        var decoder = GRPCMessageDecoder(maxMessageBytes: .max)
        decoder.append(self.data)
        var out: [ByteBuffer] = []
        while let m = try decoder.next() { out.append(m) }
        return out
    }

    /// Decoded response messages as strings.
    public func messages() throws -> [String] {
        var decoder = GRPCMessageDecoder(maxMessageBytes: .max)
        decoder.append(self.data)
        var out: [String] = []
        while let m = try decoder.next() { out.append(String(buffer: m)) }
        if decoder.hasPartialMessage { throw TestClientError.partialMessage }
        return out
    }
}

/// Client-side frame collector on the HTTP/2 connection channel; credits every DATA frame at once.
public final class ClientFrameHandler: ChannelInboundHandler {
    public typealias InboundIn = HTTP2Frame
    public typealias OutboundOut = HTTP2Frame

    public var responses: [HTTP2StreamID: StreamResponse] = [:]
    public var waiters: [HTTP2StreamID: EventLoopPromise<StreamResponse>] = [:]
    public var nextStreamID = HTTP2StreamID(1)
    /// The last stream id of each GOAWAY the server sent, in order.
    public var goAways: [HTTP2StreamID] = []

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        if case .goAway(let last, _, _) = frame.payload {
            self.goAways.append(last)
            return
        }
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

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {}

    public func wait(for streamID: HTTP2StreamID, on eventLoop: any EventLoop) -> EventLoopFuture<StreamResponse> {
        if let r = self.responses[streamID], r.ended { return eventLoop.makeSucceededFuture(r) }
        let p = eventLoop.makePromise(of: StreamResponse.self)
        self.waiters[streamID] = p
        return p.futureResult
    }
}

/// A minimal HTTP/2 gRPC client for tests, written on `NIOHTTP2Handler(mode: .client)`.
public struct TestClient: Sendable {
    public let channel: any Channel
    public let handler: NIOLoopBound<ClientFrameHandler>

    public static func connect(port: Int, group: any EventLoopGroup) async throws -> TestClient {
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
    public func newStream() async throws -> HTTP2StreamID {
        let h = self.handler
        return try await self.channel.eventLoop.submit {
            let id = h.value.nextStreamID
            h.value.nextStreamID = HTTP2StreamID(Int(id) + 2)
            return id
        }.get()
    }

    public static func requestHeaders(
        path: String, method: String = "POST", contentType: String = "application/grpc", extra: [(String, String)] = []
    ) -> HPACKHeaders {
        var h: HPACKHeaders = [
            ":method": method, ":scheme": "http", ":path": path, ":authority": "localhost",
            "content-type": contentType, "te": "trailers",
        ]
        for (k, v) in extra { h.add(name: k, value: v) }
        return h
    }

    public static func framed(_ strings: [String]) -> ByteBuffer {
        var out = ByteBuffer()
        for s in strings { out.writeImmutableBuffer(GRPCMessageFraming.frame(ByteBuffer(string: s), allocator: .init())) }
        return out
    }

    /// Writes frames and flushes once.
    public func send(_ frames: [HTTP2Frame]) async throws {
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

    public func response(_ streamID: HTTP2StreamID) async throws -> StreamResponse {
        let h = self.handler
        let el = self.channel.eventLoop
        return try await el.flatSubmit { h.value.wait(for: streamID, on: el) }.get()
    }

    /// A unary call: headers, one DATA frame with `body` (already framed), end of stream.
    public func unary(path: String, body: ByteBuffer, headers: HPACKHeaders? = nil) async throws -> StreamResponse {
        let id = try await self.newStream()
        try await self.send([
            HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers ?? Self.requestHeaders(path: path)))),
            HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body), endStream: true))),
        ])
        return try await self.response(id)
    }
}


/// A response that ended inside a message.
public enum TestClientError: Error { case partialMessage }
