import CLMDB
import CairnBackend

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The LMDB storage backend (liblmdb 0.9), Cairn's default.
///
/// ## Flags and durability
/// The environment is opened with:
/// - `MDB_NOTLS`: read transactions are not tied to threads, so a reader may
///   be opened on one thread and used (one thread at a time) on another, and
///   readers are pooled (`mdb_txn_reset`/`mdb_txn_renew`) instead of taking a
///   reader slot per transaction.
/// - `MDB_NORDAHEAD`: the keyspace is read randomly; read-ahead only evicts
///   useful pages.
/// - `MDB_NOSYNC` unless `syncOnCommit` is set: a commit writes its pages
///   with `pwrite` but does not `fdatasync`. Cairn's durability comes from the
///   WAL, which is fsynced before a write is acknowledged; the keyspace stores
///   the Raft index it has applied in the same transaction as each change. A
///   process crash loses nothing (the pages are in the kernel's cache). After
///   a machine crash the backend may be missing its last commits; on restart
///   the server replays the WAL from the stored applied index, and that replay
///   is idempotent because the index moves with the data. The server calls
///   `sync()` (`mdb_env_sync(force)`) after each snapshot, before it releases WAL
///   segments, so the log is never released before the backend state it covers
///   is on disk.
///
/// ## Growth
/// LMDB fails writes with `MDB_MAP_FULL` once its memory map is full. The map
/// starts at `initialMapSizeBytes` and doubles on demand up to the quota
/// (`BackendConfiguration.quotaBytes`): before a write transaction when the
/// used pages pass 3/4 of the map, and if a transaction still hits
/// `MDB_MAP_FULL` it is aborted, the map grown and the body run again. Growing
/// requires that no transaction of this process be open (LMDB's rule), so it
/// waits for open readers to close and holds new readers back meanwhile.
/// Only at the quota does a write fail, with `BackendError.quotaExceeded`.
///
/// ## Limits
/// Backend keys are at most 511 bytes (LMDB's compile-time limit); the
/// keyspace's keys are 17- and 18-byte revisions, so user keys never meet it.
public final class LMDBBackend: StorageBackend, @unchecked Sendable {
    // @unchecked: the LMDB environment handle is thread-safe (MDB_NOTLS); every
    // mutable field is behind a Lock.
    public typealias ReadTx = LMDBReadTransaction
    public typealias WriteTx = LMDBWriteTransaction

    public struct Options: Sendable {
        /// The first size of the memory map.
        public var initialMapSizeBytes: Int64 = 64 * 1024 * 1024
        /// fdatasync on every commit (off: the WAL provides durability).
        public var syncOnCommit: Bool = false
        /// Reader slots in the lock file.
        public var maxReaders: UInt32 = 1024
        /// Idle read transactions kept for reuse.
        public var readerPoolSize: Int = 64
        public init() {}
    }

    /// Replaced only by `defragment`, which holds the writer lock and the reader gate
    /// exclusively; everything else reads it after entering the gate or under the writer lock.
    private(set) var env: OpaquePointer
    let path: String
    private let names: [String]
    private let dbis: [MDB_dbi]
    private let envFlags: UInt32
    private let maxReaders: UInt32
    let quotaBytes: Int64
    private let pageSizeBytes: Int
    private let gate = ReaderGate()
    private let writer = Lock()
    private let pool: LockedValue<[TxnHandle]>
    private let readerPoolSize: Int
    private let mapSize: LockedValue<Int64>

