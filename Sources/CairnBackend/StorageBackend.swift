/// The storage-backend protocol: an ordered, transactional key-value store of
/// named tables.
///
/// Cairn's keyspace (CairnMVCC) and snapshots (CairnSnapshot) know only this
/// protocol. Two implementations exist: `LMDBBackend` (CairnLMDB, the default)
/// and `MemoryBackend` (this module, for tests and deterministic simulation).
///
/// ## Contract
/// - **Tables** are named and fixed when the backend is opened
///   (`BackendConfiguration.tables`); a `Table` handle is obtained once with
///   `table(named:)` and is valid for the backend's lifetime.
/// - **Reads** run in read transactions: each is a consistent snapshot of the
///   last committed state when it began. Any number may be open at once, on any
///   threads; a single transaction must not be used by two threads at the same
///   time. `read { tx in … }` scopes one; `beginRead()` returns one that lives
///   until `close()` (long readers such as snapshot streaming).
/// - **Writes** happen only inside `write { tx in … }`. One write transaction
///   exists at a time (callers on other threads wait); it begins and commits on
///   the calling thread, so it never migrates between threads. If the body
///   throws, nothing it wrote is visible, ever. The body may be run **more than
///   once** when the backend has to grow its storage mid-transaction
///   (LMDB's map): it must keep effects outside `tx` replayable or defer them
///   until `write` returns.
/// - Keys are compared bytewise (memcmp order, shorter prefix first). Empty keys
///   are not allowed.
/// - Byte views handed to closures (`UnsafeRawBufferPointer`) are valid only
///   inside that closure.
public protocol StorageBackend: AnyObject, Sendable {
    associatedtype ReadTx: BackendReadTransaction
    associatedtype WriteTx: BackendWriteTransaction

    /// The handle of a table named in the configuration.
    func table(named name: String) throws(BackendError) -> Table

    /// Runs `body` in a read transaction that is closed when it returns.
    func read<R>(_ body: (ReadTx) throws -> R) throws -> R

    /// Opens a read transaction that stays open until `close()` is called on it.
    func beginRead() throws(BackendError) -> ReadTx

    /// Runs `body` in the one write transaction and commits it if `body` returns.
    func write<R>(_ body: (WriteTx) throws -> R) throws -> R

    /// Forces everything committed so far to stable storage (a no-op for the
    /// in-memory backend). Backends that commit without syncing (LMDB with
    /// `MDB_NOSYNC`, see `LMDBBackend`) rely on the WAL until this returns.
    func sync() throws(BackendError)

    /// Size and page statistics.
    func stats() throws(BackendError) -> BackendStats

    /// Rewrites the store without its free space and returns (file bytes before, after).
    /// Reads and writes wait while it runs, as they do during etcd's defragmentation.
    func defragment() throws(BackendError) -> (beforeBytes: Int64, afterBytes: Int64)

    /// After a read of the whole store (a snapshot): the file pages it mapped into the process
    /// need not stay resident there. They stay in the kernel's page cache, as pages read with
    /// `pread` would; later reads map them again. A no-op where nothing is mapped.
    func releaseMappedPages()
}

extension StorageBackend {
    public func releaseMappedPages() {}

    /// Backends without a file (the in-memory one) have nothing to compact.
    public func defragment() throws(BackendError) -> (beforeBytes: Int64, afterBytes: Int64) {
        let size = try stats().sizeBytes
        return (size, size)
    }
}

/// An open table's handle. Cheap to copy.
public struct Table: Hashable, Sendable {
    /// The table's name as configured.
    public let name: String
    /// Backend-specific identifier (LMDB's `MDB_dbi`, the memory backend's slot).
    public let id: UInt32

    public init(name: String, id: UInt32) {
        self.name = name
        self.id = id
    }
}

/// Reads of one consistent snapshot.
public protocol BackendReadTransaction {
    /// The value stored under `key`, copied out, or nil.
    func get(_ table: Table, _ key: [UInt8]) throws(BackendError) -> [UInt8]?

