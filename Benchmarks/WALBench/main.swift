import ArgumentParser
import CCRC32C
import CairnFS
import CairnWAL
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

@main
struct WALBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-wal-bench",
        abstract: "Commit-latency, CRC32C and recovery benchmarks of the Cairn WAL.",
        subcommands: [Latency.self, FsyncFloor.self, CRC.self, Recovery.self, CrashChild.self])
}

func benchLogger() -> Logger {
    var l = Logger(label: "cairn.wal.bench")
    l.logLevel = .error
    return l
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))
    return sorted[rank]
}

func micros(_ d: Duration) -> Double {
    let (s, a) = d.components
    return Double(s) * 1e6 + Double(a) / 1e12
}

func fmt(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }

/// Keeps one CPU from idling while alive (some VMs wake idle CPUs only on a 4 ms tick,
/// which inflates every sync latency when the machine is otherwise quiet).
final class BusySpinner: Sendable {
    let stop = Atomic<Bool>(false)
    init(enabled: Bool) {
        guard enabled else { return }
        let t = Thread { [self] in
            var x: UInt64 = 0
            while !self.stop.load(ordering: .relaxed) { x &+= 1 }
            _ = x
        }
        t.start()
    }
    func finish() { stop.store(true, ordering: .relaxed) }
}

/// Measures write+fdatasync latency of small appends into a preallocated file: the floor a WAL sync can reach.
func measureFsyncFloor(dir: String, samples: Int, blockBytes: Int) throws -> [Double] {
    let fs = FileSystem.live
    try fs.createDirectory(dir)
    let path = dir + "/fsync-floor.tmp"
    let file = try fs.open(path, flags: O_RDWR | O_CREAT | O_TRUNC, mode: 0o600)
    defer {
        file.close()
        try? fs.unlink(path)
    }
    try file.allocate(offset: 0, length: Int64(samples * blockBytes + (1 << 20)))
    try file.fsync()
    let block = [UInt8](repeating: 0xAB, count: blockBytes)
    var out: [Double] = []
    out.reserveCapacity(samples)
    let clock = ContinuousClock()
    for i in 0..<samples {
        let t0 = clock.now
        try file.write(block, at: Int64(i * blockBytes))
        try file.fdatasync()
        out.append(micros(clock.now - t0))
    }
    return out.sorted()
}

struct FsyncFloor: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fsync-floor", abstract: "Raw pwrite+fdatasync latency.")
    @Option var dir = "/tmp/cairn-wal-bench"
    @Option var samples = 2000
    @Option var blockBytes = 512
    @Flag(help: "Keep one CPU busy while measuring.") var busyCPU = false

    func run() throws {
        let spinner = BusySpinner(enabled: busyCPU)
        defer { spinner.finish() }
        let s = try measureFsyncFloor(dir: dir, samples: samples, blockBytes: blockBytes)
        print("fdatasync floor (\(blockBytes) B appends into a preallocated file, \(samples) samples): p50 \(fmt(percentile(s, 50))) µs  p99 \(fmt(percentile(s, 99))) µs  p99.9 \(fmt(percentile(s, 99.9))) µs")
    }
}

