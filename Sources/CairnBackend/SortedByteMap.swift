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
public struct SortedByteMap<Value> {
    @usableFromInline
    struct Chunk {
        @usableFromInline var keys: [[UInt8]]
        @usableFromInline var values: [Value]
        /// The first 8 bytes of each key, big-endian, zero-padded: most
        /// comparisons end here without touching the key's storage.
        @usableFromInline var prefixes: [UInt64]
        @inlinable init(keys: [[UInt8]], values: [Value]) {
            self.keys = keys
            self.values = values
            self.prefixes = keys.map { k in k.withUnsafeBytes { bytePrefix($0) } }
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

    @inlinable mutating func setLast(_ c: Int, _ key: [UInt8]) {
        lastKeys[c] = key
        lastPrefixes[c] = key.withUnsafeBytes { bytePrefix($0) }
    }

    @inlinable mutating func insertLast(_ key: [UInt8], at c: Int) {
        lastKeys.insert(key, at: c)
        lastPrefixes.insert(key.withUnsafeBytes { bytePrefix($0) }, at: c)
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
        let keys = chunks[chunk].keys
        let lo = searchFirstNotLess(keys, chunks[chunk].prefixes, key)
        let found = lo < keys.count && keys[lo].withUnsafeBytes { compareBytes($0, key) } == 0
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
        if i.offset &+ 1 < chunks[i.chunk].keys.count { return Index(chunk: i.chunk, offset: i.offset &+ 1) }
        return Index(chunk: i.chunk &+ 1, offset: 0)
    }

    /// The position before `i`, or nil at the start.
    @inlinable
    public func index(before i: Index) -> Index? {
        if i.offset > 0 { return Index(chunk: i.chunk, offset: i.offset &- 1) }
        if i.chunk == 0 { return nil }
        return Index(chunk: i.chunk &- 1, offset: chunks[i.chunk &- 1].keys.count &- 1)
    }

    @inlinable public func key(at i: Index) -> [UInt8] { chunks[i.chunk].keys[i.offset] }
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
        if chunks.isEmpty {
            chunks.append(Chunk(keys: [key], values: [value]))
            insertLast(key, at: 0)
            _count = 1
            return nil
        }
        var c = key.withUnsafeBytes { chunkFor($0) }
        if c == chunks.count {
            // Beyond every key: append to the last chunk.
            c = chunks.count - 1
            chunks[c].keys.append(key)
            chunks[c].values.append(value)
            chunks[c].prefixes.append(key.withUnsafeBytes { bytePrefix($0) })
            setLast(c, key)
            _count += 1
            splitIfNeeded(c)
            return nil
        }
        let (o, found) = key.withUnsafeBytes { offsetIn(c, $0) }
        if found {
            let old = chunks[c].values[o]
            chunks[c].values[o] = value
            return old
        }
        chunks[c].keys.insert(key, at: o)
        chunks[c].values.insert(value, at: o)
        chunks[c].prefixes.insert(key.withUnsafeBytes { bytePrefix($0) }, at: o)
        _count += 1
        splitIfNeeded(c)
        return nil
    }

    @inlinable
    mutating func splitIfNeeded(_ c: Int) {
        let n = chunks[c].keys.count
        guard n > Self.chunkCapacity * 2 else { return }
        let half = n / 2
        let right = Chunk(keys: Array(chunks[c].keys[half...]), values: Array(chunks[c].values[half...]))
        chunks[c].keys.removeSubrange(half...)
        chunks[c].values.removeSubrange(half...)
        chunks[c].prefixes.removeSubrange(half...)
        chunks.insert(right, at: c + 1)
        setLast(c, chunks[c].keys[half - 1])
        insertLast(right.keys[right.keys.count - 1], at: c + 1)
    }

    /// Removes the entry at `i`.
    @inlinable
    @discardableResult
    public mutating func remove(at i: Index) -> Value {
        let v = chunks[i.chunk].values.remove(at: i.offset)
        chunks[i.chunk].keys.remove(at: i.offset)
        chunks[i.chunk].prefixes.remove(at: i.offset)
        _count -= 1
        if chunks[i.chunk].keys.isEmpty {
            chunks.remove(at: i.chunk)
            removeLast(at: i.chunk)
        } else if i.offset == chunks[i.chunk].keys.count {
            setLast(i.chunk, chunks[i.chunk].keys[i.offset - 1])
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
    public mutating func updateOrRemoveAll(_ body: ([UInt8], inout Value) throws -> Bool) rethrows {
        var c = 0
        while c < chunks.count {
            var keys: [[UInt8]] = []
            var values: [Value] = []
            var chunk = chunks[c]
            chunks[c] = Chunk(keys: [], values: [])  // keeps `chunk` uniquely referenced
            keys.reserveCapacity(chunk.keys.count)
            values.reserveCapacity(chunk.keys.count)
            for j in 0..<chunk.keys.count {
                if try body(chunk.keys[j], &chunk.values[j]) {
                    keys.append(chunk.keys[j])
                    values.append(chunk.values[j])
                }
            }
            _count -= chunk.keys.count - keys.count
            if keys.isEmpty {
                chunks.remove(at: c)
                removeLast(at: c)
            } else {
                setLast(c, keys[keys.count - 1])
                chunks[c] = Chunk(keys: keys, values: values)
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
            if chunk.keys.isEmpty { return "chunk \(c) is empty" }
            if chunk.keys.count != chunk.values.count || chunk.keys.count != chunk.prefixes.count {
                return "chunk \(c): \(chunk.keys.count) keys, \(chunk.values.count) values, \(chunk.prefixes.count) prefixes"
            }
            for (j, k) in chunk.keys.enumerated() {
                if let p = previous, compareBytes(p, k) >= 0 { return "chunk \(c) offset \(j) out of order" }
                if chunk.prefixes[j] != k.withUnsafeBytes({ bytePrefix($0) }) { return "chunk \(c) offset \(j) bad prefix" }
                previous = k
            }
            if lastKeys[c] != chunk.keys[chunk.keys.count - 1] { return "chunk \(c) last key stale" }
            if lastPrefixes[c] != lastKeys[c].withUnsafeBytes({ bytePrefix($0) }) { return "chunk \(c) last prefix stale" }
            total += chunk.keys.count
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
    /// order, or in reverse order, until `body` returns false.
    @inlinable
    public func forEach(
        from start: UnsafeRawBufferPointer, to end: UnsafeRawBufferPointer?, reverse: Bool,
        _ body: (_ key: [UInt8], _ value: Value) throws -> Bool
    ) rethrows {
        if !reverse {
            var i = lowerBound(start)
            while i.chunk < chunks.count {
                let k = chunks[i.chunk].keys[i.offset]
                if let end, k.withUnsafeBytes({ compareBytes($0, end) }) >= 0 { return }
                if try !body(k, chunks[i.chunk].values[i.offset]) { return }
                i = index(after: i)
            }
        } else {
            var i: Index? = end.map { lowerBound($0) } ?? endIndex
            i = index(before: i!)
            while let j = i {
                let k = chunks[j.chunk].keys[j.offset]
                if k.withUnsafeBytes({ compareBytes($0, start) }) < 0 { return }
                if try !body(k, chunks[j.chunk].values[j.offset]) { return }
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
    let p = bytePrefix(key)
    var lo = 0
    var hi = prefixes.count
    while lo < hi {
        let mid = (lo &+ hi) >> 1
        let q = prefixes[mid]
        let less = q != p ? q < p : compareBytes(keys[mid], key) < 0
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
