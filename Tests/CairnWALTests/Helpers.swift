import CairnFS
import Foundation
import Logging

@testable import CairnWAL

let testLogger: Logger = {
    var l = Logger(label: "cairn.wal.test")
    l.logLevel = .critical
    return l
}()

/// A fresh temporary directory, removed by the caller with `removeTree`.
func makeTempDir(_ tag: String = "wal") -> String {
    let base = FileManager.default.temporaryDirectory.path + "/cairn-\(tag)-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    return base
}

func removeTree(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

func copyTree(_ from: String, _ to: String) {
    try? FileManager.default.removeItem(atPath: to)
    try! FileManager.default.copyItem(atPath: from, toPath: to)
}

func smallConfig(segmentSizeBytes: Int = 64 << 10) -> WALConfiguration {
    var c = WALConfiguration()
    c.segmentSizeBytes = segmentSizeBytes
    c.maxBatchBytes = 32 << 10
    c.maxQueuedBytes = 256 << 10
    return c
}

func payload(_ i: UInt64, size: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: size)
    var x = i &* 0x9E37_79B9_7F4A_7C15 | 1
    for j in 0..<size {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        out[j] = UInt8(truncatingIfNeeded: x)
    }
    return out
}

let testMetadata = WALMetadata(clusterID: 0xC1C1, memberID: 0x4D4D)

/// Writes `count` entries, one sync per entry (each its own write batch), plus a hard state every 10.
func writeSequentialLog(_ dir: String, count: Int, size: Int = 100, segmentSizeBytes: Int = 64 << 10) throws {
    let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(segmentSizeBytes: segmentSizeBytes), logger: testLogger)
    defer { wal.close() }
    for i in 1...UInt64(count) {
        var records: [WALRecord] = [.entry(WALEntry(term: 1 + i / 50, index: i, data: payload(i, size: size)))]
        if i % 10 == 0 { records.append(.hardState(WALHardState(term: 1 + i / 50, vote: 1, commit: i - 1))) }
        try wal.appendAndSync(records)
    }
}

struct ScannedFrame {
    var location: WALLocation
    var body: ScannedRecordBody
}

func scanAll(_ dir: String) throws -> (WALScanResult, [ScannedFrame]) {
    var frames: [ScannedFrame] = []
    let result = try WALScanner(directory: dir).scan(visit: { loc, body in frames.append(ScannedFrame(location: loc, body: body)) })
    return (result, frames)
}

func entryIndexes(_ frames: [ScannedFrame]) -> [UInt64] {
    frames.compactMap { f in
        if case .record(.entry(let e)) = f.body { return e.index }
        return nil
    }
}

func segmentPaths(_ dir: String) -> [String] {
    (try! FileManager.default.contentsOfDirectory(atPath: dir)).filter { $0.hasSuffix(".wal") }.sorted().map { dir + "/" + $0 }
}

func readBytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path)!) }

func writeBytes(_ path: String, _ bytes: [UInt8]) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}
