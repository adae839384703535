import CairnBackend
import CairnFS
import CairnSnapshot
import CairnWAL
import Foundation
import Logging
import Testing

private let logger: Logger = {
    var l = Logger(label: "cairn.wal.tool.test")
    l.logLevel = .critical
    return l
}()

/// The built `cairn-wal` next to the test bundle (.build/<config>/).
private func toolPath() -> String {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("cairn-wal").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return "cairn-wal"
}

private struct Run {
    var status: Int32
    var out: String
    var err: String
}

private func tool(_ args: [String]) throws -> Run {
    let path = toolPath()
    try #require(FileManager.default.isExecutableFile(atPath: path), "build cairn-wal first (swift build): \(path)")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Run(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
}

// Protobuf encoding helpers (wire format) to build etcd-shaped entry data.
private func varint(_ v: UInt64) -> [UInt8] {
    var v = v
    var out: [UInt8] = []
    while v >= 0x80 {
        out.append(UInt8(v & 0x7F) | 0x80)
        v >>= 7
    }
    out.append(UInt8(v))
    return out
}
private func fieldVarint(_ f: Int, _ v: UInt64) -> [UInt8] { varint(UInt64(f << 3)) + varint(v) }
private func fieldBytes(_ f: Int, _ b: [UInt8]) -> [UInt8] { varint(UInt64(f << 3 | 2)) + varint(UInt64(b.count)) + b }

private func putRequest(_ key: String, valueBytes: Int) -> [UInt8] {
    // InternalRaftRequest{ID: 1, put: PutRequest{key, value}}
    fieldVarint(1, 77) + fieldBytes(4, fieldBytes(1, Array(key.utf8)) + fieldBytes(2, [UInt8](repeating: 1, count: valueBytes)))
}
private func txnRequest() -> [UInt8] {
    let op = fieldBytes(1, [])
    return fieldBytes(6, fieldBytes(1, [0x08, 0x01]) + fieldBytes(2, op) + fieldBytes(2, op) + fieldBytes(3, op))
}
private func deleteRange(_ k: String, _ end: String) -> [UInt8] {
    fieldBytes(5, fieldBytes(1, Array(k.utf8)) + fieldBytes(2, Array(end.utf8)))
}
private func compaction(_ rev: UInt64) -> [UInt8] { fieldBytes(7, fieldVarint(1, rev)) }
private func leaseGrant(id: UInt64, ttl: UInt64) -> [UInt8] { fieldBytes(8, fieldVarint(1, ttl) + fieldVarint(2, id)) }
private func leaseRevoke(id: UInt64) -> [UInt8] { fieldBytes(9, fieldVarint(1, id)) }
private func confChange(type: UInt64, node: UInt64) -> [UInt8] { fieldVarint(1, 5) + fieldVarint(2, type) + fieldVarint(3, node) }

private func tempDir() -> String {
    let p = FileManager.default.temporaryDirectory.path + "/cairn-tool-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
}

private func makeLog(_ dir: String, extra: Int = 20) throws {
    var config = WALConfiguration()
    config.segmentSizeBytes = 1 << 20
    let wal = try WAL.create(directory: dir, metadata: WALMetadata(clusterID: 0xABC, memberID: 0xDEF), configuration: config, logger: logger)
    defer { wal.close() }
    let datas: [(WALEntryType, [UInt8])] = [
        (.normal, []),
        (.confChange, confChange(type: 0, node: 0x1234)),
        (.normal, putRequest("foo", valueBytes: 5)),
        (.normal, txnRequest()),
        (.normal, deleteRange("a", "b")),
        (.normal, compaction(42)),
        (.normal, leaseGrant(id: 99, ttl: 60)),
        (.normal, leaseRevoke(id: 99)),
        (.confChange, confChange(type: 1, node: 0x1234)),
        (.confChange, confChange(type: 3, node: 0x55)),
        (.normal, [0xFF, 0xFF, 0xFF]),
    ]
    var index: UInt64 = 0
    for (type, data) in datas {
        index += 1
        try wal.appendAndSync([.entry(WALEntry(term: 2, index: index, type: type, data: data))])
    }
    try wal.appendAndSync([.hardState(WALHardState(term: 2, vote: 0xDEF, commit: index)), .snapshot(WALSnapshotMarker(index: 5, term: 2))])
    for _ in 0..<extra {
        index += 1
        try wal.appendAndSync([.entry(WALEntry(term: 3, index: index, data: putRequest("k\(index)", valueBytes: 10)))])
    }
}

