import CairnBackend
import CairnLMDB
import Foundation
import Testing

enum Kind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, lmdb
    var testDescription: String { rawValue }
}

/// Runs `body` with a fresh backend of each kind (generic, so both share one test body).
protocol BackendCheck {
    func run<B: StorageBackend>(_ backend: B) throws
}

func check(_ kind: Kind, quotaBytes: Int64 = 1 << 30, _ c: some BackendCheck) throws {
    let config = BackendConfiguration(tables: ["t", "u"], quotaBytes: quotaBytes)
    switch kind {
    case .memory:
        try c.run(MemoryBackend(configuration: config))
    case .lmdb:
        let dir = NSTemporaryDirectory() + "cairn-backend-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = LMDBBackend.Options()
        options.initialMapSizeBytes = 1 << 20
        try c.run(LMDBBackend(path: dir, configuration: config, options: options))
    }
}

func k(_ s: String) -> [UInt8] { Array(s.utf8) }

func keys<B: StorageBackend>(_ backend: B, _ t: Table, from: String, to: String?, reverse: Bool) throws -> [String] {
    try backend.read { tx in
        var out: [String] = []
        try tx.scan(t, from: k(from), to: to.map(k), reverse: reverse) { key, _ in
            out.append(String(decoding: key, as: UTF8.self))
            return true
        }
        return out
    }
}

@Suite struct StorageBackendTests {
    struct PutGetDelete: BackendCheck {
        func run<B: StorageBackend>(_ b: B) throws {
            let t = try b.table(named: "t")
            try b.write { tx in
                try tx.put(t, k("a"), k("1"))
                try tx.put(t, k("b"), count: 3) { $0.copyBytes(from: k("two")) }
            }
            #expect(try b.read { try $0.get(t, k("a")) } == k("1"))
            #expect(try b.read { try $0.get(t, k("b")) } == k("two"))
            #expect(try b.read { tx in try tx.withValue(t, k("b")) { $0?.count } } == 3)
            #expect(try b.write { tx in try tx.delete(t, k("a")) })
            #expect(try !b.write { tx in try tx.delete(t, k("a")) })
            #expect(try b.read { try $0.get(t, k("a")) } == nil)
            #expect(throws: BackendError.unknownTable("nope")) { try b.table(named: "nope") }
        }
    }

    @Test(arguments: Kind.allCases)
    func putGetDelete(_ kind: Kind) throws { try check(kind, PutGetDelete()) }

    struct TablesAreSeparate: BackendCheck {
        func run<B: StorageBackend>(_ b: B) throws {
            let t = try b.table(named: "t")
            let u = try b.table(named: "u")
            try b.write { tx in
                try tx.put(t, k("x"), k("t"))
                try tx.put(u, k("x"), k("u"))
            }
            #expect(try b.read { try $0.get(u, k("x")) } == k("u"))
            try b.write { tx in try tx.clear(t) }
            #expect(try b.read { try ($0.count(t), $0.count(u)) } == (0, 1))
        }
    }

    @Test(arguments: Kind.allCases)
    func tablesAreSeparate(_ kind: Kind) throws { try check(kind, TablesAreSeparate()) }

    struct OrderedScans: BackendCheck {
        func run<B: StorageBackend>(_ b: B) throws {
            let t = try b.table(named: "t")
            try b.write { tx in for key in ["d", "a", "c", "b", "ba", "e"] { try tx.put(t, k(key), k(key)) } }
            #expect(try keys(b, t, from: "b", to: "d", reverse: false) == ["b", "ba", "c"])
            #expect(try keys(b, t, from: "b", to: "d", reverse: true) == ["c", "ba", "b"])
            #expect(try keys(b, t, from: "bb", to: nil, reverse: false) == ["c", "d", "e"])
            #expect(try keys(b, t, from: "a", to: nil, reverse: true) == ["e", "d", "c", "ba", "b", "a"])
            #expect(try keys(b, t, from: "a", to: "zz", reverse: true).first == "e")
            #expect(try keys(b, t, from: "x", to: nil, reverse: false).isEmpty)
            // Stopping early.
            let firstTwo = try b.read { tx in
                var n: [String] = []
                try tx.scan(t, from: k("a"), to: nil, reverse: false) { key, _ in
                    n.append(String(decoding: key, as: UTF8.self))
                    return n.count < 2
                }
                return n
            }
            #expect(firstTwo == ["a", "b"])
        }
    }