    /// Opens (creating if needed) the LMDB environment in directory `path`.
    public init(path: String, configuration: BackendConfiguration, options: Options = Options()) throws(BackendError) {
        var envp: OpaquePointer?
        try check(mdb_env_create(&envp))
        guard let env = envp else { throw .io(code: -1, message: "mdb_env_create returned no environment") }
        var ok = false
        defer { if !ok { mdb_env_close(env) } }

        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw .cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        Self.removeDefragmentLeftovers(path)  // a crash mid-defragmentation leaves its copy
        // Start from the existing file's size when it is larger than the initial map.
        var st = stat()
        var initial = min(options.initialMapSizeBytes, configuration.quotaBytes)
        if stat(path + "/data.mdb", &st) == 0 { initial = max(initial, Int64(st.st_size)) }
        let pageSize = Int64(sysconf(Int32(_SC_PAGESIZE)))
        initial = (initial + pageSize - 1) / pageSize * pageSize

        try check(mdb_env_set_maxdbs(env, MDB_dbi(configuration.tables.count + 1)))
        try check(mdb_env_set_maxreaders(env, options.maxReaders))
        try check(mdb_env_set_mapsize(env, Int(initial)))
        var flags = UInt32(MDB_NOTLS | MDB_NORDAHEAD)
        if !options.syncOnCommit { flags |= UInt32(MDB_NOSYNC) }
        let rc = mdb_env_open(env, path, flags, 0o600)
        if rc != 0 { throw .cannotOpen(path: path, reason: lmdbMessage(rc)) }
        let handles = try Self.openTables(env, configuration.tables, path: path)

        var s = MDB_stat()
        try check(mdb_env_stat(env, &s))
        var info = MDB_envinfo()
        try check(mdb_env_info(env, &info))

        self.env = env
        self.envFlags = flags
        self.maxReaders = options.maxReaders
        self.path = path
        self.names = configuration.tables
        self.dbis = handles
        self.quotaBytes = configuration.quotaBytes
        self.pageSizeBytes = Int(s.ms_psize)
        self.pool = LockedValue([])
        self.readerPoolSize = options.readerPoolSize
        self.mapSize = LockedValue(Int64(info.me_mapsize))
        ok = true
    }

    deinit {
        for h in pool.withLock({ $0 }) { mdb_txn_abort(h.txn) }
        mdb_env_close(env)
    }

