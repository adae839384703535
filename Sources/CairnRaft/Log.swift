/// Entries received but not yet persisted by the caller (plus an incoming snapshot).
/// Invariant: `entries[i].index == offset + i`.
struct Unstable {
    var snapshot: Snapshot?
    var entries: [Entry] = []
    var offset: UInt64

    func term(at i: UInt64) -> UInt64? {
        if i < offset {
            if let s = snapshot, s.metadata.index == i { return s.metadata.term }
            return nil
        }
        let p = i - offset
        if p >= UInt64(entries.count) { return nil }
        return entries[Int(p)].term
    }

    var lastIndex: UInt64? {
        if let e = entries.last { return e.index }
        if let s = snapshot { return s.metadata.index }
        return nil
    }
    var firstIndex: UInt64? { snapshot.map { $0.metadata.index + 1 } }

    mutating func stableTo(index: UInt64, term: UInt64) {
        guard let t = self.term(at: index), t == term, index >= offset else { return }
        entries.removeFirst(Int(index + 1 - offset))
        offset = index + 1
    }

    mutating func stableSnapTo(index: UInt64) {
        if let s = snapshot, s.metadata.index == index { snapshot = nil }
    }

    mutating func restore(_ s: Snapshot) {
        offset = s.metadata.index + 1
        entries = []
        snapshot = s
    }

    mutating func truncateAndAppend(_ es: ArraySlice<Entry>) {
        let after = es.first!.index
        if after == offset + UInt64(entries.count) {
            entries.append(contentsOf: es)
        } else if after <= offset {
            offset = after
            entries = Array(es)
        } else {
            entries.removeSubrange(Int(after - offset)...)
            entries.append(contentsOf: es)
        }
    }
}

/// The Raft log: a storage-backed stable prefix plus the unstable tail.
final class RaftLog {
    let storage: any Storage
    var unstable: Unstable
    /// Highest index known to be committed by a quorum.
    var committed: UInt64
    /// Highest index the application has applied (reported through `advance`).
    var applied: UInt64
    let maxCommittedSizePerReadyBytes: UInt64
    /// First fatal storage error; once set, the node is halted.
    var haltError: RaftError?

    init(storage: any Storage, maxCommittedSizePerReadyBytes: UInt64) throws {
        self.storage = storage
        self.maxCommittedSizePerReadyBytes = maxCommittedSizePerReadyBytes
        let first: UInt64
        let last: UInt64
        do {
            first = try storage.firstIndex()
            last = try storage.lastIndex()
        } catch {
            throw RaftError.storageFailure(detail: "reading log bounds: \(error)")
        }
        if first == 0 || last + 1 < first {
            throw RaftError.storageGap(detail: "storage reports firstIndex \(first) > lastIndex \(last) + 1")
        }
        unstable = Unstable(offset: last + 1)
        committed = first - 1
        applied = first - 1
    }

    func halt(_ e: RaftError) { if haltError == nil { haltError = e } }

    private func storageFirst() -> UInt64 {
        do { return try storage.firstIndex() } catch {
            halt(.storageFailure(detail: "firstIndex: \(error)"))
            return 1
        }
    }
    private func storageLast() -> UInt64 {
        do { return try storage.lastIndex() } catch {
            halt(.storageFailure(detail: "lastIndex: \(error)"))
            return 0
        }
    }

    var firstIndex: UInt64 { unstable.firstIndex ?? storageFirst() }
    var lastIndex: UInt64 { unstable.lastIndex ?? storageLast() }
    /// Last index the caller has made durable (used for the leader's own vote in commit).
    var stableLastIndex: UInt64 {
        if !unstable.entries.isEmpty { return unstable.offset - 1 }
        return lastIndex
    }

    /// Term of entry `i`, or nil if it is compacted or beyond the log.
    func term(at i: UInt64) -> UInt64? {
        let dummy = firstIndex - 1
        if i < dummy || i > lastIndex { return nil }
        if let t = unstable.term(at: i) { return t }
        do { return try storage.term(at: i) } catch let e as StorageError {
            if e == .compacted || e == .unavailable { return nil }
            halt(.storageFailure(detail: "term(\(i)): \(e)"))
            return nil
        } catch {
            halt(.storageFailure(detail: "term(\(i)): \(error)"))
            return nil
        }
    }

    var lastTerm: UInt64 { term(at: lastIndex) ?? 0 }

    func matchTerm(_ i: UInt64, _ t: UInt64) -> Bool { term(at: i) == t }

    /// §5.4.1: is a log ending at (lastIndex, term) at least as up to date as ours?
    func isUpToDate(lastIndex li: UInt64, term t: UInt64) -> Bool {
        let lt = lastTerm
        return t > lt || (t == lt && li >= lastIndex)
    }

    /// Index of the first entry of `es` that conflicts with (or is missing from) our log; 0 if none.
    func findConflict(_ es: [Entry]) -> UInt64 {
        for e in es where !matchTerm(e.index, e.term) { return e.index }
        return 0
    }

