import CairnBackend
import CairnFS
import CairnSnapshot
import CairnWAL
import Foundation
import Logging
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
