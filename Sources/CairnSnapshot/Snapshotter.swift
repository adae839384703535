import CCRC32C
import CZstd
import CairnBackend
import CairnFS
import CairnWAL
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Content record kinds in the uncompressed stream.
enum ContentKind: UInt8 {
    case table = 1
    case keyValue = 2
    case end = 3
}

/// One item of a snapshot's content, as `SnapshotReader.stream` delivers it.
public enum SnapshotItem {
    /// The following key-values belong to this table.
    case table(String)
    /// A key-value of the current table.
    case keyValue(key: [UInt8], value: [UInt8])
}

/// Settings of snapshot writing.
public struct SnapshotWriteOptions: Sendable {
    /// zstd level (1…19; default 3).
    public var zstdLevel: Int32 = 3
    /// zstd worker threads (0 = compress on the calling thread). Ignored when
    /// libzstd was built without multithreading.
    public var compressionWorkers: Int32 = 1
    /// Size of the buffers content is fed to zstd in.
    public var chunkBytes = 1 << 20

    public init() {}
}

/// Writes, lists and restores snapshot files.
public enum Snapshotter {
    /// `<term>-<index>.snap`, both as 16 hex digits.
    public static func fileName(term: UInt64, index: UInt64) -> String { hex16(term) + "-" + hex16(index) + ".snap" }

    /// Opens `directory` for snapshots at startup: creates it if missing (durably in
    /// its parent) and deletes the `*.snap.tmp` files a write interrupted by a crash
    /// left behind, then fsyncs the directory. Returns the deleted names.
    ///
    /// Call once before the first `write` into the directory, never while a write
    /// is in progress (its own `.snap.tmp` would be deleted under it).
    @discardableResult
    public static func open(directory: String, fileSystem fs: FileSystem = .live, logger: Logger) throws(SnapshotError) -> [String] {
        var removed: [String] = []
        do {
            try fs.createDirectory(directory)
            for name in try fs.listDirectory(directory) where name.hasSuffix(".snap.tmp") {
                try fs.unlink(directory + "/" + name)
                removed.append(name)
            }
            if !removed.isEmpty { try fs.fsyncDirectory(directory) }
        } catch { throw .io(error) }
        if !removed.isEmpty {
            logger.warning("snapshot: removed stale temporary files", metadata: ["dir": "\(directory)", "files": "\(removed)"])
        }
        return removed
    }

    /// Snapshot files in `directory`, oldest (lowest index) first.
    public static func list(directory: String, fileSystem: FileSystem = .live) throws(SnapshotError) -> [(name: String, term: UInt64, index: UInt64)] {
        let names: [String]
        do { names = try fileSystem.listDirectory(directory) } catch { throw .io(error) }
        var out: [(String, UInt64, UInt64)] = []
        for name in names where name.hasSuffix(".snap") && name.utf8.count == 38 {
            let parts = name.dropLast(5).split(separator: "-")
            guard parts.count == 2, let t = UInt64(parts[0], radix: 16), let i = UInt64(parts[1], radix: 16) else { continue }
            out.append((name, t, i))
        }
        return out.sorted { ($0.2, $0.1) < ($1.2, $1.1) }.map { (name: $0.0, term: $0.1, index: $0.2) }
    }

