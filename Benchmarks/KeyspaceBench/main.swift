import ArgumentParser
import CairnBackend
import CairnLMDB
import CairnMVCC
import Foundation
import KeyspaceCrashWorkload

/// Keyspace benchmarks: put, range, txn and compaction throughput and
/// latency, LMDB against the in-memory backend.
@main
struct KeyspaceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-keyspace-bench",
        abstract: "Keyspace (MVCC) throughput and latency on LMDB and in memory.",
        subcommands: [Run.self, CrashChild.self, MapCheck.self],
        defaultSubcommand: Run.self)
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the benchmarks and print a table.")

    @Option(help: "Keys to put (each put is one revision).")
    var puts: Int = 1_000_000
    @Option(help: "Puts per backend write transaction, as the Raft applier batches them.")
    var batchSize: Int = 100
    @Option(help: "Key size in bytes.")
    var keySizeBytes: Int = 8
    @Option(help: "Value size in bytes.")
    var valueSizeBytes: Int = 256
    @Option(help: "Single-key reads to time.")
    var reads: Int = 1_000_000
    @Option(help: "Txns to time (each: one compare, two puts).")
    var txns: Int = 200_000
    @Option(help: "Backends to run: lmdb, memory or both.")
    var backend: String = "both"
    @Option(help: "Directory for the LMDB files (a fresh subdirectory is made).")
    var dir: String = NSTemporaryDirectory()
    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        var results: [[String: String]] = []
        let kinds = backend == "both" ? ["lmdb", "memory"] : [backend]
        for kind in kinds {
            let path = dir + "/cairn-keyspace-bench-\(getpid())-\(kind)"
            try? FileManager.default.removeItem(atPath: path)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let config = BackendConfiguration(tables: Keyspace<MemoryBackend>.tableNames, quotaBytes: 8 << 30)
            if kind == "lmdb" {
                let ks = try Keyspace(backend: try LMDBBackend(path: path, configuration: config))
                results += try measure(kind, ks, path: path)
            } else {
                results += try measure(kind, Keyspace(backend: MemoryBackend(configuration: config)), path: nil)
            }
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("| backend | workload | ops | ops/s (wall) | ops per CPU-second | p50 µs | p99 µs | note |")
            print("|---|---|---:|---:|---:|---:|---:|---|")
            for r in results {
                print(
                    "| \(r["backend"]!) | \(r["workload"]!) | \(r["ops"]!) | \(r["opsPerSecond"]!) | \(r["opsPerCPUSecond"] ?? "") | \(r["p50us"] ?? "") | \(r["p99us"] ?? "") | \(r["note"] ?? "") |"
                )
            }
        }
    }

    func key(_ i: Int) -> [UInt8] { makeKey(i, size: keySizeBytes) }

    func measure<B: StorageBackend>(_ kind: String, _ ks: Keyspace<B>, path: String?) throws -> [[String: String]] {
        // Options are read once: their property-wrapper getters are slow in a loop.
        let size = keySizeBytes
        return try Workloads(
            puts: puts, batchSize: batchSize, keySizeBytes: size, valueSizeBytes: valueSizeBytes, reads: reads,
            txns: txns
        ).measure(kind, ks, path: path)
    }
}

/// The timed workloads, with every option as a plain value.
struct Workloads {
    let puts: Int
    let batchSize: Int
    let keySizeBytes: Int
    let valueSizeBytes: Int
    let reads: Int
    let txns: Int

    func key(_ i: Int) -> [UInt8] { makeKey(i, size: keySizeBytes) }

