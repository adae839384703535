import CairnBackend
import CairnLMDB
import CairnMVCC
@testable import CairnServer
import Foundation
import Logging
import Testing

/// A member over LMDB in a temporary data dir, with fast ticks.
struct Member {
    let dir: String
    let server: RaftServer<LMDBBackend>

    static func options(_ dir: String, snapshotCount: UInt64 = 100_000) -> ServerOptions {
        var o = ServerOptions(dataDirectory: dir)
        o.heartbeatIntervalMilliseconds = 10
        o.electionTimeoutMilliseconds = 100
        o.snapshotCount = snapshotCount
        o.snapshotCatchUpEntries = 10
        o.leaseCheckIntervalMilliseconds = 50
        return o
    }

    static func start(_ dir: String, snapshotCount: UInt64 = 100_000, options custom: ServerOptions? = nil) throws -> Member {
        let o = custom ?? options(dir, snapshotCount: snapshotCount)
        try FileManager.default.createDirectory(atPath: o.keyspaceDirectory, withIntermediateDirectories: true)
        let backend = try LMDBBackend(
            path: o.keyspaceDirectory,
            configuration: BackendConfiguration(tables: Keyspace<LMDBBackend>.tableNames, quotaBytes: 1 << 30))
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let server = try RaftServer.open(options: o, backend: backend, logger: logger)
        try server.start()
        return Member(dir: dir, server: server)
    }

    func put(_ k: String, _ v: String, lease: Int64 = 0) async throws -> PutResponse {
        try await server.put(PutRequest(key: Array(k.utf8), value: Array(v.utf8), lease: lease))
    }

    func get(_ k: String) async throws -> String? {
        let r = try await server.range(RangeRequest(key: Array(k.utf8)), serializable: false)
        return r.kvs.first.map { String(decoding: $0.value, as: UTF8.self) }
    }

    /// Waits until the member is leader (a lone voter elects itself at start).
    func waitLeader() async throws {
        for _ in 0..<500 where !server.status.isLeader { try await Task.sleep(for: .milliseconds(10)) }
        #expect(server.status.isLeader)
    }
}

func tempDir() -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-server-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

