#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Compares two byte strings in memcmp order (a proper prefix sorts first).
@inlinable
public func compareBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
    let n = min(a.count, b.count)
    if n > 0 {
        let r = memcmp(a.baseAddress!, b.baseAddress!, n)
        if r != 0 { return r < 0 ? -1 : 1 }
    }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
}

/// Compares two byte arrays in memcmp order.
@inlinable
public func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in compareBytes(pa, pb) } }
}

/// An ordered map from byte strings to values: a two-level sorted structure
/// (a sorted list of bounded sorted chunks).
///
/// Lookups are two binary searches; inserts and removals move at most
/// `chunkCapacity * 2` elements. It is a value type whose chunks are
/// copy-on-write, so taking a snapshot is O(1) and the first write after a
/// snapshot copies only the outer arrays and the one chunk it touches. The
/// in-memory backend keeps its tables in it, and the keyspace its key index.
///
/// A chunk keeps its keys packed in one byte array (with their end offsets), not as
/// one array per key: with 1,000,000 short keys, separate arrays cost about 48 bytes of
/// heap each, 44 more than the bytes themselves. Keys are handed to callers as a view of
/// that storage, valid during the call.
public struct SortedByteMap<Value> {
    @usableFromInline
    struct Chunk {
        /// The keys, concatenated in order.
        @usableFromInline var bytes: [UInt8]
        /// Where each key ends in `bytes`.
        @usableFromInline var ends: [UInt32]
        @usableFromInline var values: [Value]
        /// The first 8 bytes of each key, big-endian, zero-padded: most
        /// comparisons end here without touching the key's bytes.
        @usableFromInline var prefixes: [UInt64]

        @inlinable init() {
            bytes = []
            ends = []
            values = []
            prefixes = []
        }

        @inlinable var count: Int { ends.count }

        @inlinable func start(_ i: Int) -> Int { i == 0 ? 0 : Int(ends[i &- 1]) }