    func measure<B: StorageBackend>(_ kind: String, _ ks: Keyspace<B>, path: String?) throws -> [[String: String]] {
        var out: [[String: String]] = []
        let value = [UInt8](repeating: 0x61, count: valueSizeBytes)
        var order = Array(0..<puts)
        var g = SystemRandomNumberGenerator()
        order.shuffle(using: &g)

        // Puts in batches.
        var batchLatencies: [Double] = []
        batchLatencies.reserveCapacity(puts / batchSize + 1)
        let start = now()
        let startCPU = cpuSeconds()
        var i = 0
        var applied: UInt64 = 0
        while i < puts {
            let n = min(batchSize, puts - i)
            let t0 = now()
            try ks.apply { w in
                for j in i..<(i + n) { _ = try w.put(PutRequest(key: key(order[j]), value: value)) }
                applied += 1
                w.setAppliedIndex(applied)
            }
            batchLatencies.append(now() - t0)
            i += n
        }
        let putSeconds = now() - start
        out.append(
            row(
                kind, "put (batch \(batchSize), \(keySizeBytes) B keys, \(valueSizeBytes) B values)", puts, putSeconds,
                batchLatencies.map { $0 / Double(batchSize) }, cpu: cpuSeconds() - startCPU,
                note: "latency per put, amortized over its batch"))

        // Disk per revision.
        let stats = try ks.backend.stats()
        if path != nil {
            let etcdLayout = 17 + KeyValue(key: key(0), createRevision: 2, modRevision: 2, version: 1, value: value).encoded().count
            let perRevision = Double(stats.sizeInUseBytes) / Double(puts)
            out.append([
                "backend": kind, "workload": "disk per revision", "ops": "\(puts)", "opsPerSecond": "",
                "note":
                    "\(Int(perRevision)) B in pages per revision; stored record = \(etcdLayout) B, the same 17-byte key + encoded KeyValue as etcd; file \(stats.sizeBytes / 1_048_576) MiB",
            ])
        }

        // Single-key ranges on one thread.
        var readLatencies: [Double] = []
        readLatencies.reserveCapacity(reads)
        let rstart = now()
        let rstartCPU = cpuSeconds()
        for r in 0..<reads {
            let k = key(order[r % puts])
            let t0 = now()
            let resp = try ks.range(RangeRequest(key: k))
            readLatencies.append(now() - t0)
            if resp.kvs.count != 1 { throw ValidationError("key \(k) missing") }
        }
        out.append(
            row(kind, "range, single key, 1 thread", reads, now() - rstart, readLatencies, cpu: cpuSeconds() - rstartCPU))

        // Txns: compare the version, then two puts; batched like puts.
        var txnLatencies: [Double] = []
        let tstart = now()
        let tstartCPU = cpuSeconds()
        i = 0
        while i < txns {
            let n = min(batchSize, txns - i)
            let t0 = now()
            try ks.apply { w in
                for j in i..<(i + n) {
                    let a = key(order[(2 * j) % puts])
                    let b = key(order[(2 * j + 1) % puts])
                    _ = try w.txn(
                        TxnRequest(
                            compare: [Compare(key: a, target: .version(0), result: .greater)],
                            success: [.put(PutRequest(key: a, value: value)), .put(PutRequest(key: b, value: value))]))
                }
            }
            txnLatencies.append(now() - t0)
            i += n
        }
        out.append(
            row(
                kind, "txn (1 compare + 2 puts, batch \(batchSize))", txns, now() - tstart,
                txnLatencies.map { $0 / Double(batchSize) }, cpu: cpuSeconds() - tstartCPU,
                note: "latency per txn, amortized over its batch"))

        // Compaction of everything superseded so far.
        let revisionsBefore = ks.revision
        let cstart = now()
        let cstartCPU = cpuSeconds()
        try ks.compact(ks.revision)
        let cseconds = now() - cstart
        out.append(
            row(
                kind, "compact at current revision", Int(revisionsBefore - 1), cseconds, [],
                cpu: cpuSeconds() - cstartCPU, note: "ops = revisions scanned; superseded ones removed"))
        return out
    }

    func row(
        _ kind: String, _ workload: String, _ ops: Int, _ seconds: Double, _ latencies: [Double], cpu: Double,
        note: String = ""
    ) -> [String: String] {
        var r: [String: String] = [
            "backend": kind, "workload": workload, "ops": "\(ops)",
            "opsPerSecond": "\(Int(Double(ops) / seconds))", "opsPerCPUSecond": "\(Int(Double(ops) / cpu))",
            "note": note,
        ]
        if !latencies.isEmpty {
            let sorted = latencies.sorted()
            r["p50us"] = String(format: "%.2f", sorted[sorted.count / 2] * 1e6)
            r["p99us"] = String(format: "%.2f", sorted[min(sorted.count - 1, sorted.count * 99 / 100)] * 1e6)
        }
        return r
    }
}

