/// Request checks etcd makes before a request reaches the keyspace (its v3rpc
/// layer), made here so that the keyspace can never be asked to apply
/// something etcd would refuse. The API layer calls the same checks to answer
/// before proposing.
public enum TxnValidation {
    /// Checks sizes and keys of a txn: no branch (or compare list) longer than
    /// `maxOps`, nested txns counting against what their parent leaves, and
    /// no empty keys.
    public static func checkShape(_ txn: TxnRequest, maxOps: Int) throws(KeyspaceError) {
        let widest = max(txn.compare.count, txn.success.count, txn.failure.count)
        if widest > maxOps { throw .tooManyOps }
        for c in txn.compare where c.key.isEmpty { throw .emptyKey }
        for op in txn.success + txn.failure {
            switch op {
            case .range(let r): if r.key.isEmpty { throw .emptyKey }
            case .put(let p): try checkPut(p)
            case .deleteRange(let d): if d.key.isEmpty { throw .emptyKey }
            case .txn(let nested): try checkShape(nested, maxOps: maxOps - widest)
            }
        }
    }

    public static func checkPut(_ p: PutRequest) throws(KeyspaceError) {
        if p.key.isEmpty { throw .emptyKey }
        if p.ignoreValue && !p.value.isEmpty { throw .valueProvided }
        if p.ignoreLease && p.lease != 0 { throw .leaseProvided }
    }

    /// A key interval for overlap checks: `[start, end)`, or the single key
    /// `start` when `end` is empty. The end is compared as plain bytes (a
    /// `[0]` end is not widened to "every key" here), which is how etcd 3.4
    /// checks txn overlaps.
    struct Interval {
        var start: [UInt8]
        var end: [UInt8]

        func contains(_ key: [UInt8]) -> Bool {
            if end.isEmpty { return start == key }
            return compareBytes(start, key) <= 0 && compareBytes(key, end) < 0
        }
    }

    /// Rejects a txn that writes one key twice in a way that could take
    /// effect together: two puts of a key in one branch (counting nested
    /// txns of that branch), or a put of a key that a delete of the same
    /// branch covers. The success and failure branches of one nested txn
    /// exclude each other, so a key put in both is fine.
    public static func checkDuplicates(_ txn: TxnRequest) throws(KeyspaceError) {
        _ = try writes(of: txn.success)
        _ = try writes(of: txn.failure)
    }

    /// The keys put and the intervals deleted by `ops`, checked for overlaps.
    private static func writes(of ops: [RequestOp]) throws(KeyspaceError) -> (puts: Set<[UInt8]>, deletes: [Interval]) {
        var deletes: [Interval] = []
        for case .deleteRange(let d) in ops {
            deletes.append(Interval(start: d.key, end: d.rangeEnd))
        }
        var puts: Set<[UInt8]> = []
        func covered(_ key: [UInt8], _ dels: [Interval]) -> Bool { dels.contains { $0.contains(key) } }

        for case .txn(let nested) in ops {
            let then = try writes(of: nested.success)
            let otherwise = try writes(of: nested.failure)
            for k in then.puts {
                if puts.contains(k) || covered(k, deletes) { throw .duplicateKey }
                puts.insert(k)
            }
            for k in otherwise.puts {
                if puts.contains(k) && !then.puts.contains(k) { throw .duplicateKey }
                if covered(k, deletes) { throw .duplicateKey }
                puts.insert(k)
            }
            deletes += then.deletes
            deletes += otherwise.deletes
        }
        for case .put(let p) in ops {
            if puts.contains(p.key) || covered(p.key, deletes) { throw .duplicateKey }
            puts.insert(p.key)
        }
        return (puts, deletes)
    }
}

import CairnBackend
