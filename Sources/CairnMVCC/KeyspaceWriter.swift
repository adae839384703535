import CairnBackend

/// The changes of one `Keyspace.apply` batch. Each `put`, `deleteRange`,
/// `txn` and `leaseRevoke` that changes something is one revision.
///
/// A request that fails (its error is one of etcd's request errors) changes
/// nothing and the batch continues. A backend failure poisons the batch: the
/// call throws `KeyspaceError.backend`, later calls throw it too, and
/// `apply` rolls the batch back.
///
/// Only valid inside the `apply` body that created it, on its thread.
public final class KeyspaceWriter<Backend: StorageBackend> {
    unowned let ks: Keyspace<Backend>
    let tx: Backend.WriteTx
    /// The revision of the last change made so far (the batch's current revision).
    public private(set) var currentRevision: Int64
    /// The applied Raft index to record with this batch.
    public private(set) var appliedIndex: UInt64?
    /// A compaction this batch scheduled; the index is trimmed and old
    /// revisions removed only after the batch commits, so that readers of the
    /// last committed revision never lose what they may still read.
    private(set) var pendingCompaction: Int64?
    /// The leases as this batch changes them; published when it commits.
    private(set) var leases: [Int64: LeaseState]

    /// Index entries as they were before this batch touched them, in order.
    private var undo: [([UInt8], KeyIndex?)] = []
    private let compactRevAtStart: Int64
    private var failure: KeyspaceError?
    private var rolledBack = false

    init(keyspace: Keyspace<Backend>, tx: Backend.WriteTx, startRevision: Int64, leases: [Int64: LeaseState]) {
        self.ks = keyspace
        self.tx = tx
        self.currentRevision = startRevision
        self.leases = leases
        self.compactRevAtStart = keyspace.lock.withReadLock { keyspace.compactRev }
    }

    /// Reads below this revision fail: the committed compaction, or one this
    /// batch scheduled.
    var compactFloor: Int64 { pendingCompaction ?? compactRevAtStart }

    /// One revision being made: `main` fixed, `sub` counting its changes.
    struct Change {
        var main: Int64
        var sub: Int64 = 0

        mutating func next() throws(KeyspaceError) -> IndexedRevision {
            guard sub < Int64(Int32.max) else { throw .tooManyOps }
            defer { sub += 1 }
            return IndexedRevision(main: main, sub: Int32(sub), tombstone: false)
        }
    }

    // MARK: Requests

    /// Records the Raft index this batch applies up to; stored in the same
    /// backend transaction as the changes.
    public func setAppliedIndex(_ index: UInt64) {
        appliedIndex = index
    }

    /// Reads inside the batch: sees the batch's own changes.
    public func range(_ r: RangeRequest) throws(KeyspaceError) -> RangeResponse {
        try checkUsable()
        guard !r.key.isEmpty else { throw .emptyKey }
        return try ks.rangeKeys(tx, r, current: currentRevision, compactFloor: compactFloor)
    }

    public func put(_ r: PutRequest) throws(KeyspaceError) -> PutResponse {
        try checkUsable()
        try TxnValidation.checkPut(r)
        try checkPutPreconditions(r)
        var change = Change(main: currentRevision + 1)
        let prev = try doPut(r, &change)
        currentRevision = change.main
        return PutResponse(revision: change.main, prevKV: r.prevKV ? prev : nil)
    }

    public func deleteRange(_ r: DeleteRangeRequest) throws(KeyspaceError) -> DeleteRangeResponse {
        try checkUsable()
        guard !r.key.isEmpty else { throw .emptyKey }
        var change = Change(main: currentRevision + 1)
        let prevs = try doDelete(r.key, r.rangeEnd, wantPrev: r.prevKV, &change)
        if change.sub > 0 { currentRevision = change.main }
        return DeleteRangeResponse(revision: currentRevision, deleted: Int64(prevs.count), prevKVs: r.prevKV ? prevs : [])
    }

    /// Applies a txn as one revision. Its compares, nested ones included,
    /// are all evaluated on the state before the txn, and every request on
    /// the chosen path is checked before anything is written.
    public func txn(_ t: TxnRequest) throws(KeyspaceError) -> TxnResponse {
        try checkUsable()
        try TxnValidation.checkShape(t, maxOps: ks.maxTxnOps)
        try TxnValidation.checkDuplicates(t)
        let path = try evaluate(t)
        try precheck(t, path)
        let begin = currentRevision
        var change = Change(main: begin + 1)
        var response = try execute(t, path, begin: begin, &change)
        if change.sub > 0 { currentRevision = change.main }
        response.revision = currentRevision
        return response
    }