        @inlinable func withKey<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            let s = start(i)
            let e = Int(ends[i])
            return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[s..<e])) }
        }

        @inlinable func key(_ i: Int) -> [UInt8] { Array(bytes[start(i)..<Int(ends[i])]) }

        @inlinable mutating func insert(_ key: UnsafeRawBufferPointer, _ value: Value, at i: Int) {
            let s = start(i)
            if i == count {
                bytes.append(contentsOf: key)
            } else {
                bytes.insert(contentsOf: key, at: s)
            }
            let n = UInt32(key.count)
            ends.insert(UInt32(s) &+ n, at: i)
            var j = i &+ 1
            while j < ends.count {
                ends[j] &+= n
                j &+= 1
            }
            values.insert(value, at: i)
            prefixes.insert(bytePrefix(key), at: i)
        }

        @inlinable mutating func remove(at i: Int) -> Value {
            let s = start(i)
            let e = Int(ends[i])
            bytes.removeSubrange(s..<e)
            ends.remove(at: i)
            let n = UInt32(e &- s)
            var j = i
            while j < ends.count {
                ends[j] &-= n
                j &+= 1
            }
            prefixes.remove(at: i)
            return values.remove(at: i)
        }

        /// Moves the entries from `i` on into a new chunk. Both keep only the capacity they
        /// use (removing from an array keeps its capacity: a chunk split in two would hold
        /// half of it empty for good).
        @inlinable mutating func split(at i: Int) -> Chunk {
            var right = Chunk()
            let base = start(i)
            right.bytes = Array(bytes[base...])
            right.ends = ends[i...].map { $0 &- UInt32(base) }
            right.values = Array(values[i...])
            right.prefixes = Array(prefixes[i...])
            bytes = Array(bytes[..<base])
            ends = Array(ends[..<i])
            values = Array(values[..<i])
            prefixes = Array(prefixes[..<i])
            return right
        }

        /// The first offset whose key is >= key.
        @inlinable func firstNotLess(_ key: UnsafeRawBufferPointer) -> Int {
            searchFirstNotLess(prefixes, key) { mid in withKey(mid) { compareBytes($0, key) } }
        }
    }

    /// A position: a chunk and an offset in it.
    public struct Index: Comparable, Sendable {
        public var chunk: Int
        public var offset: Int
        @inlinable public init(chunk: Int, offset: Int) {
            self.chunk = chunk
            self.offset = offset
        }
        @inlinable public static func < (l: Index, r: Index) -> Bool {
            l.chunk != r.chunk ? l.chunk < r.chunk : l.offset < r.offset
        }
    }

    @usableFromInline var chunks: [Chunk] = []
    /// The last key of each chunk, for the outer binary search.
    @usableFromInline var lastKeys: [[UInt8]] = []
    @usableFromInline var lastPrefixes: [UInt64] = []

    @inlinable mutating func refreshLast(_ c: Int) {
        let k = chunks[c].key(chunks[c].count &- 1)
        lastKeys[c] = k
        lastPrefixes[c] = k.withUnsafeBytes { bytePrefix($0) }
    }

    @inlinable mutating func insertLast(of c: Int) {
        let k = chunks[c].key(chunks[c].count &- 1)
        lastKeys.insert(k, at: c)
        lastPrefixes.insert(k.withUnsafeBytes { bytePrefix($0) }, at: c)
    }

    @inlinable mutating func removeLast(at c: Int) {
        lastKeys.remove(at: c)
        lastPrefixes.remove(at: c)
    }
    @usableFromInline var _count: Int = 0
    public var count: Int { _count }

    /// Chunks split when they exceed twice this many entries.
    @usableFromInline static var chunkCapacity: Int { 256 }

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// The first chunk whose last key is >= key (chunks.count when none).
    @inlinable
    func chunkFor(_ key: UnsafeRawBufferPointer) -> Int {
        searchFirstNotLess(lastKeys, lastPrefixes, key)
    }

    /// The first offset in `chunk` whose key is >= key, and whether it equals key.
    @inlinable
    func offsetIn(_ chunk: Int, _ key: UnsafeRawBufferPointer) -> (Int, Bool) {
        let lo = chunks[chunk].firstNotLess(key)
        let found = lo < chunks[chunk].count && chunks[chunk].withKey(lo) { compareBytes($0, key) } == 0
        return (lo, found)
    }

    /// The position of the first key >= `key` (== endIndex when none).
    @inlinable
    public func lowerBound(_ key: UnsafeRawBufferPointer) -> Index {
        let c = chunkFor(key)
        if c == chunks.count { return endIndex }
        return Index(chunk: c, offset: offsetIn(c, key).0)
    }

    @inlinable
    public func lowerBound(_ key: [UInt8]) -> Index {
        key.withUnsafeBytes { lowerBound($0) }
    }

    public var startIndex: Index { Index(chunk: 0, offset: 0) }
    public var endIndex: Index { Index(chunk: chunks.count, offset: 0) }

    /// The position after `i`.
    @inlinable
    public func index(after i: Index) -> Index {
        if i.offset &+ 1 < chunks[i.chunk].count { return Index(chunk: i.chunk, offset: i.offset &+ 1) }
        return Index(chunk: i.chunk &+ 1, offset: 0)
    }

    /// The position before `i`, or nil at the start.
    @inlinable
    public func index(before i: Index) -> Index? {
        if i.offset > 0 { return Index(chunk: i.chunk, offset: i.offset &- 1) }
        if i.chunk == 0 { return nil }
        return Index(chunk: i.chunk &- 1, offset: chunks[i.chunk &- 1].count &- 1)
    }

    /// The key at `i` (a copy).
    @inlinable public func key(at i: Index) -> [UInt8] { chunks[i.chunk].key(i.offset) }
    /// Calls `body` with a view of the key at `i`, valid during the call.
    @inlinable public func withKey<R>(at i: Index, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try chunks[i.chunk].withKey(i.offset, body)
    }
    @inlinable public func value(at i: Index) -> Value { chunks[i.chunk].values[i.offset] }

    /// Replaces the value at an existing position.
    @inlinable
    public mutating func setValue(_ v: Value, at i: Index) {
        chunks[i.chunk].values[i.offset] = v
    }

    /// Calls `body` with the value at `i` in place.
    @inlinable
    public mutating func modifyValue<R>(at i: Index, _ body: (inout Value) throws -> R) rethrows -> R {
        try body(&chunks[i.chunk].values[i.offset])
    }

    @inlinable
    public func find(_ key: UnsafeRawBufferPointer) -> Index? {
        let c = chunkFor(key)
        if c == chunks.count { return nil }
        let (o, found) = offsetIn(c, key)
        return found ? Index(chunk: c, offset: o) : nil
    }

    @inlinable
    public func find(_ key: [UInt8]) -> Index? { key.withUnsafeBytes { find($0) } }

    @inlinable
    public subscript(key: [UInt8]) -> Value? {
        guard let i = find(key) else { return nil }
        return value(at: i)
    }

    /// Inserts or replaces; returns the previous value.
    @inlinable
    @discardableResult
    public mutating func updateValue(_ value: Value, forKey key: [UInt8]) -> Value? {
        key.withUnsafeBytes { updateValue(value, forKey: $0) }
    }

    /// Inserts or replaces; returns the previous value. The key's bytes are copied.
    @inlinable
    @discardableResult
    public mutating func updateValue(_ value: Value, forKey key: UnsafeRawBufferPointer) -> Value? {
        if chunks.isEmpty {
            var chunk = Chunk()
            chunk.insert(key, value, at: 0)
            chunks.append(chunk)
            insertLast(of: 0)
            _count = 1
            return nil
        }
        var c = chunkFor(key)
        if c == chunks.count {
            // Beyond every key: append to the last chunk.
            c = chunks.count - 1
            chunks[c].insert(key, value, at: chunks[c].count)
            refreshLast(c)
            _count += 1
            splitIfNeeded(c, appending: true)
            return nil
        }
        let (o, found) = offsetIn(c, key)
        if found {
            let old = chunks[c].values[o]
            chunks[c].values[o] = value
            return old
        }
        chunks[c].insert(key, value, at: o)
        _count += 1
        splitIfNeeded(c)
        return nil
    }

    /// Splits chunk `c` once it holds more than `2 * chunkCapacity` entries: in half, or, when
    /// keys arrive in ascending order (appended to the last chunk, as revisions and
    /// sequential keys do), leaving it full and starting a new one with the last entry, so
    /// that chunks left behind stay full.
    @inlinable
    mutating func splitIfNeeded(_ c: Int, appending: Bool = false) {
        let n = chunks[c].count
        guard n > Self.chunkCapacity * 2 else { return }
        let right = chunks[c].split(at: appending ? n - 1 : n / 2)
        chunks.insert(right, at: c + 1)
        refreshLast(c)
        insertLast(of: c + 1)
    }

    /// Removes the entry at `i`.
    @inlinable
    @discardableResult
    public mutating func remove(at i: Index) -> Value {
        let v = chunks[i.chunk].remove(at: i.offset)
        _count -= 1
        if chunks[i.chunk].count == 0 {
            chunks.remove(at: i.chunk)
            removeLast(at: i.chunk)
        } else if i.offset == chunks[i.chunk].count {
            refreshLast(i.chunk)
        }
        return v
    }

    @inlinable
    @discardableResult
    public mutating func removeValue(forKey key: [UInt8]) -> Value? {
        guard let i = find(key) else { return nil }
        return remove(at: i)
    }

    /// Updates every value in place, in key order, and removes the entries
    /// for which `body` returns false.
    public mutating func updateOrRemoveAll(_ body: (UnsafeRawBufferPointer, inout Value) throws -> Bool) rethrows {
        var c = 0
        while c < chunks.count {
            var chunk = chunks[c]
            chunks[c] = Chunk()  // keeps `chunk` uniquely referenced
            var kept = Chunk()
            kept.bytes.reserveCapacity(chunk.bytes.count)
            kept.ends.reserveCapacity(chunk.count)
            kept.values.reserveCapacity(chunk.count)
            kept.prefixes.reserveCapacity(chunk.count)
            var values = chunk.values
            chunk.values = []  // `values` is then the only reference: updated in place
            try chunk.bytes.withUnsafeBytes { all in
                for j in 0..<chunk.ends.count {
                    let key = UnsafeRawBufferPointer(rebasing: all[chunk.start(j)..<Int(chunk.ends[j])])
                    if try body(key, &values[j]) {
                        kept.bytes.append(contentsOf: key)
                        kept.ends.append(UInt32(kept.bytes.count))
                        kept.values.append(values[j])
                        kept.prefixes.append(chunk.prefixes[j])
                    }
                }
            }
            _count -= chunk.ends.count - kept.count
            if kept.count == 0 {
                chunks.remove(at: c)
                removeLast(at: c)
            } else {
                chunks[c] = kept
                refreshLast(c)
                c += 1
            }
        }
    }

    /// Describes the first broken internal invariant, or nil when the
    /// structure is consistent. For tests.
    public func invariantViolation() -> String? {
        if chunks.count != lastKeys.count || chunks.count != lastPrefixes.count {
            return "chunks \(chunks.count), lastKeys \(lastKeys.count), lastPrefixes \(lastPrefixes.count)"
        }
        var total = 0
        var previous: [UInt8]?
        for (c, chunk) in chunks.enumerated() {
            if chunk.count == 0 { return "chunk \(c) is empty" }
            if chunk.count != chunk.values.count || chunk.count != chunk.prefixes.count {
                return "chunk \(c): \(chunk.count) keys, \(chunk.values.count) values, \(chunk.prefixes.count) prefixes"
            }
            if Int(chunk.ends[chunk.count - 1]) != chunk.bytes.count { return "chunk \(c): ends do not cover the bytes" }
            for j in 0..<chunk.count {
                if chunk.start(j) > Int(chunk.ends[j]) { return "chunk \(c) offset \(j): end before start" }
                let k = chunk.key(j)
                if let p = previous, compareBytes(p, k) >= 0 { return "chunk \(c) offset \(j) out of order" }
                if chunk.prefixes[j] != k.withUnsafeBytes({ bytePrefix($0) }) { return "chunk \(c) offset \(j) bad prefix" }
                previous = k
            }
            if lastKeys[c] != chunk.key(chunk.count - 1) { return "chunk \(c) last key stale" }
            if lastPrefixes[c] != lastKeys[c].withUnsafeBytes({ bytePrefix($0) }) { return "chunk \(c) last prefix stale" }
            total += chunk.count
        }
        return total == _count ? nil : "count \(_count) but \(total) entries"
    }

    public mutating func removeAll() {
        chunks = []
        lastKeys = []
        lastPrefixes = []
        _count = 0
    }

    /// Visits entries with keys in `[start, end)` (end nil: unbounded) in
    /// order, or in reverse order, until `body` returns false. The key is a view of the
    /// map's storage, valid during the call.
    @inlinable
    public func forEach(
        from start: UnsafeRawBufferPointer, to end: UnsafeRawBufferPointer?, reverse: Bool,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: Value) throws -> Bool
    ) rethrows {
        if !reverse {
            var i = lowerBound(start)
            while i.chunk < chunks.count {
                let go = try chunks[i.chunk].withKey(i.offset) { k -> Bool in
                    if let end, compareBytes(k, end) >= 0 { return false }
                    return try body(k, chunks[i.chunk].values[i.offset])
                }
                if !go { return }
                i = index(after: i)
            }
        } else {
            var i: Index? = end.map { lowerBound($0) } ?? endIndex
            i = index(before: i!)
            while let j = i {
                let go = try chunks[j.chunk].withKey(j.offset) { k -> Bool in
                    if compareBytes(k, start) < 0 { return false }
                    return try body(k, chunks[j.chunk].values[j.offset])
                }
                if !go { return }
                i = index(before: j)
            }
        }
    }
}