private func segment(_ dir: String) -> String {
    dir + "/" + (try! FileManager.default.contentsOfDirectory(atPath: dir)).filter { $0.hasSuffix(".wal") }.sorted()[0]
}

@Suite struct ToolTests {
    @Test func inspectPrintsDecodedSummaries() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try makeLog(dir)
        let r = try tool(["inspect", dir])
        #expect(r.status == 0, "\(r.err)")
        let expected = [
            "metadata cluster=0000000000000abc member=0000000000000def",
            "entry term=2 index=1 type=normal empty (leader no-op)",
            "entry term=2 index=2 type=conf-change member add node=0000000000001234",
            "entry term=2 index=3 type=normal put key=\"foo\" value=5 bytes",
            "entry term=2 index=4 type=normal txn with 1 compares / 2 success / 1 failure ops",
            "entry term=2 index=5 type=normal delete_range key=\"a\" range_end=\"b\"",
            "entry term=2 index=6 type=normal compaction rev=42",
            "entry term=2 index=7 type=normal lease_grant id=99 ttl=60",
            "entry term=2 index=8 type=normal lease_revoke id=99",
            "entry term=2 index=9 type=conf-change member remove node=0000000000001234",
            "entry term=2 index=10 type=conf-change member add-learner node=0000000000000055",
            "entry term=2 index=11 type=normal unknown (3 bytes)",
            "hardstate term=2 vote=0000000000000def commit=11",
            "snapshot index=5 term=2",
            "status: clean",
        ]
        for line in expected { #expect(r.out.contains(line), "missing line: \(line)\n\(r.out)") }

        let filtered = try tool(["inspect", dir, "--start-index", "3", "--end-index", "9", "--entry-type", "conf-change"])
        let entries = filtered.out.split(separator: "\n").filter { $0.contains("entry term=") }
        #expect(entries.count == 1)
        #expect(entries.first?.contains("index=9") == true)

        let json = try tool(["inspect", dir, "--json", "--start-index", "3", "--end-index", "3"])
        let lines = json.out.split(separator: "\n")
        let objects = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let entry = try #require(objects.first { ($0["kind"] as? String) == "entry" })
        #expect(entry["index"] as? Int == 3)
        #expect(entry["summary"] as? String == "put key=\"foo\" value=5 bytes")
        #expect(objects.last?["status"] as? String == "clean")
    }

    @Test func verifyExitCodesAndRepair() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try makeLog(dir)
        #expect(try tool(["verify", dir]).status == 0)

        // Torn tail: garbage after the last record.
        let scan = try WALScanner(directory: dir).scan()
        let seg = segment(dir)
        let f = try FileSystem.live.open(seg, flags: O_RDWR)
        try f.write([UInt8](repeating: 0xEE, count: 40), at: scan.validEndOffset)
        f.close()
        let torn = try tool(["verify", dir])
        #expect(torn.status == 1)
        #expect(torn.out.contains("TORN TAIL: segment \((seg as NSString).lastPathComponent) byte offset \(scan.validEndOffset) record #\(scan.recordCount)"), "\(torn.out)")
        let repaired = try tool(["repair", dir])
        #expect(repaired.status == 0, "\(repaired.out)\(repaired.err)")
        #expect(repaired.out.contains("kept copy: \(seg).broken"))
        #expect(FileManager.default.fileExists(atPath: seg + ".broken"))
        #expect(try tool(["verify", dir]).status == 0)