    /// Compacts the keyspace at `rev`: reads below it fail from now on, and
    /// the revisions it supersedes are removed from the backend when the
    /// batch has committed. Returns the current revision.
    @discardableResult
    public func compact(_ rev: Int64) throws(KeyspaceError) -> Int64 {
        try checkUsable()
        if rev <= compactFloor { throw .compacted }
        if rev > currentRevision { throw .futureRevision }
        try backend { () throws(BackendError) in
            try tx.put(ks.metaTable, Keyspace<Backend>.scheduledCompactKey, Codec.revisionKey(Revision(main: rev)))
        }
        pendingCompaction = rev
        return currentRevision
    }

    /// Creates a lease. The id must be non-zero and unused.
    public func leaseGrant(_ lease: LeaseRecord) throws(KeyspaceError) {
        try checkUsable()
        guard lease.id != 0 else { throw .leaseNotFound }
        if leases[lease.id] != nil { throw .leaseExists }
        try backend { () throws(BackendError) in
            try tx.put(ks.leaseTable, Codec.bigEndian(UInt64(bitPattern: lease.id)), Codec.encode(lease))
        }
        leases[lease.id] = LeaseState(record: lease, keys: [])
    }

    /// Records an alarm as raised (`active`) or cleared, in this batch's transaction, so that
    /// alarms survive a restart (etcd keeps them in its backend's `alarm` bucket).
    public func setAlarm(memberID: UInt64, alarm: Int, active: Bool) throws(KeyspaceError) {
        try checkUsable()
        let key = AlarmKeys.key(memberID: memberID, alarm: alarm)
        try backend { () throws(BackendError) in
            if active { try tx.put(ks.metaTable, key, [1]) } else { _ = try tx.delete(ks.metaTable, key) }
        }
    }

    /// Records a lease's remaining TTL (etcd's lease checkpoint) in memory,
    /// as etcd 3.4 does: not persisted, and a no-op for an unknown lease.
    public func leaseCheckpoint(id: Int64, remainingTTLSeconds: Int64) throws(KeyspaceError) {
        try checkUsable()
        leases[id]?.record.remainingTTLSeconds = remainingTTLSeconds
    }

    /// Revokes a lease: its keys are deleted in one revision (in key order)
    /// and the lease removed. Returns the revision after the revoke.
    @discardableResult
    public func leaseRevoke(_ id: Int64) throws(KeyspaceError) -> Int64 {
        try checkUsable()
        guard let state = leases[id] else { throw .leaseNotFound }
        var change = Change(main: currentRevision + 1)
        for key in state.keys.sorted(by: { compareBytes($0, $1) < 0 }) {
            _ = try doDelete(key, [], wantPrev: false, &change)
        }
        try backend { () throws(BackendError) in
            try tx.delete(ks.leaseTable, Codec.bigEndian(UInt64(bitPattern: id)))
        }
        leases.removeValue(forKey: id)
        if change.sub > 0 { currentRevision = change.main }
        return currentRevision
    }

    // MARK: Batch life

    func finish() throws {
        if let failure { throw failure }
        if let appliedIndex {
            try tx.put(ks.metaTable, Keyspace<Backend>.consistentIndexKey, Codec.bigEndian(appliedIndex))
        }
    }

    /// Undoes every in-memory change of this batch (the backend transaction
    /// is aborted by the backend).
    func rollback() {
        guard !rolledBack else { return }
        rolledBack = true
        ks.lock.withWriteLock {
            for (key, old) in undo.reversed() {
                if let old { ks.index.updateValue(old, forKey: key) } else { ks.index.removeValue(forKey: key) }
            }
        }
        undo = []
    }

    private func checkUsable() throws(KeyspaceError) {
        if let failure { throw failure }
        if rolledBack { throw .backend(.transactionClosed) }
    }

    /// Marks the batch failed: it will be rolled back, whatever the caller does.
    private func poison(_ error: KeyspaceError) -> KeyspaceError {
        if failure == nil { failure = error }
        return error
    }

    /// Runs a backend call; a failure poisons the batch.
    @discardableResult
    private func backend<R>(_ body: () throws(BackendError) -> R) throws(KeyspaceError) -> R {
        do {
            return try body()
        } catch {
            throw poison(.backend(error))
        }
    }

    // MARK: Mechanics

    /// A put's checks in etcd's order for a put on its own: the lease, then
    /// the key that `ignore_value`/`ignore_lease` need.
    private func checkPutPreconditions(_ r: PutRequest) throws(KeyspaceError) {
        if r.lease != 0 && leases[r.lease] == nil { throw .leaseNotFound }
        if r.ignoreValue || r.ignoreLease {
            guard let ki = ks.index[r.key], ki.isLive else { throw .keyNotFound }
        }
    }