    /// Calls `body` with a view of the value stored under `key` (nil when absent)
    /// without copying it.
    func withValue<R>(_ table: Table, _ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R

    /// Visits the entries whose keys lie in `[start, end)` in key order
    /// (descending when `reverse`), until `body` returns false.
    /// `end == nil` means no upper bound.
    func scan(
        _ table: Table, from start: [UInt8], to end: [UInt8]?, reverse: Bool,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws

    /// Number of entries in the table.
    func count(_ table: Table) throws(BackendError) -> Int

    /// Ends a transaction opened with `beginRead()`. Idempotent. Transactions
    /// scoped by `read { }` are closed by the backend.
    func close()
}

/// Reads and writes of the one write transaction.
public protocol BackendWriteTransaction: BackendReadTransaction {
    /// Stores `value` under `key`, replacing what was there.
    func put(_ table: Table, _ key: [UInt8], _ value: [UInt8]) throws(BackendError)

    /// Stores a value written in place: `body` fills exactly `count` bytes.
    /// Saves a copy for large values.
    func put(_ table: Table, _ key: [UInt8], count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) throws(BackendError)

    /// Removes `key`; returns whether it was present.
    @discardableResult
    func delete(_ table: Table, _ key: [UInt8]) throws(BackendError) -> Bool

    /// Removes every entry of the table.
    func clear(_ table: Table) throws(BackendError)
}

/// What a backend reports about its size.
public struct BackendStats: Sendable, Equatable {
    /// Bytes of the store as allocated on disk (or in memory): etcd's `dbSize`.
    public var sizeBytes: Int64
    /// Bytes actually holding live data: etcd's `dbSizeInUse`.
    public var sizeInUseBytes: Int64
    /// Page size in bytes (0 for backends without pages).
    public var pageSizeBytes: Int
    /// Pages in use (0 for backends without pages).
    public var pagesInUse: Int64
    /// The current ceiling of the store (LMDB's map size).
    public var capacityBytes: Int64
    /// Entries per table.
    public var entriesByTable: [String: Int]

    public init(
        sizeBytes: Int64, sizeInUseBytes: Int64, pageSizeBytes: Int, pagesInUse: Int64,
        capacityBytes: Int64, entriesByTable: [String: Int]
    ) {
        self.sizeBytes = sizeBytes
        self.sizeInUseBytes = sizeInUseBytes
        self.pageSizeBytes = pageSizeBytes
        self.pagesInUse = pagesInUse
        self.capacityBytes = capacityBytes
        self.entriesByTable = entriesByTable
    }
}

/// What every backend is opened with.
public struct BackendConfiguration: Sendable {
    /// The named tables; opening creates those that do not exist.
    public var tables: [String]
    /// The size the store may never exceed (etcd's `--quota-backend-bytes`,
    /// default 2 GiB). Below it, writes never fail for lack of room.
    public var quotaBytes: Int64

    public static let defaultQuotaBytes: Int64 = 2 * 1024 * 1024 * 1024

    public init(tables: [String], quotaBytes: Int64 = BackendConfiguration.defaultQuotaBytes) {
        self.tables = tables
        self.quotaBytes = quotaBytes
    }
}

/// A backend failure. Every backend maps its native errors to these cases.
public enum BackendError: Error, Equatable, CustomStringConvertible {
    /// No table of that name was configured.
    case unknownTable(String)
    /// An empty key was given.
    case emptyKey
    /// The store reached its quota (`quotaBytes`) and cannot take this write.
    case quotaExceeded(quotaBytes: Int64)
    /// A transaction was used after it was closed or committed.
    case transactionClosed
    /// The store cannot be opened: wrong format, incompatible version, locked.
    case cannotOpen(path: String, reason: String)
    /// An I/O or engine error with the engine's code and message.
    case io(code: Int32, message: String)

    public var description: String {
        switch self {
        case .unknownTable(let name): return "backend: unknown table \"\(name)\""
        case .emptyKey: return "backend: empty key"
        case .quotaExceeded(let quota): return "backend: database space exceeded (quota \(quota) bytes)"
        case .transactionClosed: return "backend: transaction already closed"
        case .cannotOpen(let path, let reason): return "backend: cannot open \(path): \(reason)"
        case .io(let code, let message): return "backend: I/O error \(code): \(message)"
        }
    }
}

extension BackendReadTransaction {
    /// Copies every entry of `table` in key order to `body`; the basis of
    /// consistent whole-store copies (snapshots): call it for each table inside
    /// one read transaction.
    public func forEach(
        _ table: Table, _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void
    ) throws {
        try scan(table, from: [0], to: nil, reverse: false) { key, value in
            try body(key, value)
            return true
        }
    }
}