    /// Opens (creating) the named tables in a new environment; their handles, in order.
    private static func openTables(_ env: OpaquePointer, _ names: [String], path: String) throws(BackendError) -> [MDB_dbi] {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn))
        var handles: [MDB_dbi] = []
        for name in names {
            var dbi: MDB_dbi = 0
            let rc = mdb_dbi_open(txn, name, UInt32(MDB_CREATE), &dbi)
            if rc != 0 {
                mdb_txn_abort(txn)
                throw .cannotOpen(path: path, reason: "table \(name): \(lmdbMessage(rc))")
            }
            handles.append(dbi)
        }
        try check(mdb_txn_commit(txn))
        return handles
    }

    public func table(named name: String) throws(BackendError) -> Table {
        guard let i = names.firstIndex(of: name) else { throw .unknownTable(name) }
        return Table(name: name, id: UInt32(dbis[i]))
    }

    // MARK: Reads

    public func read<R>(_ body: (LMDBReadTransaction) throws -> R) throws -> R {
        let tx = try beginRead()
        defer { tx.close() }
        return try body(tx)
    }

    public func beginRead() throws(BackendError) -> LMDBReadTransaction {
        gate.enter()
        if let txn = pool.withLock({ $0.popLast() })?.txn {
            let rc = mdb_txn_renew(txn)
            if rc == 0 { return LMDBReadTransaction(backend: self, txn: txn) }
            mdb_txn_abort(txn)
        }
        var txn: OpaquePointer?
        let rc = mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn)
        if rc != 0 {
            gate.leave()
            throw .io(code: rc, message: lmdbMessage(rc))
        }
        return LMDBReadTransaction(backend: self, txn: txn!)
    }

    /// Returns a finished reader's handle to the pool (or frees it).
    func release(_ txn: OpaquePointer) {
        mdb_txn_reset(txn)
        let kept = pool.withLock { p -> Bool in
            guard p.count < readerPoolSize else { return false }
            p.append(TxnHandle(txn: txn))
            return true
        }
        if !kept { mdb_txn_abort(txn) }
        gate.leave()
    }

    // MARK: Writes

    public func write<R>(_ body: (LMDBWriteTransaction) throws -> R) throws -> R {
        try writer.withLock {
            try growIfNearlyFull()
            var attempts = 0
            while true {
                attempts += 1
                var txn: OpaquePointer?
                try check(mdb_txn_begin(env, nil, 0, &txn))
                let tx = LMDBWriteTransaction(backend: self, txn: txn!)
                do {
                    let result = try body(tx)
                    tx.open = false
                    let rc = mdb_txn_commit(txn)
                    if rc == MDB_MAP_FULL {
                        tx.mapFull = true
                        throw BackendError.quotaExceeded(quotaBytes: quotaBytes)
                    }
                    try check(rc)
                    return result
                } catch {
                    if tx.open { tx.open = false; mdb_txn_abort(txn) }
                    // The map filled up inside this attempt (whatever error the
                    // body turned that into): grow and run the body again, as
                    // the protocol allows. At the quota the error stands.
                    guard tx.mapFull, attempts < 8, mapSize.current < quotaBytes else { throw error }
                    try grow(minimumBytes: mapSize.current * 2)
                }
            }
        }
    }

    /// Grows the map ahead of need when 3/4 of it is in use.
    private func growIfNearlyFull() throws(BackendError) {
        var info = MDB_envinfo()
        try check(mdb_env_info(env, &info))
        let used = Int64(info.me_last_pgno + 1) * Int64(pageSizeBytes)
        let size = Int64(info.me_mapsize)
        if used * 4 >= size * 3 && size < quotaBytes {
            try grow(minimumBytes: size * 2)
        }
    }

    /// Sets a larger map size (at most the quota); waits until no reader is open.
    private func grow(minimumBytes: Int64) throws(BackendError) {
        let current = mapSize.current
        guard current < quotaBytes else { throw .quotaExceeded(quotaBytes: quotaBytes) }
        var target = min(max(minimumBytes, current + Int64(pageSizeBytes)), quotaBytes)
        target = target / Int64(pageSizeBytes) * Int64(pageSizeBytes)
        let rc: Int32 = gate.exclusive {
            // Pooled readers are reset (not active) but hold no snapshot; free
            // them so the remap cannot be observed through a stale handle.
            let idle = pool.withLock { p -> [TxnHandle] in
                let all = p
                p = []
                return all
            }
            for h in idle { mdb_txn_abort(h.txn) }
            return mdb_env_set_mapsize(env, Int(target))
        }
        try check(rc)
        var info = MDB_envinfo()
        try check(mdb_env_info(env, &info))
        mapSize.withLock { $0 = Int64(info.me_mapsize) }
    }

    // MARK: Maintenance

    public func sync() throws(BackendError) {
        gate.enter()
        defer { gate.leave() }
        try check(mdb_env_sync(env, 1))
    }

    /// Drops the memory map's pages from the process's page tables (`MADV_DONTNEED`). The map
    /// is a read-only shared mapping of the file (no `MDB_WRITEMAP`), so nothing can be lost:
    /// the pages stay in the page cache and the next access maps them again (a minor fault).
    /// Inside the reader gate, so the map cannot be moved by a resize or a defragmentation
    /// meanwhile (which would leave the address range to another mapping).
    ///
    /// LMDB reports the map's address only for `MDB_FIXEDMAP`, so the ranges come from
    /// `/proc/self/maps` (the mappings of this store's `data.mdb`).
    public func releaseMappedPages() {
        gate.enter()
        defer { gate.leave() }
        let fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            text.append(contentsOf: chunk[0..<n])
        }
        let file = Self.canonicalPath(path + "/data.mdb")
        for line in text.split(separator: UInt8(ascii: "\n")) {
            // "start-end perms offset dev inode path"
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
            guard fields.count >= 6,
                String(decoding: Array(fields[5...].joined(separator: [UInt8(ascii: " ")])), as: UTF8.self) == file
            else { continue }
            let bounds = fields[0].split(separator: UInt8(ascii: "-"))
            guard bounds.count == 2, let start = UInt(String(decoding: bounds[0], as: UTF8.self), radix: 16),
                let end = UInt(String(decoding: bounds[1], as: UTF8.self), radix: 16), end > start,
                let base = UnsafeMutableRawPointer(bitPattern: start)
            else { continue }
            _ = madvise(base, Int(end - start), MADV_DONTNEED)
        }
    }

    /// `path` with symbolic links and relative parts resolved, as `/proc/self/maps` shows it.
    static func canonicalPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    public func stats() throws(BackendError) -> BackendStats {
        var info = MDB_envinfo()
        gate.enter()
        let rcInfo = mdb_env_info(env, &info)
        gate.leave()
        try check(rcInfo)
        var st = stat()
        let fileSize: Int64 = stat(path + "/data.mdb", &st) == 0 ? Int64(st.st_size) : 0
        var entries: [String: Int] = [:]
        var pages: Int64 = 0
        let tx = try beginRead()
        defer { tx.close() }
        do {
            var s = MDB_stat()
            // The main database holds the table directory.
            try check(mdb_stat(tx.txn, 1, &s))
            pages += Int64(s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages)
            for (i, name) in names.enumerated() {
                try check(mdb_stat(tx.txn, dbis[i], &s))
                entries[name] = Int(s.ms_entries)
                pages += Int64(s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages)
            }
        }
        pages += 2  // the two meta pages
        return BackendStats(
            sizeBytes: fileSize, sizeInUseBytes: pages * Int64(pageSizeBytes), pageSizeBytes: pageSizeBytes,
            pagesInUse: pages, capacityBytes: Int64(info.me_mapsize), entriesByTable: entries)
    }

    /// Writes a consistent, compacted copy of the store to `directory`
    /// (`mdb_env_copy2` with `MDB_CP_COMPACT`): the basis of defragmentation.
    public func copyCompacted(to directory: String) throws(BackendError) {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw .io(code: errno, message: "mkdir \(directory): \(String(cString: strerror(errno)))")
        }
        gate.enter()
        defer { gate.leave() }
        try check(mdb_env_copy2(env, directory, UInt32(MDB_CP_COMPACT)))
    }

    /// Defragments the store: writes a compacted copy beside it (readers go on meanwhile,
    /// writers wait), makes the copy durable, then, with no reader open, closes the
    /// environment, renames the copy over `data.mdb` (atomic: a crash leaves the old or the
    /// new file, both complete) and reopens. The file shrinks to the pages in use.
    public func defragment() throws(BackendError) -> (beforeBytes: Int64, afterBytes: Int64) {
        let outcome = writer.withLock {
            Result { () throws(BackendError) -> (beforeBytes: Int64, afterBytes: Int64) in try defragmentHoldingWriter() }
        }
        return try outcome.get()
    }

    private func defragmentHoldingWriter() throws(BackendError) -> (beforeBytes: Int64, afterBytes: Int64) {
        let before = fileSize(path + "/data.mdb")
        let tmp = Self.defragmentDirectory(path)
        Self.removeDefragmentLeftovers(path)
        // A failed copy (a full disk is the usual reason to defragment) must not leave its
        // partial file behind to keep the disk full.
        do {
            try copyCompacted(to: tmp)
            _ = chmod(tmp + "/data.mdb", 0o600)  // as the store it replaces (the copy gets the umask's mode)
            try fsyncPath(tmp + "/data.mdb")
        } catch {
            Self.removeDefragmentLeftovers(path)
            throw error
        }
        let renamed: Result<Void, BackendError> = gate.exclusive {
            let idle = pool.withLock { p -> [TxnHandle] in
                let all = p
                p = []
                return all
            }
            for h in idle { mdb_txn_abort(h.txn) }
            mdb_env_close(env)
            var outcome: Result<Void, BackendError> = .success(())
            if rename(tmp + "/data.mdb", path + "/data.mdb") != 0 {
                outcome = .failure(.io(code: errno, message: "rename \(tmp)/data.mdb: \(String(cString: strerror(errno)))"))
            }
            // Reopen whatever is in place now: the compacted copy, or the old file if the rename
            // failed. Both are complete stores; with neither open the process cannot go on
            // (every handle would point into a closed environment), so it stops loudly.
            var lastError: BackendError?
            for _ in 0..<3 {
                switch Result(catching: { () throws(BackendError) in try reopen() }) {
                case .success(let fresh):
                    env = fresh
                    return outcome
                case .failure(let error):
                    lastError = error
                }
            }
            fatalError("LMDB: cannot reopen \(path) after defragmentation: \(String(describing: lastError))")
        }
        Self.removeDefragmentLeftovers(path)
        try renamed.get()
        try fsyncPath(path)
        return (before, fileSize(path + "/data.mdb"))
    }

    static func defragmentDirectory(_ path: String) -> String { path + "/defrag.tmp" }

    /// Removes what an interrupted or failed defragmentation left (never the live store).
    static func removeDefragmentLeftovers(_ path: String) {
        let tmp = defragmentDirectory(path)
        _ = unlink(tmp + "/data.mdb")
        _ = unlink(tmp + "/lock.mdb")
        _ = rmdir(tmp)
    }

    /// A new environment on `path` with the same flags, map size and table handles.
    private func reopen() throws(BackendError) -> OpaquePointer {
        var envp: OpaquePointer?
        try check(mdb_env_create(&envp))
        guard let fresh = envp else { throw .io(code: -1, message: "mdb_env_create returned no environment") }
        var ok = false
        defer { if !ok { mdb_env_close(fresh) } }
        try check(mdb_env_set_maxdbs(fresh, MDB_dbi(names.count + 1)))
        try check(mdb_env_set_maxreaders(fresh, maxReaders))
        try check(mdb_env_set_mapsize(fresh, Int(mapSize.current)))
        let rc = mdb_env_open(fresh, path, envFlags, 0o600)
        if rc != 0 { throw .cannotOpen(path: path, reason: lmdbMessage(rc)) }
        let handles = try Self.openTables(fresh, names, path: path)
        guard handles == dbis else {
            throw .cannotOpen(path: path, reason: "table handles changed on reopen (\(dbis) -> \(handles))")
        }
        ok = true
        return fresh
    }
}

