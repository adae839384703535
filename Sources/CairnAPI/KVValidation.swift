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
        if r.key.isEmpty { throw KVStatus.from(.emptyKey) }
        if r.ignoreValue && !r.value.isEmpty { throw KVStatus.from(.valueProvided) }
        if r.ignoreLease && r.lease != 0 { throw KVStatus.from(.leaseProvided) }
    }

    /// `checkDeleteRequest`: the key must be set.
    public static func check(_ r: DeleteRangeRequest) throws(GRPCStatus) {
        if r.key.isEmpty { throw KVStatus.from(.emptyKey) }
    }

    /// `checkTxnRequest` then `checkIntervals` on both branches, as etcd's `Txn` handler does.
    public static func check(_ t: TxnRequest, maxTxnOps: Int) throws(GRPCStatus) {
        try checkShape(t, maxTxnOps: maxTxnOps)
        _ = try writes(of: t.success)
        _ = try writes(of: t.failure)
    }

    /// Sizes and keys: no list longer than `maxTxnOps`; nested txns get what the parent leaves.
    private static func checkShape(_ t: TxnRequest, maxTxnOps: Int) throws(GRPCStatus) {
        let opc = max(t.compare.count, t.success.count, t.failure.count)
        if opc > maxTxnOps { throw KVStatus.from(.tooManyOps) }
        for c in t.compare where c.key.isEmpty { throw KVStatus.from(.emptyKey) }
        for op in t.success + t.failure {
            switch op {
            case .range(let r): try check(r)
            case .put(let r): try check(r)
            case .deleteRange(let r): try check(r)
            case .txn(let n): try checkShape(n, maxTxnOps: maxTxnOps - opc)
            }
        }
    }

    /// A deleted interval: `[start, end)`, or the point `start` when `end` is empty
    /// (etcd compares the end as plain bytes: a `[0]` end is not widened here).
    private struct Interval {
        var start: [UInt8]
        var end: [UInt8]
        func contains(_ k: [UInt8]) -> Bool {
            if end.isEmpty { return k == start }
            return !k.lexicographicallyPrecedes(start) && k.lexicographicallyPrecedes(end)
        }
    }

    /// etcd's `checkIntervals`: puts and deletes of one branch must not overlap; the
    /// two branches of a nested txn exclude each other.
    private static func writes(of ops: [RequestOp]) throws(GRPCStatus) -> (puts: Set<[UInt8]>, dels: [Interval]) {
        var dels: [Interval] = []
        for case .deleteRange(let d) in ops { dels.append(Interval(start: d.key, end: d.rangeEnd)) }
        func covered(_ k: [UInt8]) -> Bool { dels.contains { $0.contains(k) } }
        var puts = Set<[UInt8]>()
        for case .txn(let n) in ops {
            let then = try writes(of: n.success)
            let otherwise = try writes(of: n.failure)
            for k in then.puts {
                if puts.contains(k) || covered(k) { throw KVStatus.from(.duplicateKey) }
                puts.insert(k)
            }
            for k in otherwise.puts {
                if puts.contains(k) && !then.puts.contains(k) { throw KVStatus.from(.duplicateKey) }
                if covered(k) { throw KVStatus.from(.duplicateKey) }
                puts.insert(k)
            }
            dels += then.dels
            dels += otherwise.dels
        }
        for case .put(let p) in ops {
            if puts.contains(p.key) || covered(p.key) { throw KVStatus.from(.duplicateKey) }
            puts.insert(p.key)
        }
        return (puts, dels)
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
        case .internal(let m): return GRPCStatus(.internal, m)
        }
    }

    /// grpc-go's status for a request message that does not decode (`server.go`: codes.Internal).
    public static func unmarshalError(_ error: any Error) -> GRPCStatus {
        GRPCStatus(.internal, "grpc: error unmarshalling request: \(error)")
    }
}
