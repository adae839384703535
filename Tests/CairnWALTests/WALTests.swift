import CairnFS
import Foundation
import Testing

@testable import CairnWAL

@Suite struct WALBasics {
    @Test func roundTripWithConcurrentAppenders() async throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(), logger: testLogger)
        let perTask = 50
        let tasks = 16
        let indexes = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for t in 0..<tasks {
                group.addTask {
                    var mine: [UInt64] = []
                    for k in 0..<perTask {
                        let i = try await wal.appendNext(term: 3, data: payload(UInt64(t * 1000 + k), size: 200))
                        mine.append(i)
                    }
                    return mine
                }
            }
            var all: [UInt64] = []
            for try await m in group { all += m }
            return all
        }
        try await wal.append([.hardState(WALHardState(term: 3, vote: 2, commit: 700))])
        let stats = wal.statistics
        wal.close()
        #expect(indexes.sorted() == Array(1...UInt64(tasks * perTask)))
        #expect(stats.records == tasks * perTask + 1)
        #expect(stats.syncs <= stats.records)
        #expect(stats.segmentsCut >= 1, "800 × 232 B must not fit one 64 KiB segment")

        let (reopened, replay) = try WAL.open(directory: dir, expectedMetadata: testMetadata, configuration: smallConfig(), logger: testLogger)
        #expect(replay.entries.map(\.index) == Array(1...UInt64(tasks * perTask)))
        #expect(replay.hardState == WALHardState(term: 3, vote: 2, commit: 700))
        #expect(replay.metadata == testMetadata)
        #expect(replay.repairedTornTail == nil)
        // Appending continues the chain after reopen.
        try reopened.appendAndSync([.entry(WALEntry(term: 4, index: 801, data: [1, 2, 3]))])
        reopened.close()
        let (scan, _) = try scanAll(dir)
        #expect(scan.problem == nil)
        #expect(scan.lastIndex == 801)
        #expect(scan.segments.count == segmentPaths(dir).count)
    }

    @Test func groupCommitBatchesConcurrentAppenders() async throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        var config = smallConfig(segmentSizeBytes: 8 << 20)
        config.maxBatchBytes = 1 << 20
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<64 {
                group.addTask {
                    for k in 0..<20 { _ = try await wal.appendNext(term: 1, data: payload(UInt64(t * 100 + k), size: 300)) }
                }
            }
            try await group.waitForAll()
        }
        let stats = wal.statistics
        wal.close()
        #expect(stats.records == 1280)
        // With 64 appenders queued while each sync runs, batches must be far fewer than records.
        #expect(stats.syncs < stats.records / 4, "syncs \(stats.syncs) for \(stats.records) records")
    }

    @Test func appendersBeyondTheQueueBoundWaitAndAllLand() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        var config = smallConfig(segmentSizeBytes: 1 << 20)
        config.maxQueuedBytes = 2048  // a handful of 500-byte records
        config.maxBatchBytes = 1024
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        let threads = 16
        let perThread = 25
        let done = DispatchGroup()
        let failures = FailureCount()
        for t in 0..<threads {
            done.enter()
            Thread {
                for k in 0..<perThread {
                    do { _ = try wal.appendNextAndSync(term: 1, data: payload(UInt64(t * 100 + k), size: 500)) } catch {
                        failures.add()
                    }
                }
                done.leave()
            }.start()
        }
        done.wait()
        let stats = wal.statistics
        wal.close()
        #expect(failures.value == 0)
        #expect(stats.records == threads * perThread)
        // Batches are bounded by maxBatchBytes: two 552-byte frames exceed 1024 bytes, so every
        // write carries exactly one record however many appenders are queued.
        #expect(stats.syncs == stats.records)
        let (scan, frames) = try scanAll(dir)
        #expect(scan.problem == nil)
        #expect(entryIndexes(frames) == Array(1...UInt64(threads * perThread)))
    }

    @Test func closeWhileAppendersNeedNewSegmentsDrainsWithoutHanging() async throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        var config = smallConfig(segmentSizeBytes: 1024)
        config.maxBatchBytes = 1024
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        let acked = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for t in 0..<8 {
                group.addTask {
                    var mine: [UInt64] = []
                    for k in 0..<30 {
                        do {
                            mine.append(try await wal.appendNext(term: 1, data: payload(UInt64(t * 100 + k), size: 300)))
                        } catch {
                            #expect((error as? WALError) == .closed, "only a closed WAL may refuse: \(error)")
                            break
                        }
                    }
                    return mine
                }
            }
            group.addTask {
                try await Task.sleep(for: .milliseconds(30))
                wal.close()
                return []
            }
            var all: [UInt64] = []
            for try await m in group { all += m }
            return all
        }
        let (w2, replay) = try WAL.open(directory: dir, configuration: config, logger: testLogger)
        w2.close()
        #expect(Set(acked).isSubset(of: Set(replay.entries.map(\.index))))
    }

    @Test func overwritesOnReplayKeepTheLatestSuffix() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(), logger: testLogger)
        for i in 1...UInt64(5) { try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: [UInt8(i)]))]) }
        // A new leader overwrites from index 4.
        try wal.appendAndSync([.entry(WALEntry(term: 2, index: 4, data: [44])), .entry(WALEntry(term: 2, index: 5, data: [55]))])
        wal.close()
        let (w2, replay) = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
        w2.close()
        #expect(replay.entries.map(\.index) == [1, 2, 3, 4, 5])
        #expect(replay.entries.map(\.term) == [1, 1, 1, 2, 2])
        #expect(replay.entries[3].data == [44])
    }

    @Test func snapshotReplayAndSegmentRelease() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let config = smallConfig(segmentSizeBytes: 16 << 10)
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        for i in 1...UInt64(400) {
            try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: payload(i, size: 200)))])
            if i == 300 { try wal.appendAndSync([.snapshot(WALSnapshotMarker(index: 300, term: 1))]) }
        }
        let before = wal.segments
        #expect(before.count > 6)
        let removed = try wal.releaseSegments(snapshotIndex: 300, maxWALs: 2)
        let after = wal.segments
        wal.close()
        #expect(!removed.isEmpty)
        #expect(after.count == before.count - removed.count)
        #expect(segmentPaths(dir).count == after.count)
        // Every removed segment lies wholly below the snapshot: the one holding entry 300 stays.
        #expect(after[0].firstIndex <= 300)
        let (w2, replay) = try WAL.open(
            directory: dir, snapshot: WALSnapshotMarker(index: 300, term: 1), configuration: config, logger: testLogger)
        w2.close()
        #expect(replay.entries.map(\.index) == Array(301...400))
        // A snapshot the log never recorded is refused.
        #expect(throws: WALError.snapshotNotFound(index: 350, term: 1)) {
            _ = try WAL.open(directory: dir, snapshot: WALSnapshotMarker(index: 350, term: 1), configuration: config, logger: testLogger)
        }
    }

    @Test func releaseKeepsTheSegmentHoldingTheSnapshotMarker() throws {
        // 1 KiB segments hold two 300-byte entries: entries 3 and 4 and the marker for 4 share
        // segment 1, and entry 5 opens segment 2 (first index 5).
        let dir = makeTempDir()
        defer { removeTree(dir) }
        var config = smallConfig(segmentSizeBytes: 1024)
        config.maxBatchBytes = 1024
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        for i in 1...UInt64(4) { try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: payload(i, size: 300)))]) }
        try wal.appendAndSync([.snapshot(WALSnapshotMarker(index: 4, term: 1))])
        for i in 5...UInt64(8) { try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: payload(i, size: 300)))]) }
        #expect(wal.segments.map(\.firstIndex) == [1, 3, 5, 7])
        let removed = try wal.releaseSegments(snapshotIndex: 4, maxWALs: 1)
        wal.close()
        #expect(removed == [WALFormat.segmentName(sequence: 0, firstIndex: 1)])
        let (w2, replay) = try WAL.open(directory: dir, snapshot: WALSnapshotMarker(index: 4, term: 1), configuration: config, logger: testLogger)
        w2.close()
        #expect(replay.entries.map(\.index) == [5, 6, 7, 8])
    }

    @Test func directoryLockRefusesSecondOpener() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(), logger: testLogger)
        do {
            _ = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
            Issue.record("second open must fail while the lock is held")
        } catch {
            guard case .locked(let message) = error else { Issue.record("unexpected \(error)"); return }
            #expect(message.contains(dir + "/LOCK"))
            #expect(message.contains("pid \(getpid())"))
        }
        wal.close()
        let (w2, _) = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
        w2.close()
    }
}

