import CairnGRPC
import CairnMVCC
import CairnProto
import CairnSync
import CoreMetrics
import Logging
import NIOCore
import SwiftProtobuf

/// etcd's `etcdserverpb.KV` gRPC service (Range, Put, DeleteRange, Txn, Compact) over a `KVServer`.
///
/// Range and Compact decode, validate and run in a task (`unaryAsync`). Put, DeleteRange and
/// Txn are decoded and validated on the event loop and handed to the server without a task
/// (`write`): the server completes them from its own thread, and the reply is encoded back on
/// the event loop.
public enum KVService {
    /// The fully qualified service name.
    public static let serviceName = "etcdserverpb.KV"
    /// etcd's default `--max-request-bytes` (1.5 MiB).
    public static let defaultMaxRequestBytes = 1536 * 1024
    /// etcd's default `--max-txn-ops`.
    public static let defaultMaxTxnOps = 128

    /// Registers the five KV methods at `/etcdserverpb.KV/<Method>`.
    ///
    /// - Parameters:
    ///   - maxRequestBytes: writes (Put, DeleteRange, Txn, Compact) whose encoded request is
    ///     larger fail with etcd's "request is too large" (etcd measures the raft entry it
    ///     would propose, a few bytes more than the request).
    ///   - maxTxnOps: the most operations in one txn list.
    public static func register(
        on router: inout GRPCRouter, server: some KVServer,
        maxRequestBytes: Int = defaultMaxRequestBytes, maxTxnOps: Int = defaultMaxTxnOps,
        logger: Logger = Logger(label: "cairn.api.kv", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        router.register(service: serviceName, method: "Range", .unaryAsync { buffer, _ in
            let p = try decode(Etcdserverpb_RangeRequest.self, buffer)
            let r = try convert { () throws(UnsupportedValue) in try KVConversion.request(p) }
            try KVValidation.check(r)
            let resp = try await call { () async throws(KVServerError) in try await server.range(r, serializable: p.serializable) }
            return try encode(KVConversion.proto(resp, header: KVConversion.header(server.header, revision: resp.revision)))
        })
        router.register(service: serviceName, method: "Put", .unary { buffer, context in
            write(server, buffer, context) { () throws(GRPCStatus) in
                try checkSize(buffer, maxRequestBytes)
                let r = KVConversion.request(try decode(Etcdserverpb_PutRequest.self, buffer))
                try KVValidation.check(r)
                return .put(r)
            }
        })
        router.register(service: serviceName, method: "DeleteRange", .unary { buffer, context in
            write(server, buffer, context) { () throws(GRPCStatus) in
                try checkSize(buffer, maxRequestBytes)
                let r = KVConversion.request(try decode(Etcdserverpb_DeleteRangeRequest.self, buffer))
                try KVValidation.check(r)
                return .deleteRange(r)
            }
        })
        router.register(service: serviceName, method: "Txn", .unary { buffer, context in
            write(server, buffer, context) { () throws(GRPCStatus) in
                try checkSize(buffer, maxRequestBytes)
                let p = try decode(Etcdserverpb_TxnRequest.self, buffer)
                let r = try convert { () throws(UnsupportedValue) in try KVConversion.request(p) }
                try KVValidation.check(r, maxTxnOps: maxTxnOps)
                return .txn(r)
            }
        })
        router.register(service: serviceName, method: "Compact", .unaryAsync { buffer, _ in
            try checkSize(buffer, maxRequestBytes)
            let p = try decode(Etcdserverpb_CompactionRequest.self, buffer)
            let rev = try await call { () async throws(KVServerError) in
                try await server.compact(revision: p.revision, physical: p.physical)
            }
            return try encode(KVConversion.compactionResponse(header: KVConversion.header(server.header, revision: rev)))
        })
        logger.debug("registered etcdserverpb.KV")
    }

    /// Time from a write's completion by the server to its reply being encoded on the event loop
    /// (the "reply" stage of `cairn_put_stage_duration_seconds`; the server records the others).
    static let replyStage = Timer(label: "cairn_put_stage_duration_seconds", dimensions: [("stage", "reply")])
    /// Decoding and validating a write's request message on the event loop (the "decode" stage).
    static let decodeStage = Timer(label: "cairn_put_stage_duration_seconds", dimensions: [("stage", "decode")])

    /// Serves one write without a task: decoding and validation (`parse`) run on the event loop,
    /// the server completes from its own thread, and the reply is encoded back on the event loop.
    static func write(
        _ server: some KVServer, _ buffer: ByteBuffer, _ context: GRPCCallContext,
        parse: () throws(GRPCStatus) -> KVWrite
    ) -> EventLoopFuture<ByteBuffer> {
        let request: KVWrite
        let decodeStart = monotonicNanoseconds()
        do { request = try parse() } catch { return context.eventLoop.makeFailedFuture(error) }
        decodeStage.recordNanoseconds(Int64(monotonicNanoseconds() &- decodeStart))
        let promise = context.eventLoop.makePromise(of: (Result<KVWriteResult, KVServerError>, UInt64).self)
        server.startWrite(request, encodedRequest: buffer) { result in
            promise.succeed((result, monotonicNanoseconds()))
        }
        return promise.futureResult.flatMapThrowing { result, completedAt in
            let reply: ByteBuffer
            switch result {
            case .success(.put(let resp)):
                reply = try encode(KVConversion.proto(resp, header: KVConversion.header(server.header, revision: resp.revision)))
            case .success(.deleteRange(let resp)):
                reply = try encode(KVConversion.proto(resp, header: KVConversion.header(server.header, revision: resp.revision)))
            case .success(.txn(let resp)):
                reply = try encode(KVConversion.proto(resp, header: KVConversion.header(server.header, revision: resp.revision)))
            case .failure(let error):
                throw KVStatus.from(error)
            }
            replyStage.recordNanoseconds(Int64(monotonicNanoseconds() &- completedAt))
            return reply
        }
    }

    /// Decodes a request message, failing as etcd does when it is malformed: with the words of
    /// etcd's Go decoder (`GoUnmarshal`, which also refuses a field of the wrong wire type, where
    /// swift-protobuf would keep it as an unknown field), else with swift-protobuf's.
    public static func decode<M: SwiftProtobuf.Message>(_: M.Type, _ buffer: ByteBuffer) throws(GRPCStatus) -> M {
        if let reason = buffer.withUnsafeReadableBytes({ GoUnmarshal.error(in: $0, message: M.protoMessageName) }) {
            throw KVStatus.unmarshalError(reason)
        }
        do {
            return try M(serializedBytes: [UInt8](buffer.readableBytesView))
        } catch {
            throw KVStatus.unmarshalError("\(error)")
        }
    }

    /// Encodes a response message.
    public static func encode(_ message: some SwiftProtobuf.Message) throws(GRPCStatus) -> ByteBuffer {
        do {
            let bytes: [UInt8] = try message.serializedBytes()
            return ByteBuffer(bytes: bytes)
        } catch {
            throw GRPCStatus(.internal, "grpc: error while marshaling: \(error)")
        }
    }

    public static func checkSize(_ buffer: ByteBuffer, _ max: Int) throws(GRPCStatus) {
        if buffer.readableBytes > max { throw KVStatus.requestTooLarge }
    }

    /// Runs a conversion; an enum value etcd 3.4 does not define is an invalid argument.
    static func convert<R>(_ body: () throws(UnsupportedValue) -> R) throws(GRPCStatus) -> R {
        do { return try body() } catch { throw GRPCStatus(.invalidArgument, "cairn: unsupported \(error.what)") }
    }

    /// Runs a server call, mapping its error to etcd's status.
    static func call<R>(_ body: () async throws(KVServerError) -> R) async throws(GRPCStatus) -> R {
        do { return try await body() } catch { throw KVStatus.from(error) }
    }
}
