/// The in-memory storage backend: the same semantics as LMDB's, for tests and
/// deterministic simulation.
///
/// Committed state is a value (`[SortedByteMap]`, copy-on-write per chunk):
/// a read transaction holds the value that was current when it began, so any
/// number of readers see consistent snapshots while the one writer works on
/// its own copy and publishes it on commit.
public final class MemoryBackend: StorageBackend {
    public typealias ReadTx = MemoryReadTransaction
    public typealias WriteTx = MemoryWriteTransaction

    struct Committed: Sendable {
        var tables: [SortedByteMap<[UInt8]>]
        var sizeBytes: Int64
    }

    private let names: [String]
    private let quotaBytes: Int64
    private let committed: LockedValue<Committed>
    /// Serializes write transactions (held for the whole body).
    private let writer = Lock()

    public init(configuration: BackendConfiguration) {
        self.names = configuration.tables
        self.quotaBytes = configuration.quotaBytes
        self.committed = LockedValue(
            Committed(tables: Array(repeating: SortedByteMap(), count: configuration.tables.count), sizeBytes: 0))
    }

    public func table(named name: String) throws(BackendError) -> Table {
        guard let i = names.firstIndex(of: name) else { throw .unknownTable(name) }
        return Table(name: name, id: UInt32(i))
    }

    public func read<R>(_ body: (MemoryReadTransaction) throws -> R) throws -> R {
        let tx = try beginRead()
        defer { tx.close() }
        return try body(tx)
    }

    public func beginRead() throws(BackendError) -> MemoryReadTransaction {
        MemoryReadTransaction(tables: committed.withLock { $0.tables })
    }

    public func write<R>(_ body: (MemoryWriteTransaction) throws -> R) throws -> R {
        try writer.withLock {
            let start = committed.withLock { $0 }
            let tx = MemoryWriteTransaction(tables: start.tables, sizeBytes: start.sizeBytes, quotaBytes: quotaBytes)
            let result = try body(tx)
            guard let tables = tx.state else { throw BackendError.transactionClosed }
            let size = tx.sizeBytes
            tx.state = nil
            committed.withLock {
                $0.tables = tables
                $0.sizeBytes = size
            }
            return result
        }
    }

    public func sync() throws(BackendError) {}

    public func stats() throws(BackendError) -> BackendStats {
        let c = committed.withLock { $0 }
        var entries: [String: Int] = [:]
        for (i, name) in names.enumerated() { entries[name] = c.tables[i].count }
        return BackendStats(
            sizeBytes: c.sizeBytes, sizeInUseBytes: c.sizeBytes, pageSizeBytes: 0, pagesInUse: 0,
            capacityBytes: quotaBytes, entriesByTable: entries)
    }
}

/// A read transaction of `MemoryBackend`: a snapshot of the committed tables.
public final class MemoryReadTransaction: MemoryReading, @unchecked Sendable {
    // @unchecked: a transaction is used by one thread at a time (the protocol's
    // contract); `state` is only replaced by `close()` under that contract.
    var state: [SortedByteMap<[UInt8]>]?

    init(tables: [SortedByteMap<[UInt8]>]) { state = tables }

    @inline(__always)
    public func tables() throws(BackendError) -> [SortedByteMap<[UInt8]>] {
        guard let state else { throw .transactionClosed }
        return state
    }


    public func close() { state = nil }
}

/// The write transaction of `MemoryBackend`: a private copy of the tables,
/// published on commit.
public final class MemoryWriteTransaction: MemoryReading, BackendWriteTransaction, @unchecked Sendable {
    // @unchecked: only the thread running `MemoryBackend.write`'s body uses it.
    var state: [SortedByteMap<[UInt8]>]?
    var sizeBytes: Int64
    let quotaBytes: Int64

    init(tables: [SortedByteMap<[UInt8]>], sizeBytes: Int64, quotaBytes: Int64) {
        self.state = tables
        self.sizeBytes = sizeBytes
        self.quotaBytes = quotaBytes
    }

