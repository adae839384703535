/// Errors a `Storage` may throw that the protocol knows how to handle.
public enum StorageError: Error, Sendable, Equatable {
    /// The requested index is older than the first retained entry (compacted into a snapshot).
    case compacted
    /// The requested index is beyond the last entry.
    case unavailable
    /// The snapshot passed to `applySnapshot` is older than the current one.
    case snapshotOutOfDate
    /// A snapshot is being produced; the leader will retry later.
    case snapshotTemporarilyUnavailable
}

/// The log storage the application implements and Raft only reads.
///
/// Raft never writes through this protocol: entries, hard state and snapshots handed out in a
/// `Ready` are persisted by the caller (into its own implementation) before `advance()`.
/// Any error other than `StorageError` halts the node with `RaftError.storageFailure`. A log with
/// a hole (entries not contiguous from the requested index) halts it with `RaftError.storageGap`.
public protocol Storage: AnyObject {
    /// Persisted hard state and the configuration as of the last applied snapshot/conf change.
    func initialState() throws -> (hardState: HardState, confState: ConfState)
    /// Entries in `[lo, hi)`, at least one entry if any exist, stopping before exceeding
    /// `maxSizeBytes` (by `Entry.sizeBytes`). Throws `.compacted` if `lo < firstIndex()`.
    func entries(from lo: UInt64, to hi: UInt64, maxSizeBytes: UInt64) throws -> [Entry]
    /// Term of entry `index`, valid for `firstIndex()-1 ... lastIndex()` (the first value is the
    /// snapshot's term). Throws `.compacted` below that range and `.unavailable` above it.
    func term(at index: UInt64) throws -> UInt64
    /// Index of the first entry available (snapshot index + 1).
    func firstIndex() throws -> UInt64
    /// Index of the last entry (the snapshot index if the log is empty).
    func lastIndex() throws -> UInt64
    /// The most recent snapshot. May throw `.snapshotTemporarilyUnavailable`.
    ///
    /// Its `metadata.confState` must be the configuration as of `metadata.index` (the result of
    /// the last conf change at or below that index), never a later one. A member added after the
    /// snapshot's index is not listed and would refuse the snapshot, so the leader does not send
    /// it and raises `Ready.snapshotTooOld` instead: the application must then take a new
    /// snapshot (at its applied index, with its current `ConfState`) for that member to catch up.
    func snapshot() throws -> Snapshot
}

/// In-memory `Storage` for tests, simulation and benchmarks. Not thread-safe.
public final class MemoryStorage: Storage {
    public private(set) var hardState = HardState()
    public private(set) var snapshotValue = Snapshot()
    /// Configuration as of the last applied conf change (or snapshot); returned by `initialState`.
    /// Kept apart from `snapshotValue`, whose `ConfState` belongs to the snapshot's index.
    public private(set) var confState = ConfState()
    /// `ents[0]` is a dummy entry holding the snapshot index and term.
    private var ents: [Entry] = [Entry()]

    public init() {}

    /// A storage whose initial configuration is `voters`/`learners` (a fresh cluster's bootstrap).
    public convenience init(voters: [UInt64], learners: [UInt64] = []) {
        self.init()
        snapshotValue.metadata.confState = ConfState(voters: voters, learners: learners)
        confState = snapshotValue.metadata.confState
    }

    public func initialState() throws -> (hardState: HardState, confState: ConfState) {
        (hardState, confState)
    }

    public func setHardState(_ hs: HardState) { hardState = hs }

    /// Records the configuration as of an applied conf change (so a restart sees it). Does not
    /// touch the stored snapshot, whose `ConfState` stays the one as of its index.
    public func setConfState(_ cs: ConfState) { confState = cs }

    private var offset: UInt64 { ents[0].index }

    public func entries(from lo: UInt64, to hi: UInt64, maxSizeBytes: UInt64) throws -> [Entry] {
        if lo <= offset { throw StorageError.compacted }
        if hi > (ents.last!.index + 1) { throw StorageError.unavailable }
        if lo >= hi { return [] }
        let start = Int(lo - offset)
        let end = Int(hi - offset)
        var size: UInt64 = 0
        var out: [Entry] = []
        out.reserveCapacity(end - start)
        for i in start..<end {
            size += ents[i].sizeBytes
            if !out.isEmpty && size > maxSizeBytes { break }
            out.append(ents[i])
        }
        return out
    }

    public func term(at index: UInt64) throws -> UInt64 {
        if index < offset { throw StorageError.compacted }
        let i = Int(index - offset)
        if i >= ents.count { throw StorageError.unavailable }
        return ents[i].term
    }

    public func firstIndex() throws -> UInt64 { offset + 1 }
    public func lastIndex() throws -> UInt64 { ents.last!.index }
    public func snapshot() throws -> Snapshot { snapshotValue }

    /// Replaces the contents with `snap` (a snapshot received from the leader).
    public func applySnapshot(_ snap: Snapshot) throws {
        if snapshotValue.metadata.index >= snap.metadata.index && snap.metadata.index != 0 {
            throw StorageError.snapshotOutOfDate
        }
        snapshotValue = snap
        confState = snap.metadata.confState
        ents = [Entry(term: snap.metadata.term, index: snap.metadata.index)]
    }

    /// Makes a snapshot at `index` (which must be applied) and returns it. Does not compact.
    /// `confState` must be the configuration as of `index` (what `applyConfChange` returned for
    /// the last conf change at or below it); nil means the one last recorded by `setConfState`,
    /// which is only right when no conf change above `index` has been applied.
    @discardableResult
    public func createSnapshot(index: UInt64, confState cs: ConfState?, data: [UInt8]) throws -> Snapshot {
        if index <= snapshotValue.metadata.index { throw StorageError.snapshotOutOfDate }
        guard index <= ents.last!.index else { throw StorageError.unavailable }
        snapshotValue.metadata.index = index
        snapshotValue.metadata.term = ents[Int(index - offset)].term
        snapshotValue.metadata.confState = cs ?? confState
        snapshotValue.data = data
        return snapshotValue
    }

    /// Discards entries up to and including `index`.
    public func compact(upTo index: UInt64) throws {
        if index <= offset { throw StorageError.compacted }
        guard index <= ents.last!.index else { throw StorageError.unavailable }
        let i = Int(index - offset)
        var kept = [Entry(term: ents[i].term, index: ents[i].index)]
        kept.append(contentsOf: ents[(i + 1)...])
        ents = kept
    }

    /// Appends `entries`, truncating any conflicting suffix. Entries already compacted are skipped.
    public func append(_ entries: [Entry]) throws {
        guard let first = entries.first else { return }
        let firstKept = offset + 1
        let last = entries.last!.index
        if last < firstKept { return }
        var es = entries[...]
        if first.index < firstKept { es = es.dropFirst(Int(firstKept - first.index)) }
        let pos = Int(es.first!.index - offset)
        if pos > ents.count {
            throw RaftError.storageGap(detail: "append at \(es.first!.index) but last is \(ents.last!.index)")
        }
        ents.removeSubrange(pos...)
        ents.append(contentsOf: es)
    }
}