@Suite struct WALBadInput {
    @Test func emptyDirectoryIsNotAWAL() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        #expect(throws: WALError.notAWAL(path: dir, reason: "no segment files (*.wal)")) {
            _ = try WALScanner(directory: dir).scan()
        }
    }

    @Test func foreignFileIsNotAWAL() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        writeBytes(dir + "/" + WALFormat.segmentName(sequence: 0, firstIndex: 1), Array("hello, this is not a log file at all....".utf8))
        do {
            _ = try WALScanner(directory: dir).scan()
            Issue.record("expected notAWAL")
        } catch {
            guard case .notAWAL(let path, let reason) = error else { Issue.record("unexpected \(error)"); return }
            #expect(path.hasSuffix(".wal"))
            #expect(reason.contains("magic"))
        }
    }

    @Test func unknownVersionIsRefused() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        var frames = FrameWriter(chain: 0, capacity: 256)
        frames.appendSegmentHeader(WALSegmentHeader(formatVersion: 9, sequence: 0, firstIndex: 1, previousChainCRC: 0), batchStart: 0)
        writeBytes(dir + "/" + WALFormat.segmentName(sequence: 0, firstIndex: 1), Array(frames.buffer[0..<frames.used]))
        #expect(throws: WALError.unsupportedVersion(segment: WALFormat.segmentName(sequence: 0, firstIndex: 1), version: 9, supported: 1)) {
            _ = try WALScanner(directory: dir).scan()
        }
    }

    @Test func otherClusterOrMemberIsRefused() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: 3)
        let seg = WALFormat.segmentName(sequence: 0, firstIndex: 1)
        #expect(throws: WALError.clusterMismatch(expected: 1, found: testMetadata.clusterID, segment: seg)) {
            _ = try WAL.open(directory: dir, expectedMetadata: WALMetadata(clusterID: 1, memberID: testMetadata.memberID), logger: testLogger)
        }
        #expect(throws: WALError.memberMismatch(expected: 7, found: testMetadata.memberID, segment: seg)) {
            _ = try WAL.open(directory: dir, expectedMetadata: WALMetadata(clusterID: testMetadata.clusterID, memberID: 7), logger: testLogger)
        }
    }
}