    /// The live value of `key` at the batch's latest state.
    private func readLatest(_ ki: KeyIndex) throws(KeyspaceError) -> KeyValue {
        let rev = ki.revs.last!.revision
        let kv: KeyValue?
        do {
            kv = try tx.withValue(ks.keyTable, Codec.revisionKey(rev)) { b in b.flatMap { Codec.decodeKeyValue($0) } }
        } catch {
            throw poison(KeyspaceError(wrapping: error))
        }
        guard let kv else { throw poison(.corrupt("revision \(rev) is in the index but not in the key table")) }
        return kv
    }

    /// Writes one put; returns the previous live value when it was read.
    private func doPut(_ r: PutRequest, _ change: inout Change) throws(KeyspaceError) -> KeyValue? {
        let old = ks.index[r.key]
        let live = old?.isLive == true
        var prev: KeyValue?
        if live && (r.prevKV || r.ignoreValue) { prev = try readLatest(old!) }
        // Prechecks guarantee the key is live for ignore_value/ignore_lease;
        // if not, the batch is poisoned rather than half a txn committed.
        if (r.ignoreValue || r.ignoreLease) && !live { throw poison(.keyNotFound) }
        let value = r.ignoreValue ? (prev?.value ?? []) : r.value
        let lease = r.ignoreLease ? (old?.lease ?? 0) : r.lease
        let rev = try change.next()
        let kv = KeyValue(
            key: r.key, createRevision: live ? old!.createdMain : rev.main, modRevision: rev.main,
            version: live ? old!.version + 1 : 1, value: value, lease: lease)
        let size = Codec.encodedSize(kv)
        try backend { () throws(BackendError) in
            try tx.put(ks.keyTable, Codec.revisionKey(rev.revision), count: size) { Codec.encode(kv, into: $0) }
        }
        ks.lock.withWriteLock {
            undo.append((r.key, old))
            var ki = old ?? KeyIndex(revs: RevisionList(), createdMain: 0, version: 0, lease: 0)
            ki.revs.append(rev)
            ki.createdMain = kv.createRevision
            ki.version = kv.version
            let oldLease = live ? ki.lease : 0
            ki.lease = lease
            ks.index.updateValue(ki, forKey: r.key)
            if oldLease != 0 { leases[oldLease]?.keys.remove(r.key) }
            if lease != 0 { leases[lease]?.keys.insert(r.key) }
        }
        return prev
    }

    /// Deletes the live keys of `[key, rangeEnd)`; returns their last values
    /// when `wantPrev`, else placeholders (only the count matters).
    private func doDelete(
        _ key: [UInt8], _ rangeEnd: [UInt8], wantPrev: Bool, _ change: inout Change
    ) throws(KeyspaceError) -> [KeyValue] {
        var victims: [([UInt8], KeyIndex)] = []
        ks.index.visit(key, RangeBound(rangeEnd)) { k, ki in
            if ki.isLive { victims.append((Array(k), ki)) }
            return true
        }
        var prevs: [KeyValue] = []
        prevs.reserveCapacity(victims.count)
        for (k, ki) in victims {
            prevs.append(wantPrev ? try readLatest(ki) : KeyValue(key: k))
            var rev = try change.next()
            rev.tombstone = true
            let tombstone = Codec.encode(KeyValue(key: k))
            try backend { () throws(BackendError) in
                try tx.put(ks.keyTable, Codec.revisionKey(rev.revision, tombstone: true), tombstone)
            }
            ks.lock.withWriteLock {
                undo.append((k, ki))
                var updated = ki
                updated.revs.append(rev)
                updated.createdMain = 0
                updated.version = 0
                updated.lease = 0
                ks.index.updateValue(updated, forKey: k)
                if ki.lease != 0 { leases[ki.lease]?.keys.remove(k) }
            }
        }
        return prevs
    }

    // MARK: Txn

    /// The outcome of a txn's compares and of the nested txns on its chosen
    /// branch, in order.
    struct Path {
        var succeeded: Bool
        var nested: [Path]
    }

    private func evaluate(_ t: TxnRequest) throws(KeyspaceError) -> Path {
        var ok = true
        for c in t.compare where !(try holds(c)) {
            ok = false
            break
        }
        var nested: [Path] = []
        for case .txn(let inner) in ok ? t.success : t.failure {
            nested.append(try evaluate(inner))
        }
        return Path(succeeded: ok, nested: nested)
    }