@Suite("A member through Raft, WAL and keyspace")
struct ServerTests {
    @Test func writesAreAppliedAndReadLinearizably() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try Member.start(dir)
        defer { m.server.stop() }
        try await m.waitLeader()
        let r1 = try await m.put("a", "1")
        let r2 = try await m.put("a", "2")
        #expect(r2.revision == r1.revision + 1)
        #expect(try await m.get("a") == "2")
        let d = try await m.server.deleteRange(DeleteRangeRequest(key: Array("a".utf8)))
        #expect(d.deleted == 1)
        #expect(try await m.get("a") == nil)
        // A request error comes back as etcd's error and changes nothing.
        await #expect(throws: KVServerErrorMatcher.self) {
            do { _ = try await m.put("b", "x", lease: 12345) } catch { throw KVServerErrorMatcher(error) }
        }
        #expect(m.server.keyspace.revision == d.revision)
    }

    @Test func concurrentWritesGetDistinctRevisions() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try Member.start(dir)
        defer { m.server.stop() }
        try await m.waitLeader()
        let revs = try await withThrowingTaskGroup(of: Int64.self) { g in
            for i in 0..<500 { g.addTask { try await m.put("k\(i)", "v\(i)").revision } }
            var out: [Int64] = []
            for try await r in g { out.append(r) }
            return out
        }
        #expect(Set(revs).count == 500)
        #expect(revs.max() == m.server.keyspace.revision)
        let all = try await m.server.range(RangeRequest(key: Array("k".utf8), rangeEnd: Array("l".utf8)), serializable: true)
        #expect(all.count == 500)
    }

    @Test func restartKeepsEveryAcknowledgedWrite() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var m = try Member.start(dir)
        try await m.waitLeader()
        for i in 0..<200 { _ = try await m.put("k\(i)", "v\(i)") }
        let rev = m.server.keyspace.revision
        let id = m.server.identity
        m.server.stop()
        m = try Member.start(dir)
        defer { m.server.stop() }
        try await m.waitLeader()
        #expect(m.server.identity == id)
        #expect(m.server.keyspace.revision == rev)
        #expect(try await m.get("k199") == "v199")
        _ = try await m.put("after", "restart")
        #expect(m.server.keyspace.revision == rev + 1)
    }

    @Test func snapshotsTrimAndARestartRestoresALostKeyspace() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var m = try Member.start(dir, snapshotCount: 50)
        try await m.waitLeader()
        for i in 0..<400 { _ = try await m.put("k\(i % 50)", "v\(i)") }
        // Snapshots are written in the background: wait for at least one.
        let snapDir = Member.options(dir).snapshotDirectory
        var snaps: [String] = []
        for _ in 0..<300 {
            snaps = ((try? FileManager.default.contentsOfDirectory(atPath: snapDir)) ?? []).filter { $0.hasSuffix(".snap") }
            if !snaps.isEmpty { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(!snaps.isEmpty)
        let rev = m.server.keyspace.revision
        m.server.stop()
        // --max-snapshots (5) once the snapshot thread has stopped: while it runs, a listing may
        // fall between a new file and the purge of the oldest.
        snaps = ((try? FileManager.default.contentsOfDirectory(atPath: snapDir)) ?? []).filter { $0.hasSuffix(".snap") }
        #expect(snaps.count <= 5)
        // Lose the keyspace: the member rebuilds it from the newest snapshot and the WAL.
        try FileManager.default.removeItem(atPath: Member.options(dir).keyspaceDirectory)
        m = try Member.start(dir, snapshotCount: 50)
        defer { m.server.stop() }
        try await m.waitLeader()
        // The entries after the snapshot are applied again by the applier after start; a
        // linearizable barrier waits for them (a serializable read right after a restart may
        // be behind, as with etcd).
        try await m.server.linearizableBarrier()
        #expect(m.server.keyspace.revision == rev)
        for i in 350..<400 { #expect(try await m.get("k\(i % 50)") == "v\(i)") }
    }

    @Test func leasesExpireOnTheLeaderAndTakeTheirKeys() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try Member.start(dir)
        defer { m.server.stop() }
        try await m.waitLeader()
        // Election timeout 100 ms: the smallest TTL is 1 s (1.5 election timeouts, rounded up).
        #expect(m.server.lessor.effectiveTTL(0) == 1)
        guard case .leaseGrant(let id, let ttl, _) = try await m.server.propose(.leaseGrant(id: 77, ttlSeconds: 1)) else {
            Issue.record("grant failed")
            return
        }
        #expect(id == 77 && ttl == 1)
        _ = try await m.put("leased", "x", lease: 77)
        #expect(try await m.get("leased") == "x")
        var gone = false
        for _ in 0..<400 {
            if try await m.get("leased") == nil { gone = true; break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(gone)
        #expect(m.server.keyspace.lease(77) == nil)
        #expect(!m.server.lessor.exists(77))
    }

    @Test func keepAliveHoldsALease() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try Member.start(dir)
        defer { m.server.stop() }
        try await m.waitLeader()
        // TTL 3 s kept alive for 5 s: robust to a loaded machine stalling the test for a second.
        _ = try await m.server.propose(.leaseGrant(id: 5, ttlSeconds: 3))
        _ = try await m.put("held", "x", lease: 5)
        for _ in 0..<50 {
            #expect(m.server.lessor.renew(5) == 3)
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try await m.get("held") == "x")
        guard case .leaseRevoke = try await m.server.propose(.leaseRevoke(id: 5)) else {
            Issue.record("revoke failed")
            return
        }
        #expect(try await m.get("held") == nil)
        guard case .failed(.leaseNotFound) = try await m.server.propose(.leaseRevoke(id: 5)) else {
            Issue.record("second revoke should fail with lease not found")
            return
        }
    }

    @Test func watchersSeeHistoryThenLiveEventsAndCompaction() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try Member.start(dir)
        defer { m.server.stop() }
        try await m.waitLeader()
        let first = try await m.put("w/a", "1").revision
        _ = try await m.put("other", "x")
        _ = try await m.put("w/b", "2")
        let sink = CollectingSink()
        let w = Watcher(
            id: 1, key: Array("w/".utf8), rangeEnd: Array("w0".utf8), startRevision: first, prevKV: true,
            noPut: false, noDelete: false, progressNotify: false, fragment: false, sink: sink)
        m.server.watchHub.add(w)
        _ = try await m.put("w/a", "3")
        _ = try await m.server.deleteRange(DeleteRangeRequest(key: Array("w/b".utf8)))
        try await sink.waitFor(events: 4)
        let evs = sink.events
        #expect(evs.map { String(decoding: $0.event.kv.key, as: UTF8.self) } == ["w/a", "w/b", "w/a", "w/b"])
        #expect(evs.map(\.event.kind) == [.put, .put, .put, .delete])
        #expect(evs[2].prevKV.map { String(decoding: $0.value, as: UTF8.self) } == "1")
        #expect(evs[3].prevKV.map { String(decoding: $0.value, as: UTF8.self) } == "2")
        let revs = evs.map(\.event.kv.modRevision)
        #expect(revs == revs.sorted())
        m.server.watchHub.remove(w)

        // A watcher from a compacted revision is cancelled with the compaction revision.
        _ = try await m.server.compact(revision: m.server.keyspace.revision, physical: true)
        let late = CollectingSink()
        m.server.watchHub.add(
            Watcher(
                id: 2, key: Array("w/a".utf8), rangeEnd: [], startRevision: first, prevKV: false, noPut: false,
                noDelete: false, progressNotify: false, fragment: false, sink: late))
        try await late.waitForCompaction()
        #expect(late.compactRevision == m.server.keyspace.compactedRevision)
        #expect(m.server.watchHub.count == 0)
    }
}