        // Mid-log corruption: flip a byte inside entry 15's frame; 15 itself is lost with
        // everything after it, and the tool must name it although its frame is unreadable.
        var target: WALLocation?
        _ = try WALScanner(directory: dir).scan(visit: { loc, body in
            if case .record(.entry(let e)) = body, e.index == 15 { target = loc }
        })
        let loc = try #require(target)
        var bytes = [UInt8](FileManager.default.contents(atPath: seg)!)
        bytes[Int(loc.offset) + 30] ^= 0x01
        _ = FileManager.default.createFile(atPath: seg, contents: Data(bytes))
        let corrupt = try tool(["verify", dir])
        #expect(corrupt.status == 2)
        #expect(corrupt.out.contains("CORRUPTION: segment \(loc.segment) byte offset \(loc.offset) record #\(loc.recordNumber)"), "\(corrupt.out)")
        #expect(corrupt.out.contains("last valid entry index: 14"))
        let refused = try tool(["repair", dir])
        #expect(refused.status == 2)
        #expect(refused.out.contains("refusing"))
        #expect(refused.out.contains("entries that a cut would drop: 15-31 (17 entries)"), "\(refused.out)")
        #expect([UInt8](FileManager.default.contents(atPath: seg)!) == bytes, "a refused repair changes nothing")
        let cut = try tool(["repair", dir, "--truncate-at-corruption"])
        #expect(cut.status == 0, "\(cut.out)\(cut.err)")
        #expect(cut.out.contains("WILL LOSE entries: 15-31 (17 entries)"), "\(cut.out)")
        #expect(cut.out.contains("last-index=14"))
        #expect(FileManager.default.fileExists(atPath: seg + ".broken.1"))
    }

    @Test func refusesLockedDirectoriesAndForeignInput() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try makeLog(dir)
        let (wal, _) = try WAL.open(directory: dir, logger: logger)
        let locked = try tool(["repair", dir])
        wal.close()
        #expect(locked.status == 3)
        #expect(locked.err.contains("\(dir)/LOCK is locked by pid"), "\(locked.err)")

        let empty = tempDir()
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let notWAL = try tool(["verify", empty])
        #expect(notWAL.status == 3)
        #expect(notWAL.err.contains("not a Cairn WAL"))
        #expect(!FileManager.default.fileExists(atPath: empty + "/LOCK"), "no LOCK file is left in a foreign directory")
    }

    /// The server locks its data dir (`<data-dir>/LOCK`); the WAL lives in
    /// `<data-dir>/member/wal`. The tool must refuse while the server runs.
    @Test func refusesAWALInsideALockedDataDir() throws {
        let dataDir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let walDir = dataDir + "/member/wal"
        try FileManager.default.createDirectory(atPath: walDir, withIntermediateDirectories: true)
        try makeLog(walDir)
        let server = try DataDirLock.acquire(directory: dataDir, owner: "cairn")
        let refused = try tool(["repair", walDir])
        server.unlock()
        #expect(refused.status == 3)
        #expect(refused.err.contains("\(dataDir)/LOCK is locked by pid"), "\(refused.err)")
        // Once the server is gone, the tool works.
        #expect(try tool(["repair", walDir]).status == 0)
    }

    @Test func snapshotInfoAndVerify() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let backend = MemoryBackend(configuration: BackendConfiguration(tables: ["kv", "meta"]))
        let kv = try backend.table(named: "kv")
        try backend.write { tx in for i in 0..<100 { try tx.put(kv, Array("k\(i)".utf8), [UInt8](repeating: 7, count: 50)) } }
        let (path, header) = try Snapshotter.write(
            backend: backend, tables: ["kv", "meta"], term: 3, index: 77, membership: [1, 2], directory: dir, logger: logger)
        let info = try tool(["snapshot", "info", path])
        #expect(info.status == 0)
        #expect(info.out.contains("format-version=1 term=3 index=77"))
        #expect(info.out.contains("records=100 uncompressed-bytes=\(header.uncompressedBytes)"))
        let ok = try tool(["snapshot", "verify", path])
        #expect(ok.status == 0)
        #expect(ok.out.contains("table kv: 100 entries"))
        var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        bytes[bytes.count - 10] ^= 0x40
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let bad = try tool(["snapshot", "verify", path])
        #expect(bad.status == 2)
        #expect(bad.out.contains("CORRUPT"))
    }
}
