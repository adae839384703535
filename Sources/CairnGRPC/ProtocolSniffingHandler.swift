import NIOCore
import NIOHTTP1

/// Tells gRPC (HTTP/2) from HTTP/1.x by a connection's first bytes, builds the matching pipeline
/// and removes itself, so a gRPC connection runs exactly the pipeline it had without sniffing.
///
/// - The HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, 24 bytes) selects the gRPC pipeline.
/// - An HTTP/1 request line start (an upper-case method token and a space) selects the HTTP/1
///   pipeline when `endpoints` is set.
/// - Anything else, or nothing decisive within `timeout`, closes the connection.
///
/// At most 24 bytes are held while deciding.
final class ProtocolSniffingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let http2Preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    /// Longest HTTP/1 method token looked for (etcd's clients use GET).
    static let maxMethodBytes = 16

    enum Decision {
        case http2, http1, reject, undecided
    }

    private let configureHTTP2: (any Channel) throws -> Void
    private let endpoints: HTTPEndpoints?
    private let timeout: TimeAmount
    private let http1IdleTimeout: TimeAmount
    private var buffered: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var decided = false
    /// A drain was asked for before the protocol was known.
    private var drainWhenDecided = false

    init(
        endpoints: HTTPEndpoints?, timeout: TimeAmount, http1IdleTimeout: TimeAmount,
        configureHTTP2: @escaping (any Channel) throws -> Void
    ) {
        self.endpoints = endpoints
        self.timeout = timeout
        self.http1IdleTimeout = http1IdleTimeout
        self.configureHTTP2 = configureHTTP2
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.timeout) {
            loopBound.value.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let drain = event as? GRPCDrainRequest, !self.decided {
            // No call has started on a connection still being sniffed. Should it turn out to be
            // HTTP/2, it is drained as soon as its handlers are in place (see `decide`).
            self.drainWhenDecided = true
            drain.promise.succeed()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.decided else {
            context.fireChannelRead(data)
            return
        }
        var incoming = self.unwrapInboundIn(data)
        if var held = self.buffered {
            held.writeBuffer(&incoming)
            self.buffered = held
        } else {
            self.buffered = incoming
        }
        let bytes = self.buffered!.readableBytesView.prefix(Self.http2Preface.count)
        switch Self.decide(Array(bytes), http1Allowed: self.endpoints != nil) {
        case .undecided:
            return
        case .reject:
            self.decided = true
            self.buffered = nil
            context.close(promise: nil)
        case .http2:
            self.switchProtocol(context: context) { channel in try self.configureHTTP2(channel) }
        case .http1:
            let endpoints = self.endpoints!
            let idle = self.http1IdleTimeout
            self.switchProtocol(context: context) { channel in
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                    position: .last, withPipeliningAssistance: true, withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandlers(
                    [IdleStateHandler(readTimeout: idle), HTTP1EndpointHandler(endpoints: endpoints)], position: .last)
            }
        }
    }

    /// Classifies the first bytes (at most the preface's length).
    static func decide(_ bytes: [UInt8], http1Allowed: Bool) -> Decision {
        if bytes.elementsEqual(Self.http2Preface.prefix(bytes.count)) {
            return bytes.count == Self.http2Preface.count ? .http2 : .undecided
        }
        guard http1Allowed else { return .reject }
        for (index, byte) in bytes.enumerated() {
            if byte == UInt8(ascii: " ") { return index > 0 ? .http1 : .reject }
            if !(UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || index >= Self.maxMethodBytes { return .reject }
        }
        return .undecided
    }

    /// Adds the chosen handlers after this one, replays the held bytes into them, and leaves.
    private func switchProtocol(context: ChannelHandlerContext, configure: (any Channel) throws -> Void) {
        self.decided = true
        self.timer?.cancel()
        self.timer = nil
        do {
            try configure(context.channel)
        } catch {
            context.close(promise: nil)
            return
        }
        if let held = self.buffered {
            self.buffered = nil
            context.fireChannelRead(self.wrapInboundOut(held))
        }
        if self.drainWhenDecided {
            // The calls in the bytes just replayed are answered; later ones are refused. The
            // handlers complete the promise (the gRPC one once drained, or when removed).
            context.fireUserInboundEventTriggered(GRPCDrainRequest(promise: context.eventLoop.makePromise()))
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.decided { context.fireChannelReadComplete() }
    }
}
