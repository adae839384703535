// Issue 5's bad-input acceptance against the real binary: a member killed with SIGKILL under
// load keeps every acknowledged write; 10,000 watchers opened and dropped (cancelled, or their
// connections simply vanishing) leave no watcher, stream or memory behind; clients that vanish
// mid-request and garbage on the port leave the member serving.
import CairnClient
import CairnProto
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

private let missingBinary = "the cairn binary is not next to the test bundle: run the tests with `swift test` (which builds it) or ./scripts/test.sh"

private final class LockedStatus: Sendable {
    private let value = Mutex<Int32>(-1)
    func set(_ v: Int32) { value.withLock { $0 = v } }
    func get() -> Int32 { value.withLock { $0 } }
}

private final class Acknowledged: Sendable {
    let writes = Mutex<[String: String]>([:])
    /// The errors writers stopped on.
    let failures = Mutex<[String]>([])
    func add(_ key: String, _ value: String) { writes.withLock { $0[key] = value } }
}

/// A Watch stream and its one response iterator.
private final class WatchCall {
    typealias Call = StreamingCall<Etcdserverpb_WatchRequest, Etcdserverpb_WatchResponse>
    let call: Call
    var responses: AsyncThrowingMapSequence<GRPCStreamingCall.Responses, Etcdserverpb_WatchResponse>.AsyncIterator
    init(_ call: Call) {
        self.call = call
        self.responses = call.responses.makeAsyncIterator()
    }
}