/// Wraps any error so `#expect(throws:)` can match on a type.
struct KVServerErrorMatcher: Error {
    let underlying: any Error
    init(_ e: any Error) { underlying = e }
}

final class CollectingSink: WatchSink, @unchecked Sendable {
    private let lock = NSLock()
    private var _events: [WatchEvent] = []
    private var _compact: Int64?

    var events: [WatchEvent] { lock.withLock { _events } }
    var compactRevision: Int64? { lock.withLock { _compact } }
    var isBlocked: Bool { false }

    func deliver(watcher: Watcher, events: [WatchEvent], revision: Int64) {
        lock.withLock { _events.append(contentsOf: events) }
    }

    func compacted(watcher: Watcher, compactRevision: Int64) { lock.withLock { _compact = compactRevision } }
    func progress(watcher: Watcher, revision: Int64) {}

    func waitFor(events n: Int) async throws {
        for _ in 0..<500 where events.count < n { try await Task.sleep(for: .milliseconds(10)) }
        #expect(events.count == n)
    }

    func waitForCompaction() async throws {
        for _ in 0..<500 where compactRevision == nil { try await Task.sleep(for: .milliseconds(10)) }
        #expect(compactRevision != nil)
    }
}

@Suite("Restart edge cases")
struct RestartTests {
    @Test func aSnapshotFileWithoutItsWALMarkerIsIgnored() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var m = try Member.start(dir, snapshotCount: 20)
        try await m.waitLeader()
        for i in 0..<100 { _ = try await m.put("k\(i)", "v\(i)") }
        let snapDir = Member.options(dir).snapshotDirectory
        var snaps: [String] = []
        for _ in 0..<300 {
            snaps = ((try? FileManager.default.contentsOfDirectory(atPath: snapDir)) ?? []).filter { $0.hasSuffix(".snap") }.sorted()
            if !snaps.isEmpty { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        let rev = m.server.keyspace.revision
        m.server.stop()
        // What an interrupted snapshot would leave: a newer file whose marker never reached the WAL.
        let orphan = "0000000000000001-00000000000fffff.snap"
        try FileManager.default.copyItem(atPath: snapDir + "/" + snaps.last!, toPath: snapDir + "/" + orphan)
        m = try Member.start(dir, snapshotCount: 20)
        defer { m.server.stop() }
        try await m.waitLeader()
        #expect(m.server.keyspace.revision == rev)
        #expect(try await m.get("k99") == "v99")
    }

    @Test func alarmsOutliveARestart() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var m = try Member.start(dir)
        try await m.waitLeader()
        let member = m.server.identity.memberID
        _ = try await m.server.propose(.alarm(AlarmChange(action: .activate, memberID: member, alarm: 1)))
        #expect(m.server.activeAlarms.map(\.alarm) == [1])
        m.server.stop()

        m = try Member.start(dir)
        try await m.waitLeader()
        #expect(m.server.activeAlarms.map(\.alarm) == [1], "NOSPACE was raised before the restart")
        await #expect(throws: KVServerErrorMatcher.self) {
            do { _ = try await m.put("x", "y") } catch { throw KVServerErrorMatcher(error) }
        }
        _ = try await m.server.propose(.alarm(AlarmChange(action: .deactivate, memberID: member, alarm: 1)))
        #expect(m.server.activeAlarms.isEmpty)
        m.server.stop()