final class FailureCount: @unchecked Sendable {
    // `count` is only touched with `lock` held.
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}

/// `appendAndSync` writes on the caller's thread when the WAL is idle, and queues behind the
/// writer thread otherwise; both paths share one chain, one index order and one close.
@Suite struct InlineAppends {
    @Test func aLoneBlockingAppenderWritesOnItsOwnThread() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(segmentSizeBytes: 16 << 10), logger: testLogger)
        for i in 1...UInt64(200) { try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: payload(i, size: 300)))]) }
        let stats = wal.statistics
        wal.close()
        #expect(stats.records == 200)
        #expect(stats.syncs == 200)
        #expect(stats.inlineSyncs == 200, "nothing else was appending, so no write needed the writer thread")
        #expect(stats.segmentsCut >= 3, "200 × 332 B over 16 KiB segments: inline writes cut segments too")
        let (scan, frames) = try scanAll(dir)
        #expect(scan.problem == nil)
        #expect(entryIndexes(frames) == Array(1...UInt64(200)))
    }

    @Test func aBlockingAppenderQueuesBehindAWriteInProgressAndLandsAfterIt() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let gate = SyncGate()
        var config = smallConfig()
        var syscalls = Syscalls.live
        syscalls.fdatasync = { fd in
            gate.passIfArmed()
            return Syscalls.live.fdatasync(fd)
        }
        config.fileSystem = FileSystem(syscalls: syscalls)
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        gate.arm()
        // A queued append (the writer thread takes it) whose fdatasync is held at the gate.
        let first = FailureCount()
        let done = DispatchGroup()
        done.enter()
        Thread {
            if (try? wal.appendNextAndSync(term: 1, data: [1])) != 1 { first.add() }
            done.leave()
        }.start()
        gate.waitUntilHeld()
        // The WAL is busy: appendAndSync must queue instead of writing beside the writer thread.
        let second = FailureCount()
        done.enter()
        Thread {
            do { try wal.appendAndSync([.entry(WALEntry(term: 1, index: 2, data: [2]))]) } catch { second.add() }
            done.leave()
        }.start()
        let deadline = Date().addingTimeInterval(120)  // a hang guard, not a timing assertion
        while wal.shared.withLock({ $0.queue.count }) < 1 && Date() < deadline { usleep(1000) }
        #expect(wal.shared.withLock { $0.queue.count } == 1, "appendAndSync queued behind the write in progress")
        #expect(wal.statistics.syncs == 0, "the first write is still held")
        gate.release()
        done.wait()
        #expect(first.value == 0 && second.value == 0)
        #expect(wal.statistics.inlineSyncs == 0, "both writes went through the writer thread")
        #expect(wal.statistics.syncs == 2)
        // Idle again: the next blocking append writes inline.
        try wal.appendAndSync([.entry(WALEntry(term: 1, index: 3, data: [3]))])
        #expect(wal.statistics.inlineSyncs == 1)
        wal.close()
        let (scan, frames) = try scanAll(dir)
        #expect(scan.problem == nil)
        #expect(entryIndexes(frames) == [1, 2, 3])
    }

    @Test func closeDuringInlineAppendsKeepsEveryAcknowledgedRecord() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let config = smallConfig(segmentSizeBytes: 8 << 10)
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        let threads = 3
        let acked = (0..<threads).map { _ in FailureCount() }  // acknowledged appends per thread
        let unexpected = FailureCount()
        let done = DispatchGroup()
        for t in 0..<threads {
            done.enter()
            Thread {
                // Hard states carry no index, so the threads can append them in any order;
                // thread t's n-th record is (vote t, commit n).
                var n: UInt64 = 0
                while true {
                    n += 1
                    do { try wal.appendAndSync([.hardState(WALHardState(term: 1, vote: UInt64(t), commit: n))]) } catch {
                        if (error as? WALError) != .closed { unexpected.add() }  // only a closed WAL may refuse
                        break
                    }
                    acked[t].add()
                }
                done.leave()
            }.start()
        }
        // Close once every thread has had appends acknowledged (polled: no fixed sleep).
        let deadline = Date().addingTimeInterval(120)  // a hang guard, not a timing assertion
        while acked.contains(where: { $0.value < 5 }) && unexpected.value == 0 && Date() < deadline { usleep(1000) }
        wal.close()
        done.wait()
        #expect(unexpected.value == 0)
        let (scan, frames) = try scanAll(dir)
        #expect(scan.problem == nil)
        var found = Array(repeating: Set<UInt64>(), count: threads)
        for f in frames {
            if case .record(.hardState(let h)) = f.body, h.vote < UInt64(threads) { found[Int(h.vote)].insert(h.commit) }
        }
        for t in 0..<threads {
            let n = UInt64(acked[t].value)
            #expect(Set(1...n).isSubset(of: found[t]), "thread \(t): every acknowledged record is in the log")
        }
    }
}