struct Latency: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Durable-append latency under 1…N concurrent appenders.")
    @Option var dir = "/tmp/cairn-wal-bench"
    @Option(help: "Comma-separated appender counts.") var appenders = "1,8,64,256"
    @Option(help: "Comma-separated record sizes in bytes.") var sizes = "100,300,4096"
    @Option(help: "Seconds per configuration.") var seconds = 3.0
    @Option var segmentSizeBytes = 64 << 20
    @Option var maxBatchBytes = 4 << 20
    @Flag(help: "Zero-fill segments instead of fallocate.") var zeroFill = false
    @Option var floorSamples = 1000
    @Option(help: "fdatasync samples taken right before each row.") var rowFloorSamples = 300
    @Flag(help: "Keep one CPU busy during the floor and every run.") var busyCPU = false
    @Option(help: "threads: blocking appendNextAndSync on OS threads; tasks: async appendNext on Swift tasks.")
    var mode = "threads"

    func run() throws {
        let spinner = BusySpinner(enabled: busyCPU)
        defer { spinner.finish() }
        let floor = try measureFsyncFloor(dir: dir, samples: floorSamples, blockBytes: 512)
        let floorP50 = percentile(floor, 50)
        print("fdatasync floor: p50 \(fmt(floorP50)) µs  p99 \(fmt(percentile(floor, 99))) µs  p99.9 \(fmt(percentile(floor, 99.9))) µs")
        _ = floorP50
        print("The floor is re-measured (\(rowFloorSamples) samples) right before each row: on a shared VM it moves with the load.")
        print("appenders  size  records/s     fsyncs/rec  floor p50 µs  p50 µs (×floor)   p99 µs (×floor)    p99.9 µs (×floor)")
        for n in appenders.split(separator: ",").compactMap({ Int($0) }) {
            for size in sizes.split(separator: ",").compactMap({ Int($0) }) {
                let rowFloor = percentile(try measureFsyncFloor(dir: dir, samples: rowFloorSamples, blockBytes: 512), 50)
                try runOne(appenders: n, size: size, floorP50: rowFloor)
            }
        }
    }

    func runOne(appenders n: Int, size: Int, floorP50: Double) throws {
        let walDir = dir + "/wal-\(n)-\(size)"
        try? FileManager.default.removeItem(atPath: walDir)
        var config = WALConfiguration()
        config.segmentSizeBytes = segmentSizeBytes
        config.maxBatchBytes = maxBatchBytes
        config.preallocation = zeroFill ? .zeroFill : .fallocate
        let wal = try WAL.create(directory: walDir, metadata: WALMetadata(clusterID: 1, memberID: 1), configuration: config, logger: benchLogger())
        let data = [UInt8](repeating: 0x5A, count: size)
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let results = LatencyResults()
        let started = ContinuousClock.now
        let done = DispatchGroup()
        if mode == "tasks" {
            for _ in 0..<n {
                done.enter()
                Task.detached {
                    var lat: [Double] = []
                    let clock = ContinuousClock()
                    while clock.now < deadline {
                        let t0 = clock.now
                        do { _ = try await wal.appendNext(term: 1, data: data) } catch {
                            FileHandle.standardError.write("append failed: \(error)\n".data(using: .utf8)!)
                            break
                        }
                        lat.append(micros(clock.now - t0))
                    }
                    results.all.withLock { $0.append(lat) }
                    done.leave()
                }
            }
        } else {
            var threads: [Thread] = []
            for _ in 0..<n {
                done.enter()
                let t = Thread {
                    var lat: [Double] = []
                    let clock = ContinuousClock()
                    while clock.now < deadline {
                        let t0 = clock.now
                        do { _ = try wal.appendNextAndSync(term: 1, data: data) } catch {
                            FileHandle.standardError.write("append failed: \(error)\n".data(using: .utf8)!)
                            break
                        }
                        lat.append(micros(clock.now - t0))
                    }
                    results.all.withLock { $0.append(lat) }
                    done.leave()
                }
                t.stackSize = 1 << 20
                threads.append(t)
            }
            for t in threads { t.start() }
        }
        done.wait()
        let elapsed = micros(ContinuousClock.now - started) / 1e6
        let stats = wal.statistics
        wal.close()
        try? FileManager.default.removeItem(atPath: walDir)
        let all = results.all.withLock { $0.flatMap { $0 } }.sorted()
        let p50 = percentile(all, 50)
        let p99 = percentile(all, 99)
        let p999 = percentile(all, 99.9)
        let line = [
            String(n).padding(toLength: 10, withPad: " ", startingAt: 0),
            String(size).padding(toLength: 6, withPad: " ", startingAt: 0),
            fmt(Double(all.count) / elapsed, 0).padding(toLength: 14, withPad: " ", startingAt: 0),
            fmt(Double(stats.syncs) / Double(max(1, stats.records)), 4).padding(toLength: 12, withPad: " ", startingAt: 0),
            fmt(floorP50).padding(toLength: 14, withPad: " ", startingAt: 0),
            "\(fmt(p50)) (\(fmt(p50 / floorP50, 2))×)".padding(toLength: 18, withPad: " ", startingAt: 0),
            "\(fmt(p99)) (\(fmt(p99 / floorP50, 2))×)".padding(toLength: 19, withPad: " ", startingAt: 0),
            "\(fmt(p999)) (\(fmt(p999 / floorP50, 2))×)",
        ]
        print(line.joined())
    }
}