/// A fixed-size key: the index in big-endian, padded with "k" or cut to `size`.
func makeKey(_ i: Int, size: Int) -> [UInt8] {
    var k = [UInt8](repeating: UInt8(ascii: "k"), count: size)
    var x = UInt64(i)
    var j = size - 1
    while j >= 0 && x > 0 {
        k[j] = UInt8(truncatingIfNeeded: x)
        x >>= 8
        j -= 1
    }
    return k
}

/// CPU seconds (user + system) this process has used.
func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The child process of the keyspace crash test: applies deterministic
/// batches to an LMDB keyspace forever, printing each committed batch.
struct CrashChild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crash-child", abstract: "Test helper: write batches until killed.", shouldDisplay: false)

    @Option var dir: String

    func run() throws {
        let config = BackendConfiguration(tables: Keyspace<MemoryBackend>.tableNames)
        var options = LMDBBackend.Options()
        options.initialMapSizeBytes = 1 << 20  // grow often, under the kill
        let ks = try Keyspace(backend: try LMDBBackend(path: dir, configuration: config, options: options))
        var batch = ks.appliedIndex + 1
        while true {
            let ops = CrashWorkload.batch(batch)
            try ks.apply { w in
                for op in ops {
                    switch op {
                    case .put(let k, let v): _ = try w.put(PutRequest(key: k, value: v))
                    case .delete(let k): _ = try w.deleteRange(DeleteRangeRequest(key: k))
                    }
                }
                w.setAppliedIndex(batch)
            }
            // Unbuffered: the line is in the pipe before the next batch starts.
            let line = "committed \(batch) \(ks.revision)\n"
            _ = line.withCString { write(1, $0, strlen($0)) }
            batch += 1
        }
    }
}

/// Checks SortedByteMap's invariants, and those of the memory backend's
/// tables through puts and a compaction, in whatever build this binary is (a
/// test helper). It caught a Swift 6.3 miscompile under cross-module
/// optimization (a use-after-free in the specialized compaction path) that
/// debug builds never show; see Keyspace.removeCompacted.
struct MapCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "map-check", shouldDisplay: false)
    @Option var count: Int = 100_000

    func run() throws {
        var map = SortedByteMap<[UInt8]>()
        for i in 0..<count {
            map.updateValue([1, 2, 3], forKey: Array(Codec17.key(Int64(i))))
            if i % 10_000 == 0, let v = map.invariantViolation() { throw ValidationError("after insert \(i): \(v)") }
        }
        if let v = map.invariantViolation() { throw ValidationError("after inserts: \(v)") }
        var removed = 0
        for i in stride(from: 0, to: count, by: 3) {
            map.removeValue(forKey: Codec17.key(Int64(i)))
            removed += 1
            if removed % 5000 == 0, let v = map.invariantViolation() { throw ValidationError("after remove \(i): \(v)") }
        }
        if let v = map.invariantViolation() { throw ValidationError("after removals: \(v)") }
        print("ok \(map.count)")

        let backend = MemoryBackend(configuration: BackendConfiguration(tables: Keyspace<MemoryBackend>.tableNames))
        let ks = try Keyspace(backend: backend)
        func check(_ what: String) throws {
            for (i, t) in try backend.read({ try $0.tables() }).enumerated() {
                if let v = t.invariantViolation() { throw ValidationError("\(what): table \(i): \(v)") }
            }
        }
        var i = 0
        while i < count {
            try ks.apply { w in
                for j in i..<(i + 100) { _ = try w.put(PutRequest(key: makeKey((j * 7919) % count, size: 8), value: [1])) }
            }
            i += 100
            if i % 20_000 == 0 { try check("puts \(i)") }
        }
        try check("after puts")
        try ks.compact(ks.revision)
        try check("after compaction")
        print("ok keyspace")
    }
}

enum Codec17 {
    static func key(_ main: Int64) -> [UInt8] {
        var k = [UInt8](repeating: 0, count: 17)
        var x = UInt64(main)
        for j in stride(from: 7, through: 0, by: -1) {
            k[j] = UInt8(truncatingIfNeeded: x)
            x >>= 8
        }
        k[8] = UInt8(ascii: "_")
        return k
    }
}
