import NIOCore
import NIOHTTP1

/// Serves ``HTTPEndpoints`` on an HTTP/1.x connection (after NIOHTTP1's server pipeline).
///
/// One request at a time (`HTTPServerPipelineHandler` holds back pipelined ones); bodies are
/// discarded as they arrive; the responder runs in a task and its answer is written back on the
/// event loop. An HTTP/1.1 request without `Host` gets Go's 400 and the connection is closed.
/// A connection idle past the `IdleStateHandler`'s timeout is closed.
final class HTTP1EndpointHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoints: HTTPEndpoints
    private var head: HTTPRequestHead?
    private var responding = false

    init(endpoints: HTTPEndpoints) {
        self.endpoints = endpoints
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            if head.version.major == 1 && head.version.minor >= 1 && !head.headers.contains(name: "Host") {
                let message = "400 Bad Request: missing required Host header"
                var response = HTTPEndpointResponse.text(.badRequest, message)
                response.status = .custom(code: 400, reasonPhrase: "Bad Request: missing required Host header")
                self.write(response, for: head, keepAlive: false, context: context)
                return
            }
            self.responding = true
            let endpoints = self.endpoints
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            Task {
                let response = await endpoints.respond(head)
                eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.responding = false
                    handler.write(response, for: head, keepAlive: head.isKeepAlive, context: context)
                }
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let drain = event as? GRPCDrainRequest {
            drain.promise.succeed()  // no gRPC call runs on an HTTP/1 connection
            return
        }
        if event is IdleStateHandler.IdleStateEvent, !self.responding {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// NIOHTTP1 has answered a request it cannot parse with 400; the connection ends here.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func write(_ response: HTTPEndpointResponse, for request: HTTPRequestHead, keepAlive: Bool, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        var headers = response.headers
        headers.replaceOrAdd(name: "Date", value: httpDate())
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.readableBytes))
        // HTTP/1.0 answers in 1.0 (and closes unless keep-alive was asked for), like Go.
        let version = request.version.minor == 0 ? HTTPVersion.http1_0 : HTTPVersion.http1_1
        if !keepAlive {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if version == .http1_0 {
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        let head = HTTPResponseHead(version: version, status: response.status, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD && response.body.readableBytes > 0 {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        }
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: done)
        if !keepAlive {
            let channel = context.channel
            done.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
