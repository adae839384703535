import CairnFS
@testable import CairnServer
import Foundation
import Logging
import Testing

/// The start-up decision after a crash: keep the keyspace (a killed process), set it aside to
/// be rebuilt (a machine crash, when snapshot + WAL can rebuild it), or keep it although the
/// machine crashed (it cannot be rebuilt), leaving the evidence for the next start.
@Suite("Keyspace crash guard")
struct KeyspaceCrashGuardTests {
    let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A member directory with a keyspace, optionally a WAL segment, a restored flag and a marker.
    func layout(wal: Bool = true, restored: Bool = false, marker: String?) throws -> ServerOptions {
        let options = ServerOptions(dataDirectory: tempDir())
        let fm = FileManager.default
        try fm.createDirectory(atPath: options.keyspaceDirectory, withIntermediateDirectories: true)
        try Data("pages".utf8).write(to: URL(fileURLWithPath: options.keyspaceDirectory + "/data.mdb"))
        if wal {
            try fm.createDirectory(atPath: options.resolvedWALDirectory, withIntermediateDirectories: true)
            try Data().write(to: URL(fileURLWithPath: options.resolvedWALDirectory + "/0000000000000000-0000000000000001.wal"))
        }
        if restored { try Data().write(to: URL(fileURLWithPath: options.memberDirectory + "/" + MemberFiles.keyspaceRestoredFlag)) }
        if let marker { try Data((marker + "\n").utf8).write(to: URL(fileURLWithPath: options.memberDirectory + "/keyspace.unsynced")) }
        return options
    }

    func marker(_ o: ServerOptions) -> String? {
        (try? String(contentsOfFile: o.memberDirectory + "/keyspace.unsynced", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func asides(_ o: ServerOptions) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: o.memberDirectory)) ?? []).filter {
            $0.hasPrefix(KeyspaceCrashGuard.setAsidePrefix)
        }
    }

    @Test func aCleanStopOrAFirstStartKeepsTheKeyspaceAndRecordsThisBoot() throws {
        let o = try layout(marker: nil)
        defer { try? FileManager.default.removeItem(atPath: o.dataDirectory) }
        #expect(try KeyspaceCrashGuard.prepare(o, bootID: "boot-b", logger: logger) == nil)
        #expect(FileManager.default.fileExists(atPath: o.keyspaceDirectory + "/data.mdb"))
        #expect(marker(o) == "boot-b")
        try KeyspaceCrashGuard.markClean(o)
        #expect(marker(o) == nil)
    }

    @Test func aKilledProcessInTheSameBootKeepsTheKeyspace() throws {
        let o = try layout(marker: "boot-b")
        defer { try? FileManager.default.removeItem(atPath: o.dataDirectory) }
        #expect(try KeyspaceCrashGuard.prepare(o, bootID: "boot-b", logger: logger) == nil)
        #expect(FileManager.default.fileExists(atPath: o.keyspaceDirectory + "/data.mdb"))
        #expect(asides(o).isEmpty)
    }

    @Test func aMachineCrashSetsTheKeyspaceAsideUnopenedAndKeepsEarlierCopies() throws {
        let o = try layout(marker: "boot-a")
        defer { try? FileManager.default.removeItem(atPath: o.dataDirectory) }
        let aside = try #require(try KeyspaceCrashGuard.prepare(o, bootID: "boot-b", logger: logger))
        #expect(!FileManager.default.fileExists(atPath: o.keyspaceDirectory))
        #expect(FileManager.default.fileExists(atPath: aside + "/data.mdb"))
        #expect(marker(o) == "boot-b")
        // A second machine crash (before anyone removed the first copy) keeps both copies.
        try FileManager.default.createDirectory(atPath: o.keyspaceDirectory, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: o.memberDirectory + "/keyspace.unsynced"))
        let second = try #require(try KeyspaceCrashGuard.prepare(o, bootID: "boot-c", logger: logger))
        #expect(second != aside)
        #expect(asides(o).count == 2)
    }

    @Test func anUnknownBootIsTreatedAsAMachineCrash() throws {
        let o = try layout(marker: "unknown")
        defer { try? FileManager.default.removeItem(atPath: o.dataDirectory) }
        #expect(try KeyspaceCrashGuard.prepare(o, bootID: nil, logger: logger) != nil)
    }

    @Test func aRestoredKeyspaceWithoutItsFirstSnapshotIsKeptAndTheEvidenceStays() throws {
        let o = try layout(restored: true, marker: "boot-a")
        defer { try? FileManager.default.removeItem(atPath: o.dataDirectory) }
        #expect(try KeyspaceCrashGuard.prepare(o, bootID: "boot-b", logger: logger) == nil)
        #expect(FileManager.default.fileExists(atPath: o.keyspaceDirectory + "/data.mdb"))
        #expect(marker(o) == "boot-a", "the next start asks again")
    }

    @Test func withoutAWALTheKeyspaceIsKeptAndTheEvidenceStays() throws {
        // For example a --wal-dir on a device that is not mounted yet.
        let o = try layout(wal: false, marker: "boot-a")
        defer { try? FileManager.default.removeItem(atPath: o.dataDirectory) }
        #expect(try KeyspaceCrashGuard.prepare(o, bootID: "boot-b", logger: logger) == nil)
        #expect(FileManager.default.fileExists(atPath: o.keyspaceDirectory + "/data.mdb"))
        #expect(marker(o) == "boot-a")
    }
}
