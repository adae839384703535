import CairnFS
import Foundation
import Testing

@testable import CairnWAL

/// The built `cairn-wal-bench` next to the test bundle (.build/<config>/).
func builtBinary(_ name: String) -> String {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path
}

/// Reads the child's stdout lines as they arrive.
final class LineCollector: @unchecked Sendable {
    // `lines` and `partial` are only touched with `lock` held.
    private let lock = NSLock()
    private var lines: [String] = []
    private var partial = Data()

    func feed(_ data: Data) {
        lock.lock()
        defer { lock.unlock() }
        partial.append(data)
        while let nl = partial.firstIndex(of: 10) {
            lines.append(String(decoding: partial[partial.startIndex..<nl], as: UTF8.self))
            partial.removeSubrange(partial.startIndex...nl)
        }
    }

    var snapshot: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }
}

@Suite struct WALCrash {
    @Test func sigkillDuringConcurrentAppendsNeverLosesAnAcknowledgedRecord() throws {
        let binary = builtBinary("cairn-wal-bench")
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build cairn-wal-bench first (swift build): \(binary)")
        let base = makeTempDir("crash")
        defer { removeTree(base) }
        let dir = base + "/wal"
        var acknowledged = Set<UInt64>()
        var tornRepairs = 0
        var rng = SystemRandomNumberGenerator()
        let kills = 20
        for round in 0..<kills {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["crash-child", "--dir", dir, "--appenders", "16", "--segment-size-bytes", "\(128 << 10)"]
            let pipe = Pipe()
            process.standardOutput = pipe
            let collector = LineCollector()
            pipe.fileHandleForReading.readabilityHandler = { h in collector.feed(h.availableData) }
            try process.run()
            // Wait until it opened the log, then let it run a random while.
            let start = Date()
            while !collector.snapshot.contains("ready") && Date().timeIntervalSince(start) < 10 { usleep(2000) }
            #expect(collector.snapshot.contains("ready"), "round \(round): child never became ready: \(collector.snapshot.prefix(3))")
            usleep(UInt32.random(in: 20_000...200_000, using: &rng))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            pipe.fileHandleForReading.readabilityHandler = nil
            if let rest = try? pipe.fileHandleForReading.readToEnd() { collector.feed(rest) }
            #expect(process.terminationReason == .uncaughtSignal)
            let lines = collector.snapshot
            #expect(!lines.contains { $0.hasPrefix("error") }, "round \(round): \(lines.filter { $0.hasPrefix("error") }.prefix(2))")
            for line in lines { if let i = UInt64(line) { acknowledged.insert(i) } }

            // Reopen (cutting a torn tail if the kill left one) and check every acknowledged record.
            let (wal, replay) = try WAL.open(directory: dir, configuration: smallConfig(segmentSizeBytes: 128 << 10), logger: testLogger)
            wal.close()
            if replay.repairedTornTail != nil { tornRepairs += 1 }
            let present = Set(replay.entries.map(\.index))
            let missing = acknowledged.subtracting(present)
            #expect(missing.isEmpty, "round \(round): acknowledged but missing: \(missing.sorted().prefix(10))")
            #expect(replay.entries.allSatisfy { $0.data == [UInt8](repeating: 0xC7, count: 200) })
            #expect(replay.entries.map(\.index) == Array(1...UInt64(replay.entries.count)))
        }
        #expect(acknowledged.count > kills, "the children acknowledged appends (\(acknowledged.count))")
        print("crash test: \(kills) SIGKILLs, \(acknowledged.count) acknowledged appends all present, \(tornRepairs) torn tails cut on reopen")
    }
}
