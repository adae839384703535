import CairnBackend
import CairnFS
@testable import CairnSnapshot
import CairnWAL
import Foundation
import Logging
import Synchronization
import Testing

private let logger: Logger = {
    var l = Logger(label: "cairn.snapshot.test")
    l.logLevel = .critical
    return l
}()

private func tempDir() -> String {
    let p = FileManager.default.temporaryDirectory.path + "/cairn-snap-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
}

private let tableNames = ["kv", "meta", "lease"]

private func makeBackend() -> MemoryBackend {
    MemoryBackend(configuration: BackendConfiguration(tables: tableNames))
}

private func fill(_ b: MemoryBackend, keys: Int) throws {
    let kv = try b.table(named: "kv")
    let meta = try b.table(named: "meta")
    try b.write { tx in
        for i in 0..<keys {
            let key = Array("key-\(i)".utf8)
            let value = [UInt8](repeating: UInt8(i % 251), count: (i * 37) % 900 + 1)
            try tx.put(kv, key, value)
        }
        try tx.put(meta, Array("consistent_index".utf8), [1, 2, 3, 4, 5, 6, 7, 8])
        // One value larger than the compressor's chunk and the restore transaction bound.
        try tx.put(meta, Array("big".utf8), (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
    }
}

private func dump(_ b: MemoryBackend) throws -> [String: [[UInt8]]] {
    var out: [String: [[UInt8]]] = [:]
    try b.read { tx in
        for name in tableNames {
            let t = try b.table(named: name)
            var rows: [[UInt8]] = []
            try tx.forEach(t) { k, v in
                rows.append(Array(k))
                rows.append(Array(v))
            }
            out[name] = rows
        }
    }
    return out
}

@Suite struct SnapshotTests {
    @Test func writeAndStreamingRestoreRoundTrip() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = makeBackend()
        try fill(source, keys: 5000)
        let (path, header) = try Snapshotter.write(
            backend: source, tables: tableNames, term: 4, index: 1234, membership: Array("members".utf8), directory: dir,
            logger: logger)
        #expect(path.hasSuffix("/0000000000000004-00000000000004d2.snap"))
        #expect(header.recordCount == 5002)
        #expect(header.compressedBytes < header.uncompressedBytes)
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: dir)).contains { $0.hasSuffix(".tmp") })

        let reader = try SnapshotReader(path: path)
        #expect(reader.header == header)
        #expect(reader.header.membership == Array("members".utf8))
        reader.close()

        // Restore into a backend that already holds other data: tables are cleared first.
        let target = makeBackend()
        let kv = try target.table(named: "kv")
        try target.write { tx in try tx.put(kv, Array("stale".utf8), [9]) }
        let marker = dir + "/RESTORE-IN-PROGRESS"
        try Snapshotter.restore(from: path, into: target, markerPath: marker, maxTransactionBytes: 64 << 10, logger: logger)
        #expect(try dump(target) == dump(source))
        #expect(!FileManager.default.fileExists(atPath: marker))
        try Snapshotter.checkNoRestoreInProgress(markerPath: marker)
    }

    @Test func damagedSnapshotIsRefusedAndAPartialRestoreIsDetectable() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = makeBackend()
        try fill(source, keys: 3000)
        let (path, header) = try Snapshotter.write(
            backend: source, tables: tableNames, term: 1, index: 10, membership: [], directory: dir, logger: logger)
        var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        let flipAt = header.encodedBytes + Int(header.compressedBytes) / 2
        bytes[flipAt] ^= 0x10
        let bad = dir + "/bad.snap"
        _ = FileManager.default.createFile(atPath: bad, contents: Data(bytes))
        #expect(throws: SnapshotError.self) { try SnapshotReader(path: bad).stream { _ in } }

        let marker = dir + "/RESTORE-IN-PROGRESS"
        let target = makeBackend()
        #expect(throws: SnapshotError.self) {
            try Snapshotter.restore(from: bad, into: target, markerPath: marker, maxTransactionBytes: 16 << 10, logger: logger)
        }
        #expect(throws: SnapshotError.restoreInProgress(markerPath: marker)) {
            try Snapshotter.checkNoRestoreInProgress(markerPath: marker)
        }

        // Truncated file: sizes disagree with the header.
        let cut = dir + "/cut.snap"
        _ = FileManager.default.createFile(atPath: cut, contents: Data(bytes[0..<(bytes.count - 100)]))
        do {
            _ = try SnapshotReader(path: cut)
            Issue.record("truncated snapshot accepted")
        } catch {
            guard case .corrupt(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("header says"))
        }
    }

    @Test func foreignFilesAndUnknownVersionsAreRefused() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let junk = dir + "/junk.snap"
        _ = FileManager.default.createFile(atPath: junk, contents: Data((0..<500).map { UInt8($0 % 256) }))
        do {
            _ = try SnapshotReader(path: junk)
            Issue.record("junk accepted")
        } catch {
            guard case .notASnapshot = error else { Issue.record("\(error)"); return }
        }
        var h = SnapshotHeader(term: 1, index: 2, membership: [])
        h.formatVersion = 7
        let v7 = dir + "/v7.snap"
        _ = FileManager.default.createFile(atPath: v7, contents: Data(h.encode()))
        #expect(throws: SnapshotError.unsupportedVersion(path: v7, version: 7, supported: 1)) { _ = try SnapshotReader(path: v7) }
    }

    @Test func retentionKeepsMaxSnapshotsAndReleasesWALSegments() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let snapDir = dir + "/snap"
        let walDir = dir + "/wal"
        let source = makeBackend()
        try fill(source, keys: 10)
        var config = WALConfiguration()
        config.segmentSizeBytes = 16 << 10
        let wal = try WAL.create(directory: walDir, metadata: WALMetadata(clusterID: 1, memberID: 2), configuration: config, logger: logger)
        defer { wal.close() }
        for i in 1...UInt64(600) {
            try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: [UInt8](repeating: 1, count: 200)))])
            if i % 100 == 0 {
                try wal.appendAndSync([.snapshot(WALSnapshotMarker(index: i, term: 1))])
                _ = try Snapshotter.write(backend: source, tables: tableNames, term: 1, index: i, membership: [], directory: snapDir, logger: logger)
            }
        }
        let segmentsBefore = wal.segments.count
        let (snaps, segs) = try Snapshotter.applyRetention(
            snapshotDirectory: snapDir, wal: wal, snapshotIndex: 600, maxSnapshots: 2, maxWALs: 3)
        #expect(snaps == [Snapshotter.fileName(term: 1, index: 100), Snapshotter.fileName(term: 1, index: 200),
                          Snapshotter.fileName(term: 1, index: 300), Snapshotter.fileName(term: 1, index: 400)])
        #expect(try Snapshotter.list(directory: snapDir).map(\.index) == [500, 600])
        #expect(segs.count == segmentsBefore - 3)
        #expect(wal.segments.count == 3)
    }
}