    @inline(__always)
    public func tables() throws(BackendError) -> [SortedByteMap<[UInt8]>] {
        guard let state else { throw .transactionClosed }
        return state
    }


    public func close() {}

    public func put(_ table: Table, _ key: [UInt8], _ value: [UInt8]) throws(BackendError) {
        guard state != nil else { throw .transactionClosed }
        guard !key.isEmpty else { throw .emptyKey }
        let added = Int64(key.count + value.count)
        // Same rule as LMDB: the size may not pass the quota.
        if sizeBytes + added > quotaBytes { throw .quotaExceeded(quotaBytes: quotaBytes) }
        if let old = state![Int(table.id)].updateValue(value, forKey: key) {
            sizeBytes -= Int64(key.count + old.count)
        }
        sizeBytes += added
    }

    public func put(
        _ table: Table, _ key: [UInt8], count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void
    ) throws(BackendError) {
        let value = [UInt8](unsafeUninitializedCapacity: count) { buf, n in
            body(UnsafeMutableRawBufferPointer(buf))
            n = count
        }
        try put(table, key, value)
    }

    @discardableResult
    public func delete(_ table: Table, _ key: [UInt8]) throws(BackendError) -> Bool {
        guard state != nil else { throw .transactionClosed }
        if let old = state![Int(table.id)].removeValue(forKey: key) {
            sizeBytes -= Int64(key.count + old.count)
            return true
        }
        return false
    }

    public func clear(_ table: Table) throws(BackendError) {
        guard state != nil else { throw .transactionClosed }
        var freed: Int64 = 0
        state![Int(table.id)].forEach(from: UnsafeRawBufferPointer(start: nil, count: 0), to: nil, reverse: false) {
            freed += Int64($0.count + $1.count)
            return true
        }
        sizeBytes -= freed
        state![Int(table.id)].removeAll()
    }
}

/// The read operations both memory transactions share.
public protocol MemoryReading: BackendReadTransaction {
    /// The tables this transaction sees (throws once closed).
    func tables() throws(BackendError) -> [SortedByteMap<[UInt8]>]
}

extension MemoryReading {
    public func get(_ table: Table, _ key: [UInt8]) throws(BackendError) -> [UInt8]? {
        try memoryGet(tables(), table, key)
    }

    public func withValue<R>(_ table: Table, _ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        try memoryWithValue(tables(), table, key, body)
    }

    public func scan(
        _ table: Table, from start: [UInt8], to end: [UInt8]?, reverse: Bool,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try memoryScan(tables(), table, start, end, reverse, body)
    }

    public func count(_ table: Table) throws(BackendError) -> Int { try tables()[Int(table.id)].count }
}

@inline(__always)
private func memoryGet(_ tables: [SortedByteMap<[UInt8]>], _ table: Table, _ key: [UInt8]) -> [UInt8]? {
    tables[Int(table.id)][key]
}

@inline(__always)
private func memoryWithValue<R>(
    _ tables: [SortedByteMap<[UInt8]>], _ table: Table, _ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> R
) rethrows -> R {
    guard let v = tables[Int(table.id)][key] else { return try body(nil) }
    return try v.withUnsafeBytes { try body($0) }
}

@inline(__always)
private func memoryScan(
    _ tables: [SortedByteMap<[UInt8]>], _ table: Table, _ start: [UInt8], _ end: [UInt8]?, _ reverse: Bool,
    _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
) rethrows {
    let map = tables[Int(table.id)]
    try start.withUnsafeBytes { s in
        if let end {
            try end.withUnsafeBytes { e in
                try map.forEach(from: s, to: e, reverse: reverse) { k, v in
                    try v.withUnsafeBytes { vp in try body(k, vp) }
                }
            }
        } else {
            try map.forEach(from: s, to: nil, reverse: reverse) { k, v in
                try v.withUnsafeBytes { vp in try body(k, vp) }
            }
        }
    }
}