/// The first 8 bytes of `b`, big-endian, zero-padded.
@inlinable
public func bytePrefix(_ b: UnsafeRawBufferPointer) -> UInt64 {
    if b.count >= 8 { return UInt64(bigEndian: b.loadUnaligned(as: UInt64.self)) }
    var v: UInt64 = 0
    for i in 0..<8 { v = v << 8 | (i < b.count ? UInt64(b[i]) : 0) }
    return v
}

/// Binary search over sorted `keys` (with their `prefixes`) for the first
/// position whose key is >= `key`.
@inlinable
func searchFirstNotLess(_ keys: [[UInt8]], _ prefixes: [UInt64], _ key: UnsafeRawBufferPointer) -> Int {
    searchFirstNotLess(prefixes, key) { compareBytes(keys[$0], key) }
}

/// Binary search over sorted keys known by their 8-byte `prefixes`: `compare(i)` compares
/// key `i` with `key` when their prefixes are equal.
@inlinable
func searchFirstNotLess(_ prefixes: [UInt64], _ key: UnsafeRawBufferPointer, _ compare: (Int) -> Int) -> Int {
    let p = bytePrefix(key)
    var lo = 0
    var hi = prefixes.count
    while lo < hi {
        let mid = (lo &+ hi) >> 1
        let q = prefixes[mid]
        let less = q != p ? q < p : compare(mid) < 0
        if less { lo = mid &+ 1 } else { hi = mid }
    }
    return lo
}

/// Compares a byte array with a byte view in memcmp order.
@inlinable
func compareBytes(_ a: [UInt8], _ b: UnsafeRawBufferPointer) -> Int {
    a.withUnsafeBytes { compareBytes($0, b) }
}

extension SortedByteMap: Sendable where Value: Sendable {}
extension SortedByteMap.Chunk: Sendable where Value: Sendable {}
