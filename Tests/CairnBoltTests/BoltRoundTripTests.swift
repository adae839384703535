import CairnBolt
import Foundation
import XCTest

/// The writer's files read back by the reader, and the reader's precise refusals.
final class BoltRoundTripTests: XCTestCase {
    var dir = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "cairn-bolt-\(UInt64.random(in: 0...UInt64.max))"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Buckets of every shape: empty, one small entry, thousands of entries (branch levels),
    /// values larger than a page (overflow pages).
    func sampleBuckets() -> [(String, [([UInt8], [UInt8])])] {
        var many: [([UInt8], [UInt8])] = []
        for i in 0..<20_000 {
            var k = [UInt8]()
            withUnsafeBytes(of: UInt64(i).bigEndian) { k += $0 }
            many.append((k, Array("value-\(i)-".utf8) + [UInt8](repeating: UInt8(i % 251), count: i % 97)))
        }
        var big: [([UInt8], [UInt8])] = []
        for i in 0..<5 {
            big.append(([UInt8(ascii: "a") + UInt8(i)], (0..<(3000 * (i + 1))).map { UInt8(truncatingIfNeeded: $0 * 7 + i) }))
        }
        return [("big", big), ("empty", []), ("many", many), ("one", [(Array("k".utf8), Array("v".utf8))])]
    }

    func write(_ buckets: [(String, [([UInt8], [UInt8])])], to path: String) throws -> Int {
        let w = try BoltWriter(path: path)
        for (name, entries) in buckets {
            try w.beginBucket(Array(name.utf8))
            for (k, v) in entries { try w.put(k, v) }
            try w.endBucket()
        }
        return try w.finish()
    }

    func testWrittenFileReadsBack() throws {
        let path = dir + "/db"
        let buckets = sampleBuckets()
        let size = try write(buckets, to: path)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int, size)
        let r = try BoltReader(path: path)
        XCTAssertEqual(r.databaseSizeBytes, size)
        XCTAssertEqual(r.pageSizeBytes, 4096)
        XCTAssertEqual(try r.bucketNames().map { String(decoding: $0, as: UTF8.self) }, buckets.map(\.0))
        XCTAssertEqual(try r.freePages(), [])
        for (name, entries) in buckets {
            var got: [([UInt8], [UInt8])] = []
            try r.forEach(bucket: [Array(name.utf8)]) { k, v, isBucket in
                XCTAssertFalse(isBucket)
                got.append(([UInt8](k), [UInt8](v)))
            }
            XCTAssertEqual(got.count, entries.count, name)
            XCTAssertTrue(zip(got, entries).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }, name)
        }
        XCTAssertThrowsError(try r.forEach(bucket: [Array("nope".utf8)]) { _, _, _ in }) { e in
            XCTAssertEqual("\(e)", "no bucket \"nope\"")
        }
    }

    func testWriterRefusesUnsortedInput() throws {
        let w = try BoltWriter(path: dir + "/db")
        try w.beginBucket(Array("b".utf8))
        try w.put([2], [0])
        XCTAssertThrowsError(try w.put([1], [0]))
        try w.endBucket()
        XCTAssertThrowsError(try w.beginBucket(Array("a".utf8)))
    }

    func testRefusals() throws {
        let path = dir + "/db"
        _ = try write(sampleBuckets(), to: path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))

        func refusal(_ data: Data) -> String {
            let p = dir + "/bad"
            try! data.write(to: URL(fileURLWithPath: p))
            do {
                let r = try BoltReader(path: p)
                for name in try r.bucketNames() { try r.forEach(bucket: [name]) { _, _, _ in } }
                return "accepted"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(refusal(Data("hello, this is not a database at all, just text......................".utf8)), "not a bbolt file: bad magic")
        XCTAssertEqual(refusal(Data()), "truncated: the file has 0 bytes, less than one meta page")
        XCTAssertTrue(refusal(good.prefix(good.count - 4096)).hasPrefix("truncated: the database has"), refusal(good.prefix(good.count - 4096)))
        var bothBad = good
        bothBad[16 + 20] ^= 0xff  // meta 0's root page
        bothBad[4096 + 16 + 20] ^= 0xff  // meta 1's
        XCTAssertEqual(refusal(bothBad), "checksum mismatch in both meta pages")
        var oneBad = good
        oneBad[16 + 20] ^= 0xff
        XCTAssertEqual(refusal(oneBad), "accepted")  // meta 1 is still valid
        var version = good
        version[16 + 4] = 9
        version[4096 + 16 + 4] = 9
        XCTAssertEqual(refusal(version), "unsupported bbolt version 9 (expected 2)")
        var badPage = good
        badPage[3 * 4096 + 8] = 0x40  // page 3's type
        XCTAssertTrue(refusal(badPage).contains("page 3 has type flags 0x40"), refusal(badPage))
    }

    func testEtcdSnapshotRefusals() throws {
        let path = dir + "/db"
        _ = try write(sampleBuckets(), to: path)
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        var hasher = SHA256()
        hasher.update(data)
        let sha = hasher.finalize()
        // No etcd buckets.
        try (data + sha).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try EtcdSnapshot.open(path: path)) { e in
            XCTAssertEqual("\(e)", "not an etcd snapshot: the bbolt database has no \"key\" bucket (it has: big, empty, many, one)")
        }
        // A trailer cut short.
        try (data + sha.prefix(20)).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try EtcdSnapshot.open(path: path)) { e in
            XCTAssertEqual("\(e)", "truncated: the SHA-256 trailer has 20 of its 32 bytes")
        }
        // No trailer at all: accepted only when the hash check is skipped.
        try data.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try EtcdSnapshot.open(path: path)) { e in
            XCTAssertTrue("\(e)".hasPrefix("snapshot has no SHA-256 trailer"), "\(e)")
        }
        XCTAssertThrowsError(try EtcdSnapshot.open(path: path, skipHashCheck: true)) { e in
            XCTAssertTrue("\(e)".hasPrefix("not an etcd snapshot"), "\(e)")
        }
        // Wrong trailer.
        data += sha.map { $0 ^ 1 }
        try data.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try EtcdSnapshot.open(path: path)) { e in
            XCTAssertTrue("\(e)".hasPrefix("SHA-256 trailer mismatch: the file ends with "), "\(e)")
        }
    }
}