private func fileSize(_ path: String) -> Int64 {
    var st = stat()
    return stat(path, &st) == 0 ? Int64(st.st_size) : 0
}

/// fsync of a file or directory by path.
private func fsyncPath(_ path: String) throws(BackendError) {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw .io(code: errno, message: "open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    if fsync(fd) != 0 { throw .io(code: errno, message: "fsync \(path): \(String(cString: strerror(errno)))") }
}

@inline(__always)
func check(_ rc: Int32) throws(BackendError) {
    if rc != 0 { throw .io(code: rc, message: lmdbMessage(rc)) }
}

func lmdbMessage(_ rc: Int32) -> String {
    String(cString: mdb_strerror(rc))
}

/// An idle (reset) read transaction handle kept for reuse.
struct TxnHandle: @unchecked Sendable {
    // @unchecked: a reset LMDB read handle may be renewed on any thread (MDB_NOTLS).
    let txn: OpaquePointer
}

/// Counts open readers so the map can be resized when there are none.
final class ReaderGate: @unchecked Sendable {
    // @unchecked: all state is guarded by `mutex`.
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    @exclusivity(unchecked) private var readers = 0
    @exclusivity(unchecked) private var resizing = false

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    func enter() {
        pthread_mutex_lock(&mutex)
        while resizing { pthread_cond_wait(&cond, &mutex) }
        readers += 1
        pthread_mutex_unlock(&mutex)
    }

    func leave() {
        pthread_mutex_lock(&mutex)
        readers -= 1
        if readers == 0 { pthread_cond_broadcast(&cond) }
        pthread_mutex_unlock(&mutex)
    }

    func exclusive<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(&mutex)
        resizing = true
        while readers > 0 { pthread_cond_wait(&cond, &mutex) }
        let r = body()
        resizing = false
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
        return r
    }
}

