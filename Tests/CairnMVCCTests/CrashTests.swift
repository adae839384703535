import CairnBackend
import CairnLMDB
import Foundation
import KeyspaceCrashWorkload
import Testing

@testable import CairnMVCC

/// A child process writing batches is killed with SIGKILL at random moments;
/// each time, the reopened store must hold exactly the state after its last
/// committed batch: every batch the child reported, nothing half applied.
@Suite struct CrashTests {
    /// The benchmark binary that hosts the crash child, next to the test bundle.
    static func childBinary() throws -> String {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("cairn-keyspace-bench").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        throw CrashTestError("cairn-keyspace-bench not found near \(CommandLine.arguments[0]); build it first")
    }

    struct CrashTestError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// The model: state and revision after `batches` batches.
    static func model(batches: UInt64) -> (state: [[UInt8]: KeyValue], revision: Int64) {
        var state: [[UInt8]: KeyValue] = [:]
        var rev: Int64 = 1
        guard batches > 0 else { return (state, rev) }
        for n in 1...batches {
            for change in CrashWorkload.batch(n) {
                switch change {
                case .put(let k, let v):
                    rev += 1
                    let old = state[k]
                    state[k] = KeyValue(
                        key: k, createRevision: old?.createRevision ?? rev, modRevision: rev,
                        version: (old?.version ?? 0) + 1, value: v)
                case .delete(let k):
                    if state[k] != nil {
                        rev += 1
                        state[k] = nil
                    }
                }
            }
        }
        return (state, rev)
    }

    /// The optimized build (CI runs tests in release) keeps the memory
    /// backend's tables intact through puts and a compaction.
    @Test func optimizedBuildKeepsTablesIntactThroughCompaction() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: try Self.childBinary())
        child.arguments = ["map-check", "--count", "60000"]
        let out = Pipe()
        child.standardOutput = out
        child.standardError = out
        try child.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        child.waitUntilExit()
        #expect(child.terminationStatus == 0, "map-check failed: \(text.prefix(2000))")
        #expect(text.contains("ok keyspace"))
    }

    @Test func killedWritersLoseNoCommittedBatch() throws {
        let binary = try Self.childBinary()
        let dir = NSTemporaryDirectory() + "cairn-crash-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SystemRandomNumberGenerator()
        let rounds = 12
        var previous: UInt64 = 0
        let log = dir + ".out"
        defer { try? FileManager.default.removeItem(atPath: log) }
        for round in 0..<rounds {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: binary)
            child.arguments = ["crash-child", "--dir", dir]
            // A file, not a pipe: the child must never block on its output.
            FileManager.default.createFile(atPath: log, contents: nil)
            let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            child.standardOutput = out
            try child.run()
            try out.close()
            // Let it write for a random while, then kill it mid-flight.
            usleep(UInt32.random(in: 30_000...250_000, using: &rng))
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()
            let text = try String(contentsOfFile: log, encoding: .utf8)
            let reported = text.split(separator: "\n").compactMap { line -> UInt64? in
                let parts = line.split(separator: " ")
                return parts.count == 3 && parts[0] == "committed" ? UInt64(parts[1]) : nil
            }
            let lastReported = reported.last ?? previous

            let config = BackendConfiguration(tables: Keyspace<MemoryBackend>.tableNames)
            let ks = try Keyspace(backend: try LMDBBackend(path: dir, configuration: config))
            let applied = ks.appliedIndex
            // Every reported batch survived; at most the one in flight more.
            #expect(applied >= lastReported, "round \(round): reported \(lastReported), store has \(applied)")
            #expect(applied <= lastReported + 1, "round \(round): store is ahead of the writer")
            let (state, rev) = Self.model(batches: applied)
            #expect(ks.revision == rev, "round \(round): revision")
            let all = try ks.range(RangeRequest(key: [0], rangeEnd: [0]))
            #expect(all.kvs.count == state.count, "round \(round): key count")
            for kv in all.kvs where state[kv.key] != kv {
                Issue.record("round \(round): \(String(decoding: kv.key, as: UTF8.self)) differs from the model")
                break
            }
            #expect(applied > previous || round == 0 || reported.isEmpty, "round \(round): no progress")
            previous = applied
        }
    }
}