    /// Streams every entry of `tables` (one read transaction) through zstd into
    /// `directory/<term>-<index>.snap`: written to a temporary file, header filled
    /// in, fsynced, renamed, directory fsynced. Returns the path and header.
    public static func write<B: StorageBackend>(
        backend: B, tables: [String], term: UInt64, index: UInt64, membership: [UInt8], directory: String,
        options: SnapshotWriteOptions = SnapshotWriteOptions(), fileSystem fs: FileSystem = .live, logger: Logger
    ) throws(SnapshotError) -> (path: String, header: SnapshotHeader) {
        var header = SnapshotHeader(term: term, index: index, membership: membership)
        header.zstdLevel = options.zstdLevel
        let finalPath = directory + "/" + fileName(term: term, index: index)
        let tmpPath = finalPath + ".tmp"
        do { try fs.createDirectory(directory) } catch { throw .io(error) }
        let file: FSFile
        do { file = try fs.open(tmpPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600) } catch { throw .io(error) }
        var closed = false
        defer { if !closed { file.close(); _ = try? fs.unlink(tmpPath) } }
        let handles: [Table]
        do { handles = try tables.map { name throws(BackendError) in try backend.table(named: name) } } catch {
            throw .backend("\(error)")
        }
        let compressor = try Compressor(
            file: file, startOffset: Int64(header.encodedBytes), level: options.zstdLevel,
            workers: options.compressionWorkers, chunkBytes: options.chunkBytes)
        var records: UInt64 = 0
        do {
            try backend.read { tx in
                for table in handles {
                    let name = Array(table.name.utf8)
                    try compressor.feedTableRecord(name)
                    try tx.forEach(table) { key, value in
                        try compressor.feedKeyValue(key, value)
                        records += 1
                    }
                }
            }
        } catch let error as SnapshotError {
            throw error
        } catch {
            throw .backend("\(error)")
        }
        try compressor.feedEnd(records)
        try compressor.finish()
        header.uncompressedBytes = compressor.contentBytes
        header.compressedBytes = UInt64(compressor.writtenBytes)
        header.contentCRC32C = compressor.crc
        header.recordCount = records
        do {
            try file.write(header.encode(), at: 0)
            try file.fsync()
            file.close()
            closed = true
            try fs.rename(tmpPath, finalPath)
            try fs.fsyncDirectory(directory)
        } catch {
            _ = try? fs.unlink(tmpPath)
            throw .io(error)
        }
        logger.info(
            "snapshot: written",
            metadata: [
                "path": "\(finalPath)", "records": "\(records)", "uncompressedBytes": "\(header.uncompressedBytes)",
                "compressedBytes": "\(header.compressedBytes)",
            ])
        return (finalPath, header)
    }

    /// Deletes the oldest snapshot files while more than `maxSnapshots` remain
    /// (0 keeps all, as etcd's `--max-snapshots`). Returns the deleted names.
    @discardableResult
    public static func purge(directory: String, maxSnapshots: Int, fileSystem fs: FileSystem = .live) throws(SnapshotError) -> [String] {
        guard maxSnapshots > 0 else { return [] }
        let all = try list(directory: directory, fileSystem: fs)
        guard all.count > maxSnapshots else { return [] }
        var removed: [String] = []
        do {
            for s in all.prefix(all.count - maxSnapshots) {
                try fs.unlink(directory + "/" + s.name)
                removed.append(s.name)
            }
            try fs.fsyncDirectory(directory)
        } catch { throw .io(error) }
        return removed
    }

    /// After a snapshot at `snapshotIndex`: keeps `maxSnapshots` snapshot files and
    /// releases WAL segments wholly below the snapshot while more than `maxWALs` remain.
    public static func applyRetention(
        snapshotDirectory: String, wal: WAL, snapshotIndex: UInt64, maxSnapshots: Int = 5, maxWALs: Int = 5,
        fileSystem fs: FileSystem = .live
    ) throws(SnapshotError) -> (snapshots: [String], segments: [String]) {
        let snaps = try purge(directory: snapshotDirectory, maxSnapshots: maxSnapshots, fileSystem: fs)
        let segs: [String]
        do { segs = try wal.releaseSegments(snapshotIndex: snapshotIndex, maxWALs: maxWALs) } catch {
            throw .backend("WAL release: \(error)")
        }
        return (snaps, segs)
    }

    /// Throws `restoreInProgress` when a restore left its marker behind.
    public static func checkNoRestoreInProgress(markerPath: String, fileSystem fs: FileSystem = .live) throws(SnapshotError) {
        if fs.exists(markerPath) { throw .restoreInProgress(markerPath: markerPath) }
    }

