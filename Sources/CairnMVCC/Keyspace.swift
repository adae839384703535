import CairnBackend
import Logging

/// etcd's multi-version keyspace over a storage backend.
///
/// ## Layout
/// The backend holds etcd's layout (see `Codec`): one entry per revision in
/// the `key` table, the applied Raft index and compaction state in `meta`,
/// leases in `lease`. An in-memory index maps each user key to its revisions
/// (`KeyIndex`); it is rebuilt from the `key` table when the keyspace opens.
///
/// ## Writes
/// Every change happens inside `apply { w in … }`: one backend write
/// transaction in which each `put`, `deleteRange`, `txn` or `leaseRevoke`
/// is its own revision, as the Raft applier applies a batch of entries. A
/// failed request (a missing key for `ignoreValue`, a duplicate key in a txn)
/// throws from its call and changes nothing; the batch goes on. A backend
/// failure aborts the whole batch: nothing of it is visible and the in-memory
/// state is rolled back. Record the applied Raft index with
/// `setAppliedIndex(_:)` in the same batch so that replaying the log after a
/// crash skips what is already applied.
///
/// ## Reads
/// `range` and `events` may be called from any thread at any time. They see
/// the state as of the last committed batch (`revision`): the index also
/// holds the revisions of a batch in progress, and readers skip those.
public final class Keyspace<Backend: StorageBackend>: @unchecked Sendable {
    // @unchecked: `index`, `leases` and `compactRev` are guarded by `lock`
    // (written only by the writer, which holds `writer`); the published
    // counters are atomics.

    /// The tables the backend must be configured with.
    public static var tableNames: [String] { ["key", "meta", "lease"] }

    public let backend: Backend
    let keyTable: Table
    let metaTable: Table
    let leaseTable: Table

    let lock = ReadWriteLock()
    // Guarded by `lock`; the dynamic exclusivity check is redundant with it
    // and cost ~6% of a read's instructions.
    @exclusivity(unchecked) var index = SortedByteMap<KeyIndex>()
    @exclusivity(unchecked) var leases: [Int64: LeaseState] = [:]
    /// Reads below this revision fail; -1 until the first compaction, as in etcd.
    @exclusivity(unchecked) var compactRev: Int64 = -1

    /// The committed revision and applied index, published after each commit.
    private let published = LockedValue((revision: Int64(1), appliedIndex: UInt64(0)))
    private let writer = Lock()

    let logger: Logger
    private let compactionFailure = LockedValue<String?>(nil)

    /// Most operations in one txn branch (etcd's `--max-txn-ops`).
    public let maxTxnOps: Int
    /// Deletes per backend transaction when compaction removes old revisions.
    public let compactionBatchSize: Int

    static var consistentIndexKey: [UInt8] { Array("consistent_index".utf8) }

    /// The alarms raised and not cleared, as recorded by `KeyspaceWriter.setAlarm`.
    public func storedAlarms() throws -> [(memberID: UInt64, alarm: Int)] {
        var out: [(memberID: UInt64, alarm: Int)] = []
        try backend.read { tx in
            try tx.scan(metaTable, from: AlarmKeys.prefix, to: AlarmKeys.end, reverse: false) { k, _ in
                guard let alarm = AlarmKeys.parse(k) else { throw KeyspaceError.corrupt("bad alarm key of \(k.count) bytes") }
                out.append(alarm)
                return true
            }
        }
        return out
    }
    static var scheduledCompactKey: [UInt8] { Array("scheduledCompactRev".utf8) }
    static var finishedCompactKey: [UInt8] { Array("finishedCompactRev".utf8) }