/// Shared read operations on an LMDB transaction handle.
protocol LMDBReading: BackendReadTransaction {
    var txn: OpaquePointer { get }
    func ensureOpen() throws(BackendError)
}

extension LMDBReading {
    public func get(_ table: Table, _ key: [UInt8]) throws(BackendError) -> [UInt8]? {
        try ensureOpen()
        guard !key.isEmpty else { return nil }
        var v = MDB_val()
        let rc: Int32 = key.withUnsafeBytes { kp in
            var k = MDB_val(mv_size: kp.count, mv_data: UnsafeMutableRawPointer(mutating: kp.baseAddress))
            return mdb_get(txn, MDB_dbi(table.id), &k, &v)
        }
        if rc == MDB_NOTFOUND { return nil }
        try check(rc)
        return [UInt8](UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    public func withValue<R>(_ table: Table, _ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        try ensureOpen()
        guard !key.isEmpty else { return try body(nil) }
        var v = MDB_val()
        let rc: Int32 = key.withUnsafeBytes { kp in
            var k = MDB_val(mv_size: kp.count, mv_data: UnsafeMutableRawPointer(mutating: kp.baseAddress))
            return mdb_get(txn, MDB_dbi(table.id), &k, &v)
        }
        if rc == MDB_NOTFOUND { return try body(nil) }
        try check(rc)
        return try body(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    public func scan(
        _ table: Table, from start: [UInt8], to end: [UInt8]?, reverse: Bool,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try ensureOpen()
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, MDB_dbi(table.id), &cursor))
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()

        func position(_ key: [UInt8], _ op: MDB_cursor_op) -> Int32 {
            key.withUnsafeBytes { kp in
                k = MDB_val(mv_size: kp.count, mv_data: UnsafeMutableRawPointer(mutating: kp.baseAddress))
                return mdb_cursor_get(cursor, &k, &v, op)
            }
        }

        var rc: Int32
        if !reverse {
            rc = start.isEmpty ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST) : position(start, MDB_SET_RANGE)
        } else if let end {
            rc = position(end, MDB_SET_RANGE)
            if rc == MDB_NOTFOUND {
                rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST)
            } else if rc == 0 {
                // SET_RANGE found the first key >= end: step back one.
                rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV)
            }
        } else {
            rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST)
        }
        while rc == 0 {
            let key = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
            if !reverse {
                if let end, end.withUnsafeBytes({ compareBytes(key, $0) }) >= 0 { return }
            } else {
                if start.withUnsafeBytes({ compareBytes(key, $0) }) < 0 { return }
            }
            if try !body(key, UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)) { return }
            rc = mdb_cursor_get(cursor, &k, &v, reverse ? MDB_PREV : MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try check(rc) }
    }

    public func count(_ table: Table) throws(BackendError) -> Int {
        try ensureOpen()
        var s = MDB_stat()
        try check(mdb_stat(txn, MDB_dbi(table.id), &s))
        return Int(s.ms_entries)
    }
}