    /// Restores a snapshot into `backend`, streaming: clears each table the
    /// snapshot names and writes its entries in write transactions of at most
    /// `maxTransactionBytes` of keys and values.
    ///
    /// Crash detection: `markerPath` is created (and fsynced) before the first write
    /// and removed only after the last transaction committed and `backend.sync()`
    /// returned. A marker found at startup (`checkNoRestoreInProgress`) means the
    /// backend holds a partial restore and must be restored again. A checksum or
    /// format failure mid-stream also leaves the marker in place.
    @discardableResult
    public static func restore<B: StorageBackend>(
        from path: String, into backend: B, markerPath: String, maxTransactionBytes: Int = 32 << 20,
        fileSystem fs: FileSystem = .live, logger: Logger
    ) throws(SnapshotError) -> SnapshotHeader {
        let reader = try SnapshotReader(path: path, fileSystem: fs)
        defer { reader.close() }
        do throws(FSError) {
            let marker = try fs.open(markerPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            try marker.write(Array("restoring \(path)\n".utf8), at: 0)
            try marker.fsync()
            marker.close()
            try fs.fsyncDirectory(parentDirectory(of: markerPath))
        } catch { throw .io(error) }

        var ops: [RestoreOp] = []
        var opBytes = 0
        var current: Table?
        func flush() throws(SnapshotError) {
            guard !ops.isEmpty else { return }
            let batch = ops
            do {
                try backend.write { tx in
                    for op in batch {
                        switch op {
                        case .clear(let t): try tx.clear(t)
                        case .put(let t, let k, let v): try tx.put(t, k, v)
                        }
                    }
                }
            } catch { throw .backend("\(error)") }
            ops.removeAll(keepingCapacity: true)
            opBytes = 0
        }
        try reader.stream { item throws(SnapshotError) in
            switch item {
            case .table(let name):
                let t: Table
                do { t = try backend.table(named: name) } catch { throw .backend("snapshot table \"\(name)\": \(error)") }
                current = t
                ops.append(.clear(t))
            case .keyValue(let key, let value):
                guard let t = current else { throw .corrupt(path: path, reason: "key-value record before any table record") }
                ops.append(.put(t, key, value))
                opBytes += key.count + value.count + 16
                if opBytes >= maxTransactionBytes { try flush() }
            }
        }
        try flush()
        do { try backend.sync() } catch { throw .backend("\(error)") }
        do {
            try fs.unlink(markerPath)
            try fs.fsyncDirectory(parentDirectory(of: markerPath))
        } catch { throw .io(error) }
        logger.info("snapshot: restored", metadata: ["path": "\(path)", "records": "\(reader.header.recordCount)"])
        return reader.header
    }
}

/// Feeds content to a zstd compression stream and writes the output to a file.
final class Compressor {
    let file: FSFile
    var offset: Int64
    let cctx: OpaquePointer
    var input: [UInt8]
    var inputUsed = 0
    var output: [UInt8]
    var crc: UInt32 = 0
    var contentBytes: UInt64 = 0
    var writtenBytes: Int64 = 0