    @Test(arguments: Kind.allCases)
    func orderedScansForwardAndBackward(_ kind: Kind) throws { try check(kind, OrderedScans()) }

    struct ReadersSeeSnapshots: BackendCheck {
        func run<B: StorageBackend>(_ b: B) throws {
            let t = try b.table(named: "t")
            try b.write { tx in try tx.put(t, k("v"), k("1")) }
            let old = try b.beginRead()
            try b.write { tx in try tx.put(t, k("v"), k("2")) }
            #expect(try old.get(t, k("v")) == k("1"), "an open reader keeps its snapshot")
            #expect(try b.read { try $0.get(t, k("v")) } == k("2"))
            old.close()
            #expect(throws: BackendError.transactionClosed) { try old.get(t, k("v")) }
        }
    }

    @Test(arguments: Kind.allCases)
    func readersSeeConsistentSnapshots(_ kind: Kind) throws { try check(kind, ReadersSeeSnapshots()) }

    struct ThrowingWriteLeavesNothing: BackendCheck {
        struct Boom: Error {}
        func run<B: StorageBackend>(_ b: B) throws {
            let t = try b.table(named: "t")
            try b.write { tx in try tx.put(t, k("keep"), k("1")) }
            #expect(throws: Boom.self) {
                try b.write { tx in
                    try tx.put(t, k("keep"), k("2"))
                    try tx.put(t, k("new"), k("x"))
                    throw Boom()
                }
            }
            #expect(try b.read { try $0.get(t, k("keep")) } == k("1"))
            #expect(try b.read { try $0.get(t, k("new")) } == nil)
        }
    }

    @Test(arguments: Kind.allCases)
    func aThrowingWriteLeavesNothing(_ kind: Kind) throws { try check(kind, ThrowingWriteLeavesNothing()) }

    struct ConcurrentReadersAndOneWriter: BackendCheck {
        func run<B: StorageBackend>(_ b: B) throws {
            let t = try b.table(named: "t")
            // Invariant kept by every commit: "a" and "b" hold the same number.
            try b.write { tx in
                try tx.put(t, k("a"), k("0"))
                try tx.put(t, k("b"), k("0"))
            }
            let torn = ManagedAtomicCounter()
            DispatchQueue.concurrentPerform(iterations: 5) { worker in
                if worker == 0 {
                    for i in 1...300 {
                        try? b.write { tx in
                            try tx.put(t, k("a"), k("\(i)"))
                            try tx.put(t, k("b"), k("\(i)"))
                        }
                    }
                } else {
                    for _ in 0..<600 {
                        let pair = try? b.read { tx in (try tx.get(t, k("a")), try tx.get(t, k("b"))) }
                        if let pair, pair.0 != pair.1 { torn.increment() }
                    }
                }
            }
            #expect(torn.value == 0, "a reader saw half a transaction")
            #expect(try b.read { try $0.get(t, k("a")) } == k("300"))
        }
    }

    @Test(arguments: Kind.allCases)
    func concurrentReadersNeverSeeHalfATransaction(_ kind: Kind) throws { try check(kind, ConcurrentReadersAndOneWriter()) }

    struct ReaderMovesBetweenThreads: BackendCheck {
        func run<B: StorageBackend>(_ b: B) throws {
            let t = try b.table(named: "t")
            try b.write { tx in try tx.put(t, k("x"), k("1")) }
            let tx = try b.beginRead()
            let box = UncheckedBox(tx)
            let done = DispatchSemaphore(value: 0)
            let result = UncheckedBox<[UInt8]?>(nil)
            Thread {
                result.value = try? box.value.get(t, k("x"))
                box.value.close()
                done.signal()
            }.start()
            done.wait()
            #expect(result.value == k("1"))
        }
    }

    @Test(arguments: Kind.allCases)
    func aReaderMayMoveBetweenThreads(_ kind: Kind) throws { try check(kind, ReaderMovesBetweenThreads()) }

    struct StatsCount: BackendCheck {
        func run<B: StorageBackend>(_ b: B) throws {
            let t = try b.table(named: "t")
            try b.write { tx in for i in 0..<100 { try tx.put(t, k("key\(i)"), [UInt8](repeating: 1, count: 100)) } }
            let s = try b.stats()
            #expect(s.entriesByTable["t"] == 100 && s.entriesByTable["u"] == 0)
            #expect(s.sizeInUseBytes >= 100 * 100 && s.sizeBytes >= s.sizeInUseBytes / 2)
        }
    }

    @Test(arguments: Kind.allCases)
    func statsCountEntriesAndBytes(_ kind: Kind) throws { try check(kind, StatsCount()) }

    struct QuotaStopsWrites: BackendCheck {
        func run<B: StorageBackend>(_ b: B) throws {
            let t = try b.table(named: "t")
            var failed: BackendError?
            for i in 0..<1000 {
                do {
                    try b.write { tx in try tx.put(t, k("q\(i)"), [UInt8](repeating: 9, count: 32 * 1024)) }
                } catch let e as BackendError {
                    failed = e
                    break
                }
            }
            guard case .quotaExceeded = failed else {
                Issue.record("expected quotaExceeded, got \(String(describing: failed))")
                return
            }
            // What was committed is intact.
            #expect(try b.read { try $0.get(t, k("q0")) }?.count == 32 * 1024)
        }
    }

    @Test(arguments: Kind.allCases)
    func theQuotaStopsWritesWithATypedError(_ kind: Kind) throws {
        try check(kind, quotaBytes: 4 << 20, QuotaStopsWrites())
    }

    @Test func lmdbReopensWithItsData() throws {
        let dir = NSTemporaryDirectory() + "cairn-backend-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = BackendConfiguration(tables: ["t"])
        do {
            let b = try LMDBBackend(path: dir, configuration: config)
            let t = try b.table(named: "t")
            try b.write { tx in try tx.put(t, k("persist"), k("yes")) }
        }
        let b = try LMDBBackend(path: dir, configuration: config)
        #expect(try b.read { try $0.get(b.table(named: "t"), k("persist")) } == k("yes"))
    }

    /// Resident bytes of the mappings of `file` in this process (from /proc/self/smaps).
    func residentBytes(mapping file: String) throws -> Int {
        let resolved = URL(fileURLWithPath: file).resolvingSymlinksInPath().path
        var total = 0
        var inFile = false
        // (read to the end: /proc files report size 0, and smaps is long)
        let data = try #require(FileHandle(forReadingAtPath: "/proc/self/smaps")).readDataToEndOfFile()
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = fields.first, first.contains("-"), first.first?.isHexDigit == true, fields.count >= 5 {
                inFile = fields.count >= 6 && fields[5...].joined(separator: " ") == resolved
            } else if inFile, fields.first == "Rss:", fields.count >= 2, let kb = Int(fields[1]) {
                total += kb * 1024
            }
        }
        return total
    }

    @Test func lmdbReleasesTheMappedPagesOfAWholeScanAndKeepsTheData() throws {
        let dir = NSTemporaryDirectory() + "cairn-backend-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let b = try LMDBBackend(path: dir, configuration: BackendConfiguration(tables: ["t"]))
        let t = try b.table(named: "t")
        let value = [UInt8](repeating: 9, count: 1000)
        for batch in 0..<40 {
            try b.write { tx in for i in 0..<1000 { try tx.put(t, k("k\(batch)-\(i)"), value) } }
        }
        // A whole scan (as a snapshot does) maps every page into the process.
        var scanned = 0
        try b.read { tx in
            try tx.scan(t, from: [], to: nil, reverse: false) { _, v in
                scanned += v.count
                return true
            }
        }
        #expect(scanned == 40_000 * 1000)
        let before = try residentBytes(mapping: dir + "/data.mdb")
        #expect(before >= 30 << 20, "the scan left \(before) bytes of data.mdb resident")
        b.releaseMappedPages()
        let after = try residentBytes(mapping: dir + "/data.mdb")
        #expect(after < 1 << 20, "still resident after the release: \(after) bytes")
        // Nothing is lost: the pages come back from the page cache.
        #expect(try b.read { try $0.get(t, k("k39-999")) } == value)
        #expect(try b.read { tx in try tx.count(t) } == 40_000)
    }

    @Test func lmdbDefragmentShrinksTheFileAndKeepsEverything() throws {
        let dir = NSTemporaryDirectory() + "cairn-backend-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = BackendConfiguration(tables: ["t", "u"])
        let b = try LMDBBackend(path: dir, configuration: config)
        let t = try b.table(named: "t")
        let u = try b.table(named: "u")
        let value = [UInt8](repeating: 7, count: 1000)
        for batch in 0..<20 {
            try b.write { tx in for i in 0..<1000 { try tx.put(t, k("k\(batch)-\(i)"), value) } }
        }
        try b.write { tx in try tx.put(u, k("other"), k("table")) }
        // Delete all but every 100th key: the file keeps its size, most pages become free.
        for batch in 0..<20 {
            try b.write { tx in for i in 0..<1000 where i % 100 != 0 { _ = try tx.delete(t, k("k\(batch)-\(i)")) } }
        }
        // A reader opened before the defragmentation keeps its snapshot (the swap waits for it).
        let reader = try b.beginRead()
        let sawBefore = try reader.get(t, k("k0-0"))
        reader.close()
        let (before, after) = try b.defragment()
        #expect(before > 20_000_000)
        #expect(after < before / 10, "defragmentation should drop the free pages: \(before) -> \(after) bytes")
        #expect(sawBefore == value)
        let stats = try b.stats()
        #expect(stats.sizeBytes == after)
        #expect(stats.entriesByTable["t"] == 200)
        for batch in 0..<20 {
            for i in stride(from: 0, to: 1000, by: 100) {
                #expect(try b.read { try $0.get(t, k("k\(batch)-\(i)")) } == value)
            }
        }
        #expect(try b.read { try $0.get(u, k("other")) } == k("table"))
        // Writes go on, and survive a reopen.
        try b.write { tx in try tx.put(t, k("after"), k("defrag")) }
        #expect(!FileManager.default.fileExists(atPath: dir + "/defrag.tmp"))
        // A copy left by a crash mid-defragmentation is removed at the next open.
        try FileManager.default.createDirectory(atPath: dir + "/defrag.tmp", withIntermediateDirectories: true)
        try Data(repeating: 1, count: 4096).write(to: URL(fileURLWithPath: dir + "/defrag.tmp/data.mdb"))
        let reopened = try LMDBBackend(path: dir, configuration: config)
        #expect(!FileManager.default.fileExists(atPath: dir + "/defrag.tmp"))
        #expect(try reopened.read { try $0.get(reopened.table(named: "t"), k("after")) } == k("defrag"))
        #expect(try reopened.stats().entriesByTable["t"] == 201)
    }

    @Test func lmdbRefusesAFileThatIsNotLMDB() throws {
        let dir = NSTemporaryDirectory() + "cairn-backend-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: dir + "/data.mdb"))
        #expect(throws: BackendError.self) { try LMDBBackend(path: dir, configuration: BackendConfiguration(tables: ["t"])) }
    }
}

final class ManagedAtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}

final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ v: T) { value = v }
}