        // Cleared stays cleared, also when the keyspace is rebuilt from the WAL alone.
        try FileManager.default.removeItem(atPath: Member.options(dir).keyspaceDirectory)
        m = try Member.start(dir)
        defer { m.server.stop() }
        try await m.waitLeader()
        #expect(m.server.activeAlarms.isEmpty)
        _ = try await m.put("x", "y")
    }

    @Test func writesStuckBehindAStalledDiskTimeOut() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = Member.options(dir)
        o.requestTimeoutMilliseconds = 200
        let m = try Member.start(dir, options: o)
        defer { m.server.stop() }
        try await m.waitLeader()
        _ = try await m.put("before", "1")
        // The disk stalls until the test opens the gate: no outcome depends on how fast the
        // test runner's threads are scheduled.
        m.server.walGateForTesting.withLock { $0.closed = true }
        defer {  // never leave the Raft loop held: stop() joins it
            m.server.walGateForTesting.withLock { $0.closed = false }
            m.server.walGateForTesting.broadcast()
        }
        do {
            _ = try await m.put("during", "2")
            Issue.record("a write behind a stalled disk should time out after 200 ms")
        } catch {
            #expect("\(error)".contains("etcdserver: request timed out"), "\(error)")
        }
        // The Raft loop is held inside that WAL write (it may reach the gate after the
        // timeout on a loaded machine: wait for it, bounded).
        for _ in 0..<1000 where m.server.walGateForTesting.withLock({ $0.waiting }) == 0 {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(m.server.walGateForTesting.withLock { $0.waiting } == 1)
        // A linearizable read behind the same stall times out too instead of waiting for the disk.
        do {
            _ = try await m.get("before")
            Issue.record("a linearizable read behind a stalled disk should time out after 200 ms")
        } catch {
            #expect("\(error)".contains("etcdserver: request timed out"), "\(error)")
        }
        m.server.walGateForTesting.withLock { $0.closed = false }
        m.server.walGateForTesting.broadcast()
        // The outcome was unknown to the client; the write itself still went through the log.
        #expect(try await m.get("during") == "2")
        _ = try await m.put("after", "3")
    }

    @Test func requestsAfterStopFailInsteadOfHanging() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try Member.start(dir)
        try await m.waitLeader()
        _ = try await m.put("a", "1")
        m.server.stop()
        await #expect(throws: ServerError.stopped) { _ = try await m.server.propose(.put(PutRequest(key: [1], value: [2]))) }
        await #expect(throws: ServerError.stopped) { try await m.server.linearizableBarrier() }
    }
}