    /// Largest index <= `index` whose term is <= `term` (fast log back-off, thesis §5.3).
    func findConflictByTerm(index: UInt64, term: UInt64) -> (index: UInt64, term: UInt64) {
        var i = index
        while true {
            guard let t = self.term(at: i) else { return (i, 0) }
            if t <= term || i == 0 { return (i, t) }
            i -= 1
        }
    }

    /// Appends `es` after (index, logTerm) if that entry matches; returns the new last index.
    func maybeAppend(index: UInt64, logTerm: UInt64, committed c: UInt64, entries es: [Entry]) -> UInt64? {
        guard matchTerm(index, logTerm) else { return nil }
        // Entries must be contiguous after `index`; anything else is bad input.
        for (k, e) in es.enumerated() where e.index != index + 1 + UInt64(k) { return nil }
        let lastNew = index + UInt64(es.count)
        let ci = findConflict(es)
        if ci != 0 {
            if ci <= committed { return nil }  // would rewrite committed history: refuse
            let start = Int(ci - (index + 1))
            append(es[start...])
        }
        commitTo(min(c, lastNew))
        return lastNew
    }

    @discardableResult
    func append(_ es: ArraySlice<Entry>) -> UInt64 {
        if es.isEmpty { return lastIndex }
        precondition(es.first!.index > committed, "append would overwrite committed entries")
        unstable.truncateAndAppend(es)
        return lastIndex
    }

    func commitTo(_ c: UInt64) {
        if committed < c && c <= lastIndex { committed = c }
    }

    /// §5.4.2: only an entry of the current term is committed by counting replicas.
    func maybeCommit(index: UInt64, term t: UInt64) -> Bool {
        if index > committed, term(at: index) == t {
            commitTo(index)
            return true
        }
        return false
    }

    func appliedTo(_ i: UInt64) {
        if i > applied && i <= committed { applied = i }
    }

    /// Entries in `[lo, hi)`, limited by `maxSizeBytes`; nil if `lo` is compacted.
    func slice(from lo: UInt64, to hi: UInt64, maxSizeBytes: UInt64) -> [Entry]? {
        if lo >= hi { return [] }
        if lo < firstIndex { return nil }
        let hiClamped = min(hi, lastIndex + 1)
        if lo >= hiClamped { return [] }
        var out: [Entry] = []
        var size: UInt64 = 0
        let uOff = unstable.offset
        if lo < uOff {
            let stHi = min(hiClamped, uOff)
            let got: [Entry]
            do {
                got = try storage.entries(from: lo, to: stHi, maxSizeBytes: maxSizeBytes)
            } catch let e as StorageError where e == .compacted {
                return nil
            } catch {
                halt(.storageFailure(detail: "entries(\(lo)..<\(stHi)): \(error)"))
                return []
            }
            for (k, e) in got.enumerated() where e.index != lo + UInt64(k) {
                halt(.storageGap(detail: "storage returned index \(e.index) where \(lo + UInt64(k)) was expected"))
                return []
            }
            if got.isEmpty || got.count > Int(stHi - lo) {
                halt(.storageGap(detail: "storage returned \(got.count) entries for \(lo)..<\(stHi)"))
                return []
            }
            if got.count < Int(stHi - lo) { return got }  // size limit reached
            out = got
            for e in got { size += e.sizeBytes }
        }
        if hiClamped > uOff {
            let s = Int(max(lo, uOff) - uOff)
            let e = Int(hiClamped - uOff)
            for ent in unstable.entries[s..<e] {
                size += ent.sizeBytes
                if !out.isEmpty && size > maxSizeBytes { break }
                out.append(ent)
            }
        }
        return out
    }

    func entries(from lo: UInt64, maxSizeBytes: UInt64) -> [Entry]? {
        slice(from: lo, to: lastIndex + 1, maxSizeBytes: maxSizeBytes)
    }

    var hasPendingSnapshot: Bool { unstable.snapshot != nil }

    func hasNextCommittedEntries() -> Bool {
        if hasPendingSnapshot { return false }
        return committed > applied
    }

    func nextCommittedEntries() -> [Entry] {
        if hasPendingSnapshot { return [] }
        let lo = applied + 1
        if committed + 1 <= lo { return [] }
        let first = firstIndex
        if lo < first {
            // Storage was compacted past what the state machine applied: those entries are lost.
            halt(.storageGap(detail: "next entry to apply is \(lo) but storage starts at \(first)"))
            return []
        }
        guard let es = slice(from: lo, to: committed + 1, maxSizeBytes: maxCommittedSizePerReadyBytes) else {
            halt(.storageGap(detail: "entries from \(lo) to apply were compacted"))
            return []
        }
        return es
    }

    func restore(_ s: Snapshot) {
        committed = s.metadata.index
        unstable.restore(s)
    }

    func snapshot() -> Snapshot? {
        if let s = unstable.snapshot { return s }
        do { return try storage.snapshot() } catch let e as StorageError
            where e == .snapshotTemporarilyUnavailable {
            return nil
        } catch {
            halt(.storageFailure(detail: "snapshot: \(error)"))
            return nil
        }
    }
}