@Suite struct SnapshotHousekeeping {
    @Test func garbageKeyValueLengthFailsAtOnceInsteadOfBuffering() throws {
        // A key-value record declaring a 256 MiB key in content the header says is 1000 bytes.
        var parser = ContentParser(path: "x.snap", contentBytes: 1000)
        let chunk: [UInt8] = [1, 2, 0, 0, 0, 0x6B, 0x76] + [2, 0, 0, 0, 0x10, 5, 0, 0, 0] + [UInt8](repeating: 7, count: 64)
        var items = 0
        do {
            try parser.feed(chunk, count: chunk.count) { _ in items += 1 }
            Issue.record("a record running past the declared content size must be refused at once")
        } catch {
            guard case .corrupt(let path, let reason) = error else { Issue.record("unexpected \(error)"); return }
            #expect(path == "x.snap")
            #expect(reason.contains("key-value record of \(9 + (0x10 << 24) + 5) bytes at content offset 7"), "\(reason)")
            #expect(reason.contains("(1000 bytes)"), "\(reason)")
        }
        #expect(items == 1, "the table record before it was delivered")
    }

    @Test func recordsEndingExactlyAtTheDeclaredSizeParse() throws {
        let chunk: [UInt8] = [2, 1, 0, 0, 0, 2, 0, 0, 0, 0xAA, 0xBB, 0xCC] + [3, 1, 0, 0, 0, 0, 0, 0, 0]
        var parser = ContentParser(path: "x.snap", contentBytes: UInt64(chunk.count))
        var values: [[UInt8]] = []
        // Fed one byte at a time: the partial record is carried across chunks.
        for b in chunk {
            try parser.feed([b], count: 1) { item in
                if case .keyValue(_, let v) = item { values.append(v) }
            }
        }
        #expect(values == [[0xBB, 0xCC]])
        #expect(parser.endCount == 1)
    }

    @Test func openRemovesStaleTemporariesAndKeepsSnapshots() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let dir = base + "/snap"
        #expect(try Snapshotter.open(directory: dir, logger: logger).isEmpty)
        #expect(FileManager.default.fileExists(atPath: dir))
        let source = makeBackend()
        let (path, _) = try Snapshotter.write(
            backend: source, tables: tableNames, term: 1, index: 5, membership: [], directory: dir, logger: logger)
        let stale = Snapshotter.fileName(term: 1, index: 9) + ".tmp"
        #expect(FileManager.default.createFile(atPath: dir + "/" + stale, contents: Data([1, 2, 3])))
        #expect(FileManager.default.createFile(atPath: dir + "/notes.tmp", contents: Data([1])))
        #expect(try Snapshotter.open(directory: dir, logger: logger) == [stale])
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(left == [(path as NSString).lastPathComponent, "notes.tmp"].sorted())
    }

    @Test func snapshotWriteMakesANewDirectoryDurableInItsParent() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let fsyncedDirs = Mutex<[String]>([])
        let openDirs = Mutex<[Int32: String]>([:])
        var s = Syscalls.live
        s.open = { path, flags, mode in
            let fd = Syscalls.live.open(path, flags, mode)
            if fd >= 0 && flags & O_DIRECTORY != 0 { openDirs.withLock { $0[fd] = path } }
            return fd
        }
        s.fsync = { fd in
            if let p = openDirs.withLock({ $0[fd] }) { fsyncedDirs.withLock { $0.append(p) } }
            return Syscalls.live.fsync(fd)
        }
        s.close = { fd in
            openDirs.withLock { _ = $0.removeValue(forKey: fd) }
            return Syscalls.live.close(fd)
        }
        _ = try Snapshotter.write(
            backend: makeBackend(), tables: tableNames, term: 1, index: 1, membership: [], directory: base + "/member/snap",
            fileSystem: FileSystem(syscalls: s), logger: logger)
        let synced = fsyncedDirs.withLock { $0 }
        #expect(synced.starts(with: [base, base + "/member"]), "\(synced)")
    }
}