/// Holds the calls that pass it while armed, until released.
final class SyncGate: @unchecked Sendable {
    // All fields are only touched with `lock` held.
    private let lock = NSCondition()
    private var armed = false
    private var held = 0
    private var released = false

    func arm() { lock.lock(); armed = true; lock.unlock() }

    func passIfArmed() {
        lock.lock()
        defer { lock.unlock() }
        guard armed else { return }
        armed = false
        held += 1
        lock.broadcast()
        while !released { lock.wait() }
    }

    func waitUntilHeld() {
        lock.lock()
        while held == 0 { lock.wait() }
        lock.unlock()
    }

    func release() { lock.lock(); released = true; lock.broadcast(); lock.unlock() }
}

/// Segments written with zeros ahead of use (the server's default): each holds its whole size
/// as real blocks from the start, the log spans several of them, and replay reads it all.
@Suite struct ZeroFilledSegments {
    @Test func aLogAcrossZeroFilledSegmentsReplaysWhole() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        var config = smallConfig(segmentSizeBytes: 16 << 10)
        config.preallocation = .zeroFill
        let recorder = SyscallRecorder()
        config.fileSystem = FileSystem(syscalls: recorder.syscalls())
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        for i in 1...UInt64(200) {
            try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: payload(i, size: 300)))])
        }
        wal.close()
        let segments = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(WALFormat.segmentSuffix) }.sorted()
        #expect(segments.count >= 4, "200 × 300 B across 16 KiB segments: \(segments)")
        for name in segments {
            var st = stat()
            #expect(stat(dir + "/" + name, &st) == 0)
            #expect(st.st_size == 16 << 10, "\(name) keeps its full size")
        }
        // Every segment was written whole (zeros) before use: one 16 KiB write at offset 0 each.
        let wholeWrites = recorder.events.filter { if case .pwrite(_, 0, 16 << 10) = $0 { return true } else { return false } }
        #expect(wholeWrites.count >= segments.count, "\(wholeWrites.count) whole-segment writes for \(segments.count) segments")
        let (reopened, replay) = try WAL.open(directory: dir, configuration: config, logger: testLogger)
        reopened.close()
        #expect(replay.entries.map(\.index) == Array(1...200))
        #expect(replay.entries.allSatisfy { $0.data == payload($0.index, size: 300) })
    }
}