    /// Whether a compare holds for every live key it names (the batch's
    /// latest state). Comparing a value of a missing key always fails; other
    /// targets of a missing key compare as zero.
    private func holds(_ c: Compare) throws(KeyspaceError) -> Bool {
        var found: [KeyIndex] = []
        ks.index.visit(c.key, RangeBound(c.rangeEnd)) { _, ki in
            if ki.isLive { found.append(ki) }
            return true
        }
        if found.isEmpty {
            if case .value = c.target { return false }
            return Self.outcome(c.result, Self.compareTarget(c.target, zero: true, nil))
        }
        for ki in found {
            let order: Int
            if case .value = c.target {
                order = Self.compareTarget(c.target, zero: false, try readLatest(ki))
            } else {
                let meta = KeyValue(
                    key: [], createRevision: ki.createdMain, modRevision: ki.revs.last!.main, version: ki.version,
                    lease: ki.lease)
                order = Self.compareTarget(c.target, zero: false, meta)
            }
            if !Self.outcome(c.result, order) { return false }
        }
        return true
    }

    /// -1, 0 or 1: the key's side compared with the compare's operand.
    private static func compareTarget(_ target: CompareTarget, zero: Bool, _ kv: KeyValue?) -> Int {
        let kv = kv ?? KeyValue(key: [])
        func cmp(_ a: Int64, _ b: Int64) -> Int { a < b ? -1 : (a > b ? 1 : 0) }
        switch target {
        case .version(let v): return cmp(kv.version, v)
        case .createRevision(let v): return cmp(kv.createRevision, v)
        case .modRevision(let v): return cmp(kv.modRevision, v)
        case .lease(let v): return cmp(kv.lease, v)
        case .value(let v): return compareBytes(kv.value, v)
        }
    }

    private static func outcome(_ result: CompareResult, _ order: Int) -> Bool {
        switch result {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .greater: return order > 0
        case .less: return order < 0
        }
    }

    /// Checks the requests on the chosen path against the state before the
    /// txn, as etcd does: every put first, then every range.
    private func precheck(_ t: TxnRequest, _ path: Path) throws(KeyspaceError) {
        var deleted: [([UInt8], RangeBound)] = []
        try precheckPuts(t, path, &deleted)
        try precheckRanges(t, path)
    }

    /// A put in a txn: the key `ignore_value`/`ignore_lease` need (live
    /// before the txn, and not deleted by an earlier request of it), then the
    /// lease.
    private func precheckPuts(
        _ t: TxnRequest, _ path: Path, _ deleted: inout [([UInt8], RangeBound)]
    ) throws(KeyspaceError) {
        var nested = path.nested.makeIterator()
        for op in path.succeeded ? t.success : t.failure {
            switch op {
            case .put(let p):
                if p.ignoreValue || p.ignoreLease {
                    guard let ki = ks.index[p.key], ki.isLive,
                        !deleted.contains(where: { Keyspace<Backend>.inRange(p.key, $0.0, $0.1) })
                    else { throw .keyNotFound }
                }
                if p.lease != 0 && leases[p.lease] == nil { throw .leaseNotFound }
            case .deleteRange(let d):
                deleted.append((d.key, RangeBound(d.rangeEnd)))
            case .range:
                break
            case .txn(let inner):
                try precheckPuts(inner, nested.next()!, &deleted)
            }
        }
    }

    private func precheckRanges(_ t: TxnRequest, _ path: Path) throws(KeyspaceError) {
        var nested = path.nested.makeIterator()
        for op in path.succeeded ? t.success : t.failure {
            switch op {
            case .range(let r):
                if r.revision != 0 {
                    if r.revision > currentRevision { throw .futureRevision }
                    if r.revision < compactFloor { throw .compacted }
                }
            case .put, .deleteRange:
                break
            case .txn(let inner):
                try precheckRanges(inner, nested.next()!)
            }
        }
    }

    private func execute(
        _ t: TxnRequest, _ path: Path, begin: Int64, _ change: inout Change
    ) throws(KeyspaceError) -> TxnResponse {
        var responses: [ResponseOp] = []
        var nested = path.nested.makeIterator()
        for op in path.succeeded ? t.success : t.failure {
            switch op {
            case .range(let r):
                let visible = change.sub > 0 ? begin + 1 : begin
                responses.append(.range(try ks.rangeKeys(tx, r, current: visible, compactFloor: compactFloor)))
            case .put(let p):
                let prev = try doPut(p, &change)
                responses.append(.put(PutResponse(revision: begin + 1, prevKV: p.prevKV ? prev : nil)))
            case .deleteRange(let d):
                let prevs = try doDelete(d.key, d.rangeEnd, wantPrev: d.prevKV, &change)
                responses.append(
                    .deleteRange(
                        DeleteRangeResponse(
                            revision: change.sub > 0 ? begin + 1 : begin, deleted: Int64(prevs.count),
                            prevKVs: d.prevKV ? prevs : [])))
            case .txn(let inner):
                // etcd leaves nested txn headers empty: revision 0.
                var r = try execute(inner, nested.next()!, begin: begin, &change)
                r.revision = 0
                responses.append(.txn(r))
            }
        }
        return TxnResponse(revision: 0, succeeded: path.succeeded, responses: responses)
    }
}