/// A read transaction of `LMDBBackend`. Use from one thread at a time.
public final class LMDBReadTransaction: LMDBReading, @unchecked Sendable {
    // @unchecked: used by one thread at a time, by contract.
    let backend: LMDBBackend
    let txn: OpaquePointer
    @exclusivity(unchecked) private var closed = false

    init(backend: LMDBBackend, txn: OpaquePointer) {
        self.backend = backend
        self.txn = txn
    }

    deinit { close() }

    func ensureOpen() throws(BackendError) {
        if closed { throw .transactionClosed }
    }

    public func close() {
        if closed { return }
        closed = true
        backend.release(txn)
    }
}

/// The write transaction of `LMDBBackend`; valid only inside `write { }`.
public final class LMDBWriteTransaction: LMDBReading, BackendWriteTransaction, @unchecked Sendable {
    // @unchecked: used only by the thread running `LMDBBackend.write`'s body.
    let backend: LMDBBackend
    let txn: OpaquePointer
    var open = true
    /// Set when LMDB answered MDB_MAP_FULL during this attempt.
    var mapFull = false

    init(backend: LMDBBackend, txn: OpaquePointer) {
        self.backend = backend
        self.txn = txn
    }

    func ensureOpen() throws(BackendError) {
        if !open { throw .transactionClosed }
    }

    public func close() {}

    public func put(_ table: Table, _ key: [UInt8], _ value: [UInt8]) throws(BackendError) {
        try ensureOpen()
        guard !key.isEmpty else { throw .emptyKey }
        let rc: Int32 = key.withUnsafeBytes { kp in
            value.withUnsafeBytes { vp in
                var k = MDB_val(mv_size: kp.count, mv_data: UnsafeMutableRawPointer(mutating: kp.baseAddress))
                var v = MDB_val(mv_size: vp.count, mv_data: UnsafeMutableRawPointer(mutating: vp.baseAddress))
                return mdb_put(txn, MDB_dbi(table.id), &k, &v, 0)
            }
        }
        try checkWrite(rc)
    }

    public func put(
        _ table: Table, _ key: [UInt8], count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void
    ) throws(BackendError) {
        try ensureOpen()
        guard !key.isEmpty else { throw .emptyKey }
        var v = MDB_val(mv_size: count, mv_data: nil)
        let rc: Int32 = key.withUnsafeBytes { kp in
            var k = MDB_val(mv_size: kp.count, mv_data: UnsafeMutableRawPointer(mutating: kp.baseAddress))
            return mdb_put(txn, MDB_dbi(table.id), &k, &v, UInt32(MDB_RESERVE))
        }
        try checkWrite(rc)
        body(UnsafeMutableRawBufferPointer(start: v.mv_data, count: count))
    }

    @discardableResult
    public func delete(_ table: Table, _ key: [UInt8]) throws(BackendError) -> Bool {
        try ensureOpen()
        guard !key.isEmpty else { return false }
        let rc: Int32 = key.withUnsafeBytes { kp in
            var k = MDB_val(mv_size: kp.count, mv_data: UnsafeMutableRawPointer(mutating: kp.baseAddress))
            return mdb_del(txn, MDB_dbi(table.id), &k, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try checkWrite(rc)
        return true
    }

    public func clear(_ table: Table) throws(BackendError) {
        try ensureOpen()
        try checkWrite(mdb_drop(txn, MDB_dbi(table.id), 0))
    }

    /// MAP_FULL inside a body is turned into a retry by `LMDBBackend.write`,
    /// even if the body wraps the error in its own: the flag records it.
    private func checkWrite(_ rc: Int32) throws(BackendError) {
        if rc == MDB_MAP_FULL {
            mapFull = true
            throw .quotaExceeded(quotaBytes: backend.quotaBytes)
        }
        try check(rc)
    }
}
