import CairnGRPC
import CairnMVCC

/// The checks etcd's v3rpc layer (`v3rpc/key.go`) makes before a request reaches
/// the server, with the same gRPC codes and texts (`rpctypes/error.go`).
public enum KVValidation {
    /// `checkRangeRequest`: the key must be set.
    public static func check(_ r: RangeRequest) throws(GRPCStatus) {
        if r.key.isEmpty { throw KVStatus.from(.emptyKey) }
    }

    /// `checkPutRequest`: key set; `ignore_value` without a value; `ignore_lease` without a lease.
    public static func check(_ r: PutRequest) throws(GRPCStatus) {
        do { try TxnValidation.checkPut(r) } catch { throw KVStatus.from(error) }
    }

    /// `checkDeleteRequest`: the key must be set.
    public static func check(_ r: DeleteRangeRequest) throws(GRPCStatus) {
        if r.key.isEmpty { throw KVStatus.from(.emptyKey) }
    }

    /// `checkTxnRequest` then `checkIntervals` on both branches, as etcd's `Txn`
    /// handler does: the keyspace's own checks (`TxnValidation`), answered with
    /// etcd's gRPC statuses.
    public static func check(_ t: TxnRequest, maxTxnOps: Int) throws(GRPCStatus) {
        do {
            try TxnValidation.checkShape(t, maxOps: maxTxnOps)
            try TxnValidation.checkDuplicates(t)
        } catch {
            throw KVStatus.from(error)
        }
    }
}

/// etcd's gRPC statuses for the KV service.
public enum KVStatus {
    /// etcd's `ErrGRPCRequestTooLarge`.
    public static let requestTooLarge = GRPCStatus(.invalidArgument, "etcdserver: request is too large")

    /// The status etcd sends for a keyspace error (`togRPCError` over `rpctypes`).
    public static func from(_ e: KeyspaceError) -> GRPCStatus {
        switch e {
        case .emptyKey, .keyNotFound, .valueProvided, .leaseProvided, .tooManyOps, .duplicateKey:
            return GRPCStatus(.invalidArgument, e.grpcMessage)
        case .compacted, .futureRevision:
            return GRPCStatus(.outOfRange, e.grpcMessage)
        case .leaseNotFound:
            return GRPCStatus(.notFound, e.grpcMessage)
        case .leaseExists:
            return GRPCStatus(.failedPrecondition, e.grpcMessage)
        case .corrupt, .backend:
            // etcd passes errors it has no mapping for as Unknown with their text.
            return GRPCStatus(.unknown, e.grpcMessage)
        }
    }

    /// The status for a `KVServerError`.
    public static func from(_ e: KVServerError) -> GRPCStatus {
        switch e {
        case .keyspace(let k): return from(k)
        case .unavailable(let m): return GRPCStatus(.unavailable, m)
        case .resourceExhausted(let m): return GRPCStatus(.resourceExhausted, m)
        case .internal(let m): return GRPCStatus(.internal, m)
        }
    }

    /// grpc-go's status for a request message that does not decode (`server.go`: codes.Internal).
    /// etcd's answer to a request that does not decode.
    public static func unmarshalError(_ reason: String) -> GRPCStatus {
        GRPCStatus(.internal, "grpc: error unmarshalling request: \(reason)")
    }
}