struct CRC: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "CRC32C throughput, hardware and portable.")
    @Option var megabytes = 2048
    @Option var bufferBytes = 1 << 20

    func run() {
        var buf = [UInt8](repeating: 0, count: bufferBytes)
        for i in buf.indices { buf[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        let rounds = megabytes * (1 << 20) / bufferBytes
        for (name, f) in [
            ("dispatch (\(String(cString: cairn_crc32c_implementation())))", cairn_crc32c_update),
            ("portable slicing-by-8", cairn_crc32c_update_portable),
        ] as [(String, (UInt32, UnsafeRawPointer?, Int) -> UInt32)] {
            let n = name.hasPrefix("portable") ? max(1, rounds / 8) : rounds
            var crc: UInt32 = 0
            let t0 = ContinuousClock.now
            buf.withUnsafeBytes { raw in
                for _ in 0..<n { crc = f(crc, raw.baseAddress, raw.count) }
            }
            let secs = micros(ContinuousClock.now - t0) / 1e6
            let gbps = Double(n) * Double(bufferBytes) / secs / 1e9
            print("CRC32C \(name): \(fmt(gbps, 2)) GB/s (\(n * bufferBytes >> 20) MiB in \(fmt(secs, 3)) s, crc \(String(crc, radix: 16)))")
        }
    }
}

struct Recovery: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Open+verify throughput of a log written by the WAL.")
    @Option var dir = "/tmp/cairn-wal-bench"
    @Option var megabytes = 512
    @Option var recordBytes = 300
    @Option var runs = 3

    func run() throws {
        let walDir = dir + "/recovery"
        try? FileManager.default.removeItem(atPath: walDir)
        var config = WALConfiguration()
        config.maxBatchBytes = 8 << 20
        let wal = try WAL.create(directory: walDir, metadata: WALMetadata(clusterID: 1, memberID: 1), configuration: config, logger: benchLogger())
        let data = [UInt8](repeating: 0x33, count: recordBytes)
        let perBatch = (4 << 20) / (recordBytes + 48)
        var index: UInt64 = 0
        var written = 0
        while written < megabytes << 20 {
            var batch: [WALRecord] = []
            for _ in 0..<perBatch {
                index += 1
                batch.append(.entry(WALEntry(term: 1, index: index, data: data)))
            }
            try wal.appendAndSync(batch)
            written += perBatch * WALFormat.frameBytes(payloadBytes: 24 + recordBytes)
        }
        wal.close()
        for r in 1...runs {
            let t0 = ContinuousClock.now
            let (w, replay) = try WAL.open(directory: walDir, configuration: config, logger: benchLogger())
            let secs = micros(ContinuousClock.now - t0) / 1e6
            w.close()
            let t1 = ContinuousClock.now
            let scan = try WALScanner(directory: walDir).scan()
            let scanSecs = micros(ContinuousClock.now - t1) / 1e6
            print("run \(r): verify only (WALScanner.scan) \(fmt(Double(scan.logBytes) / scanSecs / 1e6, 0)) MB/s; open+verify+replay of \(scan.logBytes >> 20) MiB (\(replay.entries.count) entries of \(recordBytes) B) in \(fmt(secs, 3)) s = \(fmt(Double(scan.logBytes) / secs / 1e6, 0)) MB/s")
        }
        try? FileManager.default.removeItem(atPath: walDir)
    }
}

/// Child process for the SIGKILL crash test: appends under concurrent load and
/// prints each acknowledged index on its own line.
struct CrashChild: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "crash-child", shouldDisplay: false)
    @Option var dir: String
    @Option var appenders = 16
    @Option var recordBytes = 200
    @Option var segmentSizeBytes = 256 << 10

    func run() throws {
        var config = WALConfiguration()
        config.segmentSizeBytes = segmentSizeBytes
        config.maxBatchBytes = 64 << 10
        let logger = benchLogger()
        let wal: WAL
        if FileManager.default.fileExists(atPath: dir) {
            wal = try WAL.open(directory: dir, configuration: config, logger: logger).0
        } else {
            wal = try WAL.create(directory: dir, metadata: WALMetadata(clusterID: 7, memberID: 7), configuration: config, logger: logger)
        }
        emit("ready")
        var threads: [Thread] = []
        for _ in 0..<appenders {
            let t = Thread {
                while true {
                    do {
                        let i = try wal.appendNextAndSync(term: 1, data: [UInt8](repeating: 0xC7, count: recordBytes))
                        emit("\(i)")
                    } catch {
                        emit("error \(error)")
                        return
                    }
                }
            }
            threads.append(t)
        }
        for t in threads { t.start() }
        while true { sleep(100) }
    }
}

private let stdoutLock = Mutex(())

/// Writes one line to stdout with a single write(2) (atomic on a pipe).
@Sendable func emit(_ s: String) {
    stdoutLock.withLock { _ in
        var line = Array(s.utf8)
        line.append(10)
        _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }
}

/// Per-appender latency lists, gathered from many threads or tasks.
final class LatencyResults: Sendable {
    let all = Mutex<[[Double]]>([])
}