    init(file: FSFile, startOffset: Int64, level: Int32, workers: Int32, chunkBytes: Int) throws(SnapshotError) {
        guard let c = ZSTD_createCCtx() else { throw .zstd("cannot create a compression context") }
        cctx = c
        self.file = file
        offset = startOffset
        input = [UInt8](repeating: 0, count: chunkBytes)
        output = [UInt8](repeating: 0, count: Int(ZSTD_CStreamOutSize()))
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level), "set level \(level)")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1), "enable frame checksum")
        if workers > 0 {
            // Fails when libzstd lacks multithreading: compression then stays single-threaded.
            _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, workers)
        }
    }

    deinit { ZSTD_freeCCtx(cctx) }

    private func check(_ code: Int, _ what: String) throws(SnapshotError) {
        if ZSTD_isError(code) != 0 { throw .zstd("\(what): \(String(cString: ZSTD_getErrorName(code)))") }
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws(SnapshotError) {
        guard bytes.count > 0 else { return }
        crc = cairn_crc32c_update(crc, bytes.baseAddress, bytes.count)
        contentBytes += UInt64(bytes.count)
        var done = 0
        while done < bytes.count {
            let n = min(bytes.count - done, input.count - inputUsed)
            let used = inputUsed
            input.withUnsafeMutableBytes { dst in
                (dst.baseAddress! + used).copyMemory(from: bytes.baseAddress! + done, byteCount: n)
            }
            inputUsed += n
            done += n
            if inputUsed == input.count { try compress(end: false) }
        }
    }

    func feed(_ bytes: [UInt8]) throws(SnapshotError) {
        let r: Result<Void, SnapshotError> = bytes.withUnsafeBytes { raw in
            do throws(SnapshotError) { try feed(raw); return .success(()) } catch { return .failure(error) }
        }
        try r.get()
    }

    func feedTableRecord(_ name: [UInt8]) throws(SnapshotError) {
        var head = [UInt8](repeating: 0, count: 5)
        head[0] = ContentKind.table.rawValue
        put32(&head, 1, UInt32(name.count))
        try feed(head)
        try feed(name)
    }

    func feedKeyValue(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(SnapshotError) {
        var head = [UInt8](repeating: 0, count: 9)
        head[0] = ContentKind.keyValue.rawValue
        put32(&head, 1, UInt32(key.count))
        put32(&head, 5, UInt32(value.count))
        try feed(head)
        try feed(key)
        try feed(value)
    }

    func feedEnd(_ records: UInt64) throws(SnapshotError) {
        var head = [UInt8](repeating: 0, count: 9)
        head[0] = ContentKind.end.rawValue
        for i in 0..<8 { head[1 + i] = UInt8(truncatingIfNeeded: records >> (8 * UInt64(i))) }
        try feed(head)
    }

    func finish() throws(SnapshotError) { try compress(end: true) }

    private func compress(end: Bool) throws(SnapshotError) {
        let inCount = inputUsed
        let fileRef = file
        var failure: SnapshotError?
        var written: Int64 = 0
        let start = offset
        input.withUnsafeBytes { inRaw in
            output.withUnsafeMutableBytes { outRaw in
                var inBuf = ZSTD_inBuffer(src: inRaw.baseAddress, size: inCount, pos: 0)
                while true {
                    var outBuf = ZSTD_outBuffer(dst: outRaw.baseAddress, size: outRaw.count, pos: 0)
                    let remaining = ZSTD_compressStream2(cctx, &outBuf, &inBuf, end ? ZSTD_e_end : ZSTD_e_continue)
                    if ZSTD_isError(remaining) != 0 {
                        failure = .zstd("compress: \(String(cString: ZSTD_getErrorName(remaining)))")
                        return
                    }
                    if outBuf.pos > 0 {
                        do throws(FSError) {
                            try fileRef.write(UnsafeRawBufferPointer(rebasing: outRaw[0..<outBuf.pos]), at: start + written)
                        } catch {
                            failure = .io(error)
                            return
                        }
                        written += Int64(outBuf.pos)
                    }
                    let finished = end ? remaining == 0 : inBuf.pos == inBuf.size
                    if finished { return }
                }
            }
        }
        if let failure { throw failure }
        offset += written
        writtenBytes += written
        inputUsed = 0
    }
}

@inline(__always)
func put32(_ a: inout [UInt8], _ at: Int, _ v: UInt32) {
    for i in 0..<4 { a[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
}

enum RestoreOp {
    case clear(Table)
    case put(Table, [UInt8], [UInt8])
}
