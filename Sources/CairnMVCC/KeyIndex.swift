import CairnBackend

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One revision in a key's history, as the index keeps it.
struct IndexedRevision: Equatable {
    var main: Int64
    var sub: Int32
    var tombstone: Bool

    var revision: Revision { Revision(main: main, sub: Int64(sub)) }
}

/// A key's revisions, oldest first, with the newest kept inline: most keys have one
/// revision (until they are overwritten, and again after a compaction), and then the list
/// costs no allocation. (Measured with 1,000,000 keys: an array per key was 64 bytes of heap
/// each, about a quarter of the server's memory.)
struct RevisionList: Equatable {
    private var newest = IndexedRevision(main: 0, sub: 0, tombstone: false)
    private var hasNewest = false
    /// Every revision but the newest, oldest first.
    private var older: [IndexedRevision] = []

    init() {}

    init(_ revisions: [IndexedRevision]) {
        for r in revisions { self.append(r) }
    }

    var isEmpty: Bool { !hasNewest }
    var count: Int { hasNewest ? older.count + 1 : 0 }
    var last: IndexedRevision? { hasNewest ? newest : nil }

    subscript(i: Int) -> IndexedRevision {
        precondition(i >= 0 && i < count, "revision \(i) of \(count)")
        return i == older.count ? newest : older[i]
    }

    mutating func append(_ r: IndexedRevision) {
        if hasNewest { older.append(newest) }
        newest = r
        hasNewest = true
    }

    /// Drops the `n` oldest revisions.
    mutating func removeFirst(_ n: Int) {
        precondition(n >= 0 && n <= count)
        if n == 0 { return }
        if n == count {
            self = RevisionList()
        } else {
            older.removeFirst(n)
            if older.isEmpty { older = [] }  // gives the storage back
        }
    }
}

/// The in-memory history of one user key: every revision the key table still
/// holds for it, oldest first. A tombstone ends a generation; the next put
/// starts a new one. etcd keeps the same information as a list of
/// generations; a flat list with tombstone flags holds it in at most one allocation.
struct KeyIndex {
    var revs: RevisionList
    /// Create revision of the live generation (0 when the key is deleted).
    var createdMain: Int64
    /// Version of the live generation (0 when the key is deleted).
    var version: Int64
    /// Lease attached to the live value (0: none).
    var lease: Int64

    var isLive: Bool { !(revs.last?.tombstone ?? true) }

    /// The newest revision with `main <= rev` if it is not a tombstone.
    func visible(at rev: Int64) -> IndexedRevision? {
        guard let last = revs.last else { return nil }
        if last.main <= rev { return last.tombstone ? nil : last }
        // Binary search for the last element with main <= rev.
        var lo = 0
        var hi = revs.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if revs[mid].main <= rev { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let r = revs[lo - 1]
        return r.tombstone ? nil : r
    }

    /// Drops what a compaction at `rev` removes: every revision older than the
    /// newest one at or below `rev`, and that one too when it is a tombstone.
    /// Returns the revision kept at or below `rev`, if any.
    mutating func compact(at rev: Int64) -> IndexedRevision? {
        var lo = 0
        var hi = revs.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if revs[mid].main <= rev { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let newest = revs[lo - 1]
        if newest.tombstone {
            revs.removeFirst(lo)
            return nil
        }
        revs.removeFirst(lo - 1)
        return newest
    }
}

/// Where a range request's `rangeEnd` puts the end of the range.
enum RangeBound {
    /// Only `key`.
    case single
    /// Every key >= `key` (`rangeEnd == [0]`).
    case unbounded
    /// Keys in `[key, end)`.
    case before([UInt8])

    init(_ rangeEnd: [UInt8]) {
        if rangeEnd.isEmpty {
            self = .single
        } else if rangeEnd == [0] {
            self = .unbounded
        } else {
            self = .before(rangeEnd)
        }
    }
}

extension SortedByteMap where Value == KeyIndex {
    /// Visits the index entries of the keys in `[key, bound)` in key order
    /// until `body` returns false. The key is a view valid during the call.
    func visit(_ key: [UInt8], _ bound: RangeBound, _ body: (UnsafeRawBufferPointer, KeyIndex) throws -> Bool) rethrows {
        switch bound {
        case .single:
            if let i = find(key) { _ = try key.withUnsafeBytes { try body($0, value(at: i)) } }
        case .unbounded:
            try key.withUnsafeBytes { k in try forEach(from: k, to: nil, reverse: false, body) }
        case .before(let end):
            // A range end at or below the key selects nothing, as in etcd.
            guard compareBytes(key, end) < 0 else { return }
            try key.withUnsafeBytes { k in
                try end.withUnsafeBytes { e in try forEach(from: k, to: e, reverse: false, body) }
            }
        }
    }
}