    /// Opens the keyspace stored in `backend`, rebuilding the index, and
    /// finishing a compaction that a crash interrupted.
    public init(
        backend: Backend, maxTxnOps: Int = 128, compactionBatchSize: Int = 10_000,
        logger: Logger = Logger(label: "cairn.keyspace", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        self.backend = backend
        self.logger = logger
        self.maxTxnOps = maxTxnOps
        self.compactionBatchSize = compactionBatchSize
        keyTable = try backend.table(named: "key")
        metaTable = try backend.table(named: "meta")
        leaseTable = try backend.table(named: "lease")
        try finishOpening()
    }

    @inline(never)  // inlined into init, this trips a Swift 6.3 optimizer crash (CopyPropagation) under CMO
    private func finishOpening() throws {
        if let pending = try rebuild() {
            try removeCompacted(upTo: pending.0, keeping: pending.1)
        }
    }

    // MARK: Published state

    /// The revision of the last committed change (1 for an empty keyspace).
    public var revision: Int64 { published.withLock { $0.revision } }

    /// The revision of the last compaction (0 when never compacted).
    public var compactedRevision: Int64 { lock.withReadLock { max(compactRev, 0) } }

    /// The Raft index of the last applied entry recorded with `setAppliedIndex`.
    public var appliedIndex: UInt64 { published.withLock { $0.appliedIndex } }

    /// Number of keys live at the current revision.
    public var keyCount: Int {
        let rev = revision
        return lock.withReadLock {
            var n = 0
            index.visit([0], .unbounded) { _, ki in
                if ki.visible(at: rev) != nil { n += 1 }
                return true
            }
            return n
        }
    }

    // MARK: Opening

    /// Reads the whole `key` table into the index; returns a compaction that
    /// was scheduled but not finished.
    @inline(never)  // inlined into init, it trips a Swift 6.3 optimizer crash (CopyPropagation) under CMO
    private func rebuild() throws -> (Int64, Set<Revision>)? {
        var maxRev: Int64 = 1
        var map = SortedByteMap<KeyIndex>()
        var scheduled: Int64 = -1
        var finished: Int64 = -1
        var leaseMap: [Int64: LeaseState] = [:]
        var applied: UInt64 = 0
        try backend.read { tx in
            if let ci = try tx.get(metaTable, Self.consistentIndexKey), ci.count == 8 {
                applied = ci.withUnsafeBytes { Codec.loadBigEndian($0, 0) }
            }
            if let s = try tx.get(metaTable, Self.scheduledCompactKey) {
                scheduled = try s.withUnsafeBytes { b in
                    guard let (r, _) = Codec.parseRevisionKey(b) else { throw KeyspaceError.corrupt("bad scheduledCompactRev") }
                    return r.main
                }
            }
            if let f = try tx.get(metaTable, Self.finishedCompactKey) {
                finished = try f.withUnsafeBytes { b in
                    guard let (r, _) = Codec.parseRevisionKey(b) else { throw KeyspaceError.corrupt("bad finishedCompactRev") }
                    return r.main
                }
            }
            try tx.forEach(leaseTable) { _, v in
                guard let lease = Codec.decodeLease(v) else { throw KeyspaceError.corrupt("undecodable lease record") }
                leaseMap[lease.id] = LeaseState(record: lease, keys: [])
            }
            try tx.forEach(keyTable) { k, v in
                guard let (rev, tombstone) = Codec.parseRevisionKey(k) else {
                    throw KeyspaceError.corrupt("bad revision key of \(k.count) bytes in the key table")
                }
                guard let kv = Codec.decodeKeyValue(v, withValue: false), !kv.key.isEmpty else {
                    throw KeyspaceError.corrupt("undecodable KeyValue at revision \(rev)")
                }
                guard rev.sub <= Int64(Int32.max) else { throw KeyspaceError.corrupt("sub revision \(rev.sub) out of range") }
                let entry = IndexedRevision(main: rev.main, sub: Int32(rev.sub), tombstone: tombstone)
                if let i = map.find(kv.key) {
                    map.modifyValue(at: i) { ki in
                        ki.revs.append(entry)
                        ki.createdMain = tombstone ? 0 : kv.createRevision
                        ki.version = tombstone ? 0 : kv.version
                        ki.lease = tombstone ? 0 : kv.lease
                    }
                } else {
                    map.updateValue(
                        KeyIndex(
                            revs: RevisionList([entry]), createdMain: tombstone ? 0 : kv.createRevision,
                            version: tombstone ? 0 : kv.version, lease: tombstone ? 0 : kv.lease),
                        forKey: kv.key)
                }
                maxRev = max(maxRev, rev.main)
            }
        }
        // Attach live keys to their leases.
        map.visit([0], .unbounded) { key, ki in
            if ki.isLive && ki.lease != 0 { leaseMap[ki.lease]?.keys.insert(Array(key)) }
            return true
        }
        // Revisions may have been removed by compaction; the revision counter
        // never goes below the compaction point.
        maxRev = max(maxRev, scheduled)
        var pending: (Int64, Set<Revision>)?
        if scheduled >= 0 {
            var keep = Set<Revision>()
            map.compactAll(at: scheduled) { r in keep.insert(r.revision) }
            if scheduled != finished { pending = (scheduled, keep) }
        }
        lock.withWriteLock {
            index = map
            leases = leaseMap
            compactRev = scheduled
        }
        published.withLock { $0 = (maxRev, applied) }
        return pending
    }

    // MARK: Reads

    /// Serves a range request at the current revision or the one it names.
    public func range(_ request: RangeRequest) throws(KeyspaceError) -> RangeResponse {
        guard !request.key.isEmpty else { throw .emptyKey }
        let current = revision
        let tx: Backend.ReadTx
        do { tx = try backend.beginRead() } catch { throw .backend(error) }
        defer { tx.close() }
        return try rangeKeys(tx, request, current: current)
    }

    /// The kv of `key` at revision `rev` (nil when absent), for watchers'
    /// `prev_kv`.
    public func get(_ key: [UInt8], at rev: Int64) throws(KeyspaceError) -> KeyValue? {
        try range(RangeRequest(key: key, revision: rev)).kvs.first
    }

    /// Range over the index at `current` (the newest revision the reader may
    /// see), values read through `tx`.
    func rangeKeys<T: BackendReadTransaction>(
        _ tx: T, _ r: RangeRequest, current: Int64, compactFloor: Int64? = nil
    ) throws(KeyspaceError) -> RangeResponse {
        let rev = r.revision <= 0 ? current : r.revision
        if rev > current { throw .futureRevision }

        let filtered =
            r.sortOrder != .none || r.minModRevision != 0 || r.maxModRevision != 0 || r.minCreateRevision != 0
            || r.maxCreateRevision != 0
        // Without sorting or filtering, fetch one more than the limit to know
        // whether more exist; otherwise fetch everything and cut afterwards.
        let fetchLimit = (filtered || r.limit <= 0 || r.limit >= Int64(Int.max)) ? Int.max : Int(r.limit) + 1
        if r.rangeEnd.isEmpty && !r.countOnly {
            return try singleKey(tx, r, at: rev, current: current, compactFloor: compactFloor)
        }
        var hits: [IndexedRevision] = []
        var count: Int64 = 0
        let compacted: Bool = lock.withReadLock {
            if rev < (compactFloor ?? compactRev) { return true }
            index.visit(r.key, RangeBound(r.rangeEnd)) { _, ki in
                if let v = ki.visible(at: rev) {
                    count += 1
                    if !r.countOnly && hits.count < fetchLimit { hits.append(v) }
                }
                return true
            }
            return false
        }
        if compacted { throw .compacted }
        if r.countOnly { return RangeResponse(revision: current, kvs: [], more: false, count: count) }

        // Values are needed to sort by them even when they are not returned.
        let withValues = !r.keysOnly || r.sortTarget == .value
        var kvs: [KeyValue] = []
        kvs.reserveCapacity(hits.count)
        do {
            for h in hits {
                let kv: KeyValue? = try tx.withValue(keyTable, Codec.revisionKey(h.revision)) { b in
                    b.flatMap { Codec.decodeKeyValue($0, withValue: withValues) }
                }
                guard let kv else { throw KeyspaceError.corrupt("revision \(h.revision) is in the index but not readable") }
                kvs.append(kv)
            }
        } catch {
            throw KeyspaceError(wrapping: error)
        }

        if r.maxModRevision != 0 { kvs.removeAll { $0.modRevision > r.maxModRevision } }
        if r.minModRevision != 0 { kvs.removeAll { $0.modRevision < r.minModRevision } }
        if r.maxCreateRevision != 0 { kvs.removeAll { $0.createRevision > r.maxCreateRevision } }
        if r.minCreateRevision != 0 { kvs.removeAll { $0.createRevision < r.minCreateRevision } }

        var order = r.sortOrder
        // Results come in ascending key order; another target implies ascending.
        if r.sortTarget != .key && order == .none { order = .ascend }
        if order != .none {
            let ascending: (KeyValue, KeyValue) -> Bool
            switch r.sortTarget {
            case .key: ascending = { compareBytes($0.key, $1.key) < 0 }
            case .version: ascending = { $0.version < $1.version }
            case .create: ascending = { $0.createRevision < $1.createRevision }
            case .mod: ascending = { $0.modRevision < $1.modRevision }
            case .value: ascending = { compareBytes($0.value, $1.value) < 0 }
            }
            if order == .ascend {
                if !(r.sortTarget == .key) { kvs = stableSorted(kvs, by: ascending) }
            } else {
                kvs = stableSorted(kvs) { ascending($1, $0) }
            }
        }
        var more = false
        if r.limit > 0 && Int64(kvs.count) > r.limit {
            kvs.removeSubrange(Int(r.limit)...)
            more = true
        }
        if r.keysOnly && withValues {
            for i in kvs.indices { kvs[i].value = [] }
        }
        return RangeResponse(revision: current, kvs: kvs, more: more, count: count)
    }

    /// The common case of a range: one key, no count-only. Same answer as
    /// the general path, without its intermediate arrays.
    private func singleKey<T: BackendReadTransaction>(
        _ tx: T, _ r: RangeRequest, at rev: Int64, current: Int64, compactFloor: Int64?
    ) throws(KeyspaceError) -> RangeResponse {
        let lookup: (compacted: Bool, hit: IndexedRevision?) = lock.withReadLock {
            if rev < (compactFloor ?? compactRev) { return (true, nil) }
            guard let i = index.find(r.key) else { return (false, nil) }
            return (false, index.value(at: i).visible(at: rev))
        }
        if lookup.compacted { throw .compacted }
        guard let hit = lookup.hit else { return RangeResponse(revision: current, kvs: [], more: false, count: 0) }
        let kv: KeyValue?
        do {
            kv = try tx.withValue(keyTable, Codec.revisionKey(hit.revision)) { b in
                b.flatMap { Codec.decodeKeyValue($0, withValue: !r.keysOnly) }
            }
        } catch {
            throw KeyspaceError(wrapping: error)
        }
        guard let kv else { throw .corrupt("revision \(hit.revision) is in the index but not readable") }
        // One key: the mod/create filters may drop it; limit and sort cannot matter.
        if r.maxModRevision != 0 && kv.modRevision > r.maxModRevision
            || r.minModRevision != 0 && kv.modRevision < r.minModRevision
            || r.maxCreateRevision != 0 && kv.createRevision > r.maxCreateRevision
            || r.minCreateRevision != 0 && kv.createRevision < r.minCreateRevision
        {
            return RangeResponse(revision: current, kvs: [], more: false, count: 1)
        }
        return RangeResponse(revision: current, kvs: [kv], more: false, count: 1)
    }

    /// The changes of revisions `from...to` (to: the current revision), in
    /// revision order, at most about `maxEvents` (never splitting a revision).
    /// Events whose key is outside `[key, rangeEnd)` are left out when `key`
    /// is given. Returns the events and the last revision covered.
    public func events(
        from: Int64, to: Int64? = nil, key: [UInt8]? = nil, rangeEnd: [UInt8] = [], maxEvents: Int = 10_000
    ) throws(KeyspaceError) -> (events: [Event], throughRevision: Int64) {
        let maxEvents = max(maxEvents, 1)
        let current = revision
        let last = min(to ?? current, current)
        let tx: Backend.ReadTx
        do { tx = try backend.beginRead() } catch { throw .backend(error) }
        defer { tx.close() }
        if lock.withReadLock({ from < compactRev }) { throw .compacted }
        guard from <= last else { return ([], last) }
        let bound = RangeBound(rangeEnd)
        var events: [Event] = []
        var through = last
        do {
            try tx.scan(
                keyTable, from: Codec.revisionKey(Revision(main: max(from, 0))),
                to: Codec.revisionKey(Revision(main: last + 1)), reverse: false
            ) { k, v in
                guard let (rev, tombstone) = Codec.parseRevisionKey(k) else {
                    throw KeyspaceError.corrupt("bad revision key in the key table")
                }
                if events.count >= maxEvents && rev.main != events.last!.kv.modRevision {
                    through = events.last!.kv.modRevision
                    return false
                }
                guard var kv = Codec.decodeKeyValue(v) else { throw KeyspaceError.corrupt("undecodable KeyValue at \(rev)") }
                if let key, !Self.inRange(kv.key, key, bound) { return true }
                if tombstone { kv.modRevision = rev.main }
                events.append(Event(kind: tombstone ? .delete : .put, kv: kv))
                return true
            }
        } catch {
            throw KeyspaceError(wrapping: error)
        }
        return (events, through)
    }

    static func inRange(_ k: [UInt8], _ key: [UInt8], _ bound: RangeBound) -> Bool {
        switch bound {
        case .single: return k == key
        case .unbounded: return compareBytes(k, key) >= 0
        case .before(let end): return compareBytes(k, key) >= 0 && compareBytes(k, end) < 0
        }
    }

    // MARK: Leases

    /// A lease and the keys attached to it, or nil.
    public func lease(_ id: Int64) -> (record: LeaseRecord, keys: [[UInt8]])? {
        lock.withReadLock {
            guard let l = leases[id] else { return nil }
            return (l.record, l.keys.sorted { compareBytes($0, $1) < 0 })
        }
    }

    /// Every lease, by id.
    public func allLeases() -> [LeaseRecord] {
        lock.withReadLock { leases.values.map(\.record).sorted { $0.id < $1.id } }
    }

    // MARK: Writes

    /// Applies a batch of changes in one backend write transaction.
    ///
    /// Each change made through `KeyspaceWriter` is its own revision. If the
    /// backend fails, the batch is rolled back entirely and the error thrown
    /// (as `KeyspaceError.backend`). Not reentrant.
    public func apply<R>(_ body: (KeyspaceWriter<Backend>) throws -> R) throws -> R {
        try writer.withLock {
            var attempt: KeyspaceWriter<Backend>?
            let result: R
            do {
                result = try backend.write { tx in
                    // A backend may run this body again (LMDB growing its map).
                    attempt?.rollback()
                    let w = KeyspaceWriter(keyspace: self, tx: tx, startRevision: revision, leases: leases)
                    attempt = w
                    let r = try body(w)
                    try w.finish()
                    return r
                }
            } catch {
                attempt?.rollback()
                if let e = error as? BackendError { throw KeyspaceError.backend(e) }
                throw error
            }
            let w = attempt!
            lock.withWriteLock { leases = w.leases }
            published.withLock { p in
                p.revision = w.currentRevision
                if let applied = w.appliedIndex { p.appliedIndex = applied }
            }
            if let rev = w.pendingCompaction { finishCompaction(at: rev) }
            return result
        }
    }

    /// Compacts at `rev` in a batch of its own and removes the superseded
    /// revisions before returning.
    @discardableResult
    public func compact(_ rev: Int64) throws -> Int64 {
        try apply { w in try w.compact(rev) }
    }

    /// Trims the index at a committed compaction and removes the superseded
    /// revisions from the backend. The batch has committed: a failure here
    /// does not fail it; it is logged, remembered in `compactionError`, and
    /// the removal is finished at the next open (the scheduled compaction is
    /// in `meta`).
    private func finishCompaction(at rev: Int64) {
        var keep = Set<Revision>()
        lock.withWriteLock {
            compactRev = rev
            index.compactAll(at: rev) { keep.insert($0.revision) }
        }
        do {
            try removeCompacted(upTo: rev, keeping: keep)
            compactionFailure.withLock { $0 = nil }
        } catch {
            logger.error(
                "removing compacted revisions failed; retried at the next open",
                metadata: ["revision": "\(rev)", "error": "\(error)"])
            compactionFailure.withLock { $0 = "\(error)" }
        }
    }

    /// Why the last removal of compacted revisions failed, if it did.
    public var compactionError: String? { compactionFailure.withLock { $0 } }

    /// Deletes from the `key` table every revision up to `rev` that `keep`
    /// does not name, in transactions of at most `compactionBatchSize`
    /// deletes, then records the compaction as finished.
    private func removeCompacted(upTo rev: Int64, keeping keep: Set<Revision>) throws {
        let end = Codec.revisionKey(Revision(main: rev + 1))
        var start: [UInt8] = Codec.revisionKey(Revision(main: 0))
        while true {
            // Find the next batch in a snapshot, then delete it in a write
            // transaction whose closure mutates nothing it captures. (Mutating
            // captured state inside the write closure here was miscompiled by
            // Swift 6.3 under cross-module optimization — a use-after-free of
            // the memory backend's tables; `map-check` guards against it.)
            let (doomed, next) = try superseded(from: start, to: end, keeping: keep)
            let key = keyTable
            try backend.write { tx in
                for k in doomed { try tx.delete(key, k) }
            }
            guard let next else { break }
            start = next
        }
        let meta = metaTable
        let finished = Codec.revisionKey(Revision(main: rev))
        try backend.write { tx in try tx.put(meta, Self.finishedCompactKey, finished) }
    }

    /// Up to `compactionBatchSize` revision keys in `[start, end)` that
    /// `keep` does not name, and where to continue (nil: the range is done).
    private func superseded(
        from start: [UInt8], to end: [UInt8], keeping keep: Set<Revision>
    ) throws -> (doomed: [[UInt8]], next: [UInt8]?) {
        let limit = compactionBatchSize
        let scanLimit = compactionBatchSize * 10
        let tx = try backend.beginRead()
        defer { tx.close() }
        var doomed: [[UInt8]] = []
        var scanned = 0
        var next: [UInt8]? = nil
        try tx.scan(keyTable, from: start, to: end, reverse: false) { k, _ in
            if doomed.count >= limit || scanned >= scanLimit {
                next = Array(k)
                return false
            }
            scanned += 1
            guard let (r, _) = Codec.parseRevisionKey(k) else {
                throw KeyspaceError.corrupt("bad revision key in the key table")
            }
            if !keep.contains(r) { doomed.append(Array(k)) }
            return true
        }
        return (doomed, next)
    }
}

extension KeyspaceError {
    /// The keyspace error for any error a backend call or callback threw.
    init(wrapping error: any Error) {
        switch error {
        case let e as KeyspaceError: self = e
        case let e as BackendError: self = .backend(e)
        default: self = .corrupt("\(error)")
        }
    }
}

/// A lease's stored record and the live keys attached to it.
struct LeaseState {
    var record: LeaseRecord
    var keys: Set<[UInt8]>
}

func stableSorted(_ kvs: [KeyValue], by less: (KeyValue, KeyValue) -> Bool) -> [KeyValue] {
    kvs.enumerated().sorted { a, b in
        if less(a.element, b.element) { return true }
        if less(b.element, a.element) { return false }
        return a.offset < b.offset
    }.map(\.element)
}

extension SortedByteMap where Value == KeyIndex {
    /// Compacts every key at `rev`, dropping keys left without revisions;
    /// `kept` sees each revision kept at or below `rev`.
    mutating func compactAll(at rev: Int64, _ kept: (IndexedRevision) -> Void) {
        updateOrRemoveAll { _, ki in
            if let survivor = ki.compact(at: rev) { kept(survivor) }
            return !ki.revs.isEmpty
        }
    }
}

/// Where raised alarms live in the `meta` table: `alarm/` + member id + alarm type (both
/// big-endian), with an empty value. Shared by the keyspace and the etcd snapshot export.
public enum AlarmKeys {
    public static var prefix: [UInt8] { Array("alarm/".utf8) }
    /// The first key after every alarm key (`alarm0`).
    public static var end: [UInt8] { Array("alarm0".utf8) }

    public static func key(memberID: UInt64, alarm: Int) -> [UInt8] {
        prefix + Codec.bigEndian(memberID) + Codec.bigEndian(UInt64(truncatingIfNeeded: alarm))
    }

    /// The member and alarm type of an alarm key; nil if `key` is not one.
    public static func parse(_ key: UnsafeRawBufferPointer) -> (memberID: UInt64, alarm: Int)? {
        let p = prefix
        guard key.count == p.count + 16, key.starts(with: p) else { return nil }
        let member: UInt64 = Codec.loadBigEndian(key, p.count)
        let alarm: UInt64 = Codec.loadBigEndian(key, p.count + 8)
        return (member, Int(truncatingIfNeeded: alarm))
    }
}