@Suite("Bad input and failures, against the cairn binary", .serialized)
struct BadInputTests {
    @Test(.timeLimit(.minutes(5)))
    func killNineKeepsEveryAcknowledgedWrite() async throws {
        let binary = try #require(cairnBinary(), Comment(rawValue: missingBinary))
        let dir = try temporaryDirectory("cairn-kill9")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Small snapshot count: snapshots, WAL segment release and log compaction all happen
        // while the member is being killed.
        let member = try CairnProcess(binary: binary, dataDir: dir + "/data", extraArguments: ["--snapshot-count", "1500"])
        defer { member.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        var acknowledged: [String: String] = [:]
        for round in 0..<3 {
            try member.start()
            let client = makeClient(member, group: group)
            let stored = try await readPrefix(client, "k/")
            let lost = acknowledged.filter { stored[$0.key] != $0.value }
            #expect(lost.isEmpty, "round \(round): \(lost.count) of \(acknowledged.count) acknowledged writes lost, e.g. \(lost.first.map { "\($0.key)" } ?? "")")

            let acks = Acknowledged()
            await withTaskGroup(of: Void.self) { tasks in
                for writer in 0..<32 {
                    tasks.addTask {
                        var i = 0
                        while true {
                            let key = "k/\(round)/\(writer)/\(i)"
                            let value = "v\(round)-\(writer)-\(i)"
                            do {
                                _ = try await client.call(EtcdMethods.put, putRequest(key, value), timeout: .seconds(5))
                            } catch {
                                return  // the member is gone
                            }
                            acks.add(key, value)
                            i += 1
                        }
                    }
                }
                tasks.addTask {
                    // At least 1.5 s and 200 acknowledged writes (a loaded machine may be slow).
                    try? await Task.sleep(for: .milliseconds(1500))
                    for _ in 0..<600 where acks.writes.withLock({ $0.count }) < 200 {
                        try? await Task.sleep(for: .milliseconds(50))
                    }
                    member.kill9()
                }
            }
            await client.close()
            let round = acks.writes.withLock { $0 }
            #expect(round.count > 100, "too few writes acknowledged before the kill to test anything: \(round.count)")
            acknowledged.merge(round) { _, new in new }
            if FileManager.default.fileExists(atPath: "/proc/sys/kernel/random/boot_id") {
                #expect(setAsideKeyspaces(dir + "/data").isEmpty, "round \(round): a killed process (same boot) keeps its keyspace")
            }
        }
        // Then as after a machine crash: the marker says another boot left unsynced commits,
        // and the keyspace file is garbage. It must be set aside unopened and rebuilt from the
        // newest snapshot and the WAL.
        try simulateMachineCrash(dir + "/data")
        try member.start()
        let client = makeClient(member, group: group)
        let stored = try await readPrefix(client, "k/")
        let lost = acknowledged.filter { stored[$0.key] != $0.value }
        #expect(lost.isEmpty, "after the last kill and a simulated machine crash: \(lost.count) of \(acknowledged.count) acknowledged writes lost")
        #expect(setAsideKeyspaces(dir + "/data").count == 1, "the damaged keyspace is kept aside")
        await client.close()
        #expect(member.stop() == 0, "SIGTERM should stop the member cleanly")
        #expect(!FileManager.default.fileExists(atPath: dir + "/data/member/keyspace.unsynced"), "a clean stop removes the marker")
    }

    /// SIGTERM under load: the member sends GOAWAY, answers every write it had accepted, then
    /// stops and exits 0. So the writes it applied are exactly the ones acknowledged: a write
    /// applied but never answered (a reply dropped at shutdown) would show as a stored key that
    /// no writer saw acknowledged.
    @Test(.timeLimit(.minutes(2)))
    func sigtermAnswersEveryWriteItAcceptedBeforeExiting() async throws {
        let binary = try #require(cairnBinary(), Comment(rawValue: missingBinary))
        let dir = try temporaryDirectory("cairn-sigterm")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let member = try CairnProcess(binary: binary, dataDir: dir + "/data", extraArguments: [])
        defer { member.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        try member.start()
        let client = makeClient(member, group: group)
        let acks = Acknowledged()
        let status = LockedStatus()
        await withTaskGroup(of: Void.self) { tasks in
            for writer in 0..<32 {
                tasks.addTask {
                    var i = 0
                    while true {
                        let key = "s/\(writer)/\(i)"
                        do {
                            _ = try await client.call(EtcdMethods.put, putRequest(key, "v"), timeout: .seconds(30))
                        } catch {
                            // Refused (GOAWAY) or the member is gone: not applied.
                            acks.failures.withLock { $0.append("\(key): \(error)") }
                            return
                        }
                        acks.add(key, "v")
                        i += 1
                    }
                }
            }
            tasks.addTask {
                for _ in 0..<600 where acks.writes.withLock({ $0.count }) < 300 {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                status.set(member.stop())
            }
        }
        await client.close()
        #expect(status.get() == 0, "SIGTERM under load exits 0")
        let acknowledged = acks.writes.withLock { $0 }
        #expect(acknowledged.count >= 300)
        // No write was accepted and then failed: the member stops only once drained, so a
        // writer's last call is refused by the GOAWAY or finds the member gone, never
        // "server stopped" (accepted, then dropped: the client cannot know whether it applied).
        let accepted = acks.failures.withLock { $0 }.filter { $0.contains("server stopped") }
        #expect(accepted.isEmpty, "\(accepted.count) writes failed with \(accepted.first ?? "")")
        try member.start()
        let reader = makeClient(member, group: group)
        let stored = try await readPrefix(reader, "s/")
        await reader.close()
        let unacknowledged = Set(stored.keys).subtracting(acknowledged.keys)
        let lost = Set(acknowledged.keys).subtracting(stored.keys)
        #expect(lost.isEmpty, "\(lost.count) acknowledged writes lost")
        let failures = acks.failures.withLock { $0 }
        #expect(
            unacknowledged.isEmpty,
            "\(unacknowledged.count) writes applied but never answered, e.g. \(unacknowledged.first ?? ""); the writers' last calls: \(failures.filter { f in unacknowledged.contains { f.hasPrefix($0 + ":") } }); log: \(member.tailOfLog())")
        #expect(member.stop() == 0)
    }

    /// Keyspaces the member moved aside after a (simulated) machine crash.
    private func setAsideKeyspaces(_ dataDir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dataDir + "/member")) ?? []).filter {
            $0.hasPrefix("keyspace.unclean-")
        }
    }

    /// What a machine crash can leave: the keyspace's marker names another boot, and the file's
    /// first pages (LMDB's meta pages and the first tree pages) are garbage.
    private func simulateMachineCrash(_ dataDir: String) throws {
        let marker = dataDir + "/member/keyspace.unsynced"
        #expect(FileManager.default.fileExists(atPath: marker), "a running (here: killed) member leaves its marker")
        try Data("00000000-0000-0000-0000-000000000000\n".utf8).write(to: URL(fileURLWithPath: marker))
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: dataDir + "/member/keyspace/data.mdb"))
        var garbage = [UInt8](repeating: 0, count: 64 << 10)
        for i in garbage.indices { garbage[i] = UInt8.random(in: 0...255) }
        try file.write(contentsOf: garbage)
        try file.close()
    }

    @Test(.timeLimit(.minutes(2)))
    func aMachineCrashBeforeAnySnapshotIsRebuiltFromTheWAL() async throws {
        let binary = try #require(cairnBinary(), Comment(rawValue: missingBinary))
        let dir = try temporaryDirectory("cairn-reboot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let member = try CairnProcess(binary: binary, dataDir: dir + "/data", extraArguments: [])
        defer { member.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        try member.start()
        var client = makeClient(member, group: group)
        for i in 0..<100 { _ = try await client.call(EtcdMethods.put, putRequest("k/\(i)", "v\(i)"), timeout: .seconds(10)) }
        await client.close()
        member.kill9()
        let snapshots = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/data/member/snap")) ?? []
        #expect(!snapshots.contains { $0.hasSuffix(".snap") }, "no snapshot yet: the WAL alone must rebuild the keyspace")
        try simulateMachineCrash(dir + "/data")
        try member.start()
        client = makeClient(member, group: group)
        let stored = try await readPrefix(client, "k/")
        #expect(stored.count == 100 && (0..<100).allSatisfy { stored["k/\($0)"] == "v\($0)" }, "rebuilt from the WAL alone: \(stored.count) of 100 keys")
        #expect(setAsideKeyspaces(dir + "/data").count == 1)
        await client.close()
        #expect(member.stop() == 0)
    }

    /// Opens `streams` Watch streams with `perStream` prefix watchers each on `client`.
    private func openWatchers(
        _ client: EtcdClient, streams: Int, perStream: Int
    ) async throws -> [WatchCall] {
        var calls: [WatchCall] = []
        for _ in 0..<streams {
            let call = try await client.bidiStream(EtcdMethods.watch)
            for _ in 0..<perStream {
                var create = Etcdserverpb_WatchCreateRequest()
                create.key = Data("w/".utf8)
                create.rangeEnd = Data("w0".utf8)
                var req = Etcdserverpb_WatchRequest()
                req.createRequest = create
                try await call.send(req)
            }
            calls.append(WatchCall(call))
        }
        return calls
    }

    /// Reads from `call` until `created` watchers are confirmed and `events` events arrived.
    private func expectResponses(
        _ call: WatchCall, created: Int, events: Int
    ) async throws -> (created: Int, events: Int) {
        var seenCreated = 0
        var seenEvents = 0
        while seenCreated < created || seenEvents < events, let r = try await call.responses.next() {
            if r.created { seenCreated += 1 }
            seenEvents += r.events.count
        }
        return (seenCreated, seenEvents)
    }

    private func waitForMetric(_ member: CairnProcess, _ name: String, toBe value: Double, seconds: Double = 10) async throws -> Double? {
        let deadline = Date().addingTimeInterval(seconds)
        var last: Double?
        while Date() < deadline {
            last = try member.metric(name)
            if last == value { return last }
            try await Task.sleep(for: .milliseconds(100))
        }
        return last
    }

    @Test(.timeLimit(.minutes(5)))
    func tenThousandWatchersOpenedAndDroppedLeaveNothingBehind() async throws {
        let binary = try #require(cairnBinary(), Comment(rawValue: missingBinary))
        let dir = try temporaryDirectory("cairn-watchers")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let member = try CairnProcess(binary: binary, dataDir: dir + "/data")
        defer { member.stop() }
        try member.start()
        let group = MultiThreadedEventLoopGroup.singleton

        let connections = 4
        let streamsPerConnection = 25
        let watchersPerStream = 100  // 4 × 25 × 100 = 10,000 watchers
        var residentAfterCycle: [Int] = []
        let residentAtStart = member.residentKiB()
        for cycle in 0..<4 {
            let clients = (0..<connections).map { _ in makeClient(member, group: group) }
            var calls: [[WatchCall]] = []
            for c in clients {
                calls.append(try await openWatchers(c, streams: streamsPerConnection, perStream: watchersPerStream))
            }
            for perClient in calls {
                for call in perClient {
                    let seen = try await expectResponses(call, created: watchersPerStream, events: 0)
                    #expect(seen.created == watchersPerStream)
                }
            }
            #expect(try member.metric("etcd_debugging_mvcc_watcher_total") == 10_000)
            #expect(try member.metric("etcd_debugging_mvcc_watch_stream_total") == Double(connections * streamsPerConnection))

            // One write reaches every watcher.
            let writer = makeClient(member, group: group)
            _ = try await writer.call(EtcdMethods.put, putRequest("w/\(cycle)", "x"), timeout: .seconds(5))
            var events = 0
            for perClient in calls {
                for call in perClient { events += try await expectResponses(call, created: 0, events: watchersPerStream).events }
            }
            #expect(events == 10_000)

            // Drop them: half the connections cancel their streams (RST_STREAM), the other half
            // just vanish (the TCP connection closes with the streams open).
            for (i, perClient) in calls.enumerated() where i % 2 == 0 {
                for c in perClient { c.call.cancel() }
            }
            for (i, c) in clients.enumerated() where i % 2 == 1 { await c.close() }
            #expect(try await waitForMetric(member, "etcd_debugging_mvcc_watcher_total", toBe: 0) == 0)
            #expect(try await waitForMetric(member, "etcd_debugging_mvcc_watch_stream_total", toBe: 0) == 0)
            for (i, c) in clients.enumerated() where i % 2 == 0 { await c.close() }

            // Still serving.
            let got = try await readPrefix(writer, "w/")
            #expect(got["w/\(cycle)"] == "x")
            await writer.close()
            try await Task.sleep(for: .milliseconds(300))
            residentAfterCycle.append(member.residentKiB())
        }
        // Memory comes back: the first cycle sizes the allocator's arenas; later cycles must not
        // grow it (a leak of even 100 bytes per watcher would add about 1 MiB per cycle).
        // Right after a cycle, resident memory depends on when the member last trimmed its heap
        // (every 5 s), so the cycles are only logged; the watcher and stream gauges above are the
        // exact leak check, and the settled size below bounds everything else.
        // And memory comes back: the member returns freed heap pages to the system every 5 s.
        // What stays is what a first use sizes for good (HPACK tables, buffer pools, hash-table
        // capacity) and heap fragments too small to return; measured 4.5-5.2 MiB over a
        // 32 MiB start, against 10-13 MiB right after the cycles.
        var resident = member.residentKiB()
        let deadline = Date().addingTimeInterval(12)
        while resident > residentAtStart + 8192, Date() < deadline {
            try await Task.sleep(for: .milliseconds(500))
            resident = member.residentKiB()
        }
        print("10,000 watchers opened and dropped 4 times: resident KiB at start \(residentAtStart), right after each cycle \(residentAfterCycle), settled \(resident)")
        #expect(
            resident <= residentAtStart + 8192,
            "resident memory did not return to its baseline: start \(residentAtStart) KiB, after each cycle \(residentAfterCycle) KiB, then \(resident) KiB")
        #expect(member.isRunning)
    }

    /// An HTTP/2 frame: 9-byte header, then the payload.
    private func frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags]
            + withUnsafeBytes(of: stream.bigEndian) { Array($0) } + payload
    }

    /// An HPACK header block of literal fields without indexing (new names), no Huffman.
    private func headerBlock(_ fields: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (name, value) in fields {
            out.append(0)
            out.append(UInt8(name.utf8.count))
            out += Array(name.utf8)
            out.append(UInt8(value.utf8.count))
            out += Array(value.utf8)
        }
        return out
    }

    private func putCallHeaders(_ path: String = "/etcdserverpb.KV/Put") -> [UInt8] {
        headerBlock([
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ])
    }

    @Test(.timeLimit(.minutes(3)))
    func clientsVanishingMidRequestAndGarbageLeaveTheMemberServing() async throws {
        let binary = try #require(cairnBinary(), Comment(rawValue: missingBinary))
        let dir = try temporaryDirectory("cairn-vanish")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let member = try CairnProcess(binary: binary, dataDir: dir + "/data")
        defer { member.stop() }
        try member.start()
        let group = MultiThreadedEventLoopGroup.singleton
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(type: 4, flags: 0, stream: 0, [])
        let put = try putRequest("vanish/key", "v").serializedBytes() as [UInt8]
        let grpcMessage = [0] + withUnsafeBytes(of: UInt32(put.count).bigEndian) { Array($0) } + put

        for round in 0..<200 {
            let fd = connectTCP(member.clientPort)
            try #require(fd >= 0)
            switch round % 5 {
            case 0:  // headers, then half a message, then gone
                writeAll(fd, preface + frame(type: 1, flags: 0x4, stream: 1, putCallHeaders()))
                writeAll(fd, frame(type: 0, flags: 0, stream: 1, Array(grpcMessage.prefix(grpcMessage.count / 2))))
            case 1:  // a whole put, gone before the reply
                writeAll(fd, preface + frame(type: 1, flags: 0x4, stream: 1, putCallHeaders()))
                writeAll(fd, frame(type: 0, flags: 0x1, stream: 1, grpcMessage))
            case 2:  // a watch stream with a create request, gone
                var create = Etcdserverpb_WatchRequest()
                create.createRequest.key = Data("vanish/".utf8)
                let body = try create.serializedBytes() as [UInt8]
                writeAll(fd, preface + frame(type: 1, flags: 0x4, stream: 1, putCallHeaders("/etcdserverpb.Watch/Watch")))
                writeAll(fd, frame(type: 0, flags: 0, stream: 1, [0] + withUnsafeBytes(of: UInt32(body.count).bigEndian) { Array($0) } + body))
            case 3:  // random bytes
                writeAll(fd, (0..<512).map { _ in UInt8.random(in: 0...255) })
            default:  // the preface, then a frame header promising more than ever comes
                writeAll(fd, preface + [0, 0x40, 0, 0, 0, 0, 0, 0, 1])
            }
            if round % 2 == 0 {
                // An abortive close (RST), as from a killed client.
                var l = linger(l_onoff: 1, l_linger: 0)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            }
            close(fd)
        }
        // Lease keep-alive streams that vanish with their connection.
        for _ in 0..<20 {
            let c = makeClient(member, group: group)
            var grant = Etcdserverpb_LeaseGrantRequest()
            grant.ttl = 60
            let lease = try await c.call(EtcdMethods.leaseGrant, grant, timeout: .seconds(5))
            let ka = try await c.bidiStream(EtcdMethods.leaseKeepAlive)
            var req = Etcdserverpb_LeaseKeepAliveRequest()
            req.id = lease.id
            try await ka.send(req)
            var it = ka.responses.makeAsyncIterator()
            let r = try await it.next()
            #expect(r?.ttl == 60)
            await c.close()
        }

        #expect(member.isRunning, "the member died: \(member.tailOfLog())")
        #expect(try await waitForMetric(member, "etcd_debugging_mvcc_watcher_total", toBe: 0) == 0)
        #expect(try await waitForMetric(member, "etcd_debugging_mvcc_watch_stream_total", toBe: 0) == 0)
        let client = makeClient(member, group: group)
        _ = try await client.call(EtcdMethods.put, putRequest("after", "ok"), timeout: .seconds(5))
        let got = try await readPrefix(client, "after")
        #expect(got["after"] == "ok")
        // The whole puts whose clients left before the reply were still applied (they were valid).
        let vanished = try await readPrefix(client, "vanish/")
        #expect(vanished["vanish/key"] == "v")
        await client.close()
    }
}
