import CairnFS
import Foundation
import Synchronization
import Testing

@testable import CairnWAL

private func config(_ recorder: SyscallRecorder, base: Syscalls = .live, segmentSizeBytes: Int = 64 << 10) -> WALConfiguration {
    var c = smallConfig(segmentSizeBytes: segmentSizeBytes)
    c.fileSystem = FileSystem(syscalls: recorder.syscalls(base))
    return c
}

/// Five entries synced one by one, then entries 6…8 in one write batch.
/// Returns the segment's last batch region (start of entry 6's frame ..< valid end).
private func writeLogEndingInABatchOfThree(_ dir: String) throws -> (segment: String, start: Int64, end: Int64) {
    let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(), logger: testLogger)
    for i in 1...UInt64(5) { try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: payload(i, size: 100)))]) }
    try wal.appendAndSync((6...UInt64(8)).map { .entry(WALEntry(term: 1, index: $0, data: payload($0, size: 100))) })
    wal.close()
    let (scan, frames) = try scanAll(dir)
    let six = try #require(frames.first { if case .record(.entry(let e)) = $0.body { return e.index == 6 } else { return false } })
    return (segmentPaths(dir)[0], six.location.offset, scan.validEndOffset)
}

@Suite struct OpenSyncsTheReplayedTail {
    @Test func openRewritesAndFdatasyncsTheTailsLastBatchBeforeReturning() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let tail = try writeLogEndingInABatchOfThree(dir)
        let recorder = SyscallRecorder()
        let (wal, replay) = try WAL.open(directory: dir, configuration: config(recorder), logger: testLogger)
        let events = recorder.events  // recorded while open ran (the WAL's threads only prepare a .tmp)
        wal.close()
        #expect(replay.entries.map(\.index) == Array(1...8))
        let tailFD = events.compactMap { e -> Int32? in
            if case .open(let path, _, let fd) = e, path == tail.segment { return fd }
            return nil
        }.last
        let fd = try #require(tailFD, "open opened the tail segment")
        let rewrite = events.firstIndex(of: .pwrite(fd: fd, offset: tail.start, count: Int(tail.end - tail.start)))
        let sync = events.firstIndex(of: .fdatasync(fd: fd, result: 0))
        let w = try #require(rewrite, "the last batch (entries 6…8) is rewritten: \(events)")
        let s = try #require(sync, "the tail segment is fdatasynced during open: \(events)")
        #expect(w < s)
        // The directory is fsynced after the tail, before the WAL's threads start (they create <n>.tmp).
        let dirSync = events.indices.first { i in
            if i > s, case .fsync(let f, 0) = events[i], recorder.path(of: f, at: i, in: events)?.path == dir { return true }
            return false
        }
        let firstTmp = events.firstIndex { if case .open(let p, _, _) = $0 { return p.hasSuffix(".tmp") } else { return false } }
        let d = try #require(dirSync, "the directory is fsynced during open")
        if let firstTmp { #expect(d < firstTmp) }
        // The rewrite left the bytes as they were.
        let (w2, again) = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
        w2.close()
        #expect(again.entries == replay.entries)
    }

    @Test func failingFdatasyncDuringOpenMakesOpenThrowAndReleasesTheLock() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let tail = try writeLogEndingInABatchOfThree(dir)
        var failing = Syscalls.live
        failing.fdatasync = { _ in -EIO }
        let recorder = SyscallRecorder()
        do {
            let (wal, _) = try WAL.open(directory: dir, configuration: config(recorder, base: failing), logger: testLogger)
            wal.close()
            Issue.record("open must fail when the replayed tail cannot be made durable")
        } catch {
            guard case .io(let fsError) = error else { Issue.record("unexpected \(error)"); return }
            #expect(fsError.operation == "fdatasync")
            #expect(fsError.path == tail.segment)
            #expect(fsError.errno == EIO)
        }
        // Nothing was left open: every descriptor opened was closed (the lock included).
        let events = recorder.events
        let opened = Set(events.compactMap { e -> Int32? in if case .open(_, _, let fd) = e, fd >= 0 { return fd } else { return nil } })
        let closed = Set(events.compactMap { e -> Int32? in if case .close(let fd) = e { return fd } else { return nil } })
        #expect(opened.isSubset(of: closed), "descriptors left open: \(opened.subtracting(closed))")
        let (wal, replay) = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
        wal.close()
        #expect(replay.entries.map(\.index) == Array(1...8))
    }
}

@Suite struct OpenRequiresTheLogStart {
    /// 400 entries in 16 KiB segments, a marker at 300, then every segment below it released.
    private func releasedLog(_ dir: String) throws -> WALConfiguration {
        let config = smallConfig(segmentSizeBytes: 16 << 10)
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        for i in 1...UInt64(400) {
            try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: payload(i, size: 200)))])
            if i == 100 || i == 300 { try wal.appendAndSync([.snapshot(WALSnapshotMarker(index: i, term: 1))]) }
        }
        try wal.releaseSegments(snapshotIndex: 300, maxWALs: 1)
        wal.close()
        return config
    }

    @Test func openWithoutSnapshotRefusesALogWhoseStartWasReleased() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let config = try releasedLog(dir)
        let oldest = try WALScanner(directory: dir).listSegments()[0]
        #expect(oldest.sequence > 0 && oldest.firstIndex > 1)
        #expect(
            throws: WALError.logStartMissing(
                neededIndex: 1, oldestSegment: oldest.name, oldestSequence: oldest.sequence,
                oldestFirstIndex: oldest.firstIndex)
        ) {
            _ = try WAL.open(directory: dir, configuration: config, logger: testLogger)
        }
        let message = WALError.logStartMissing(
            neededIndex: 1, oldestSegment: oldest.name, oldestSequence: oldest.sequence, oldestFirstIndex: oldest.firstIndex
        ).description
        #expect(message.contains("entries 1…\(oldest.firstIndex - 1) are missing"), "\(message)")
    }

    @Test func openFromASnapshotBelowTheOldestSegmentIsRefused() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let config = try releasedLog(dir)
        let oldest = try WALScanner(directory: dir).listSegments()[0]
        #expect(oldest.firstIndex > 101)
        #expect(
            throws: WALError.logStartMissing(
                neededIndex: 101, oldestSegment: oldest.name, oldestSequence: oldest.sequence,
                oldestFirstIndex: oldest.firstIndex)
        ) {
            _ = try WAL.open(directory: dir, snapshot: WALSnapshotMarker(index: 100, term: 1), configuration: config, logger: testLogger)
        }
        let (wal, replay) = try WAL.open(
            directory: dir, snapshot: WALSnapshotMarker(index: 300, term: 1), configuration: config, logger: testLogger)
        wal.close()
        #expect(replay.entries.map(\.index) == Array(301...400))
    }
}

@Suite struct ReplayIsContiguous {
    @Test func laterMarkerJumpingPastTheLogRefusesAnOlderSnapshot() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(), logger: testLogger)
        for i in 1...UInt64(10) {
            try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: [UInt8(i)]))])
            if i == 5 { try wal.appendAndSync([.snapshot(WALSnapshotMarker(index: 5, term: 1))]) }
        }
        // A snapshot at 20 installed from the leader: entries 11…20 never reach this log.
        try wal.appendAndSync([.snapshot(WALSnapshotMarker(index: 20, term: 2))])
        try wal.appendAndSync([.entry(WALEntry(term: 2, index: 21, data: [21])), .entry(WALEntry(term: 2, index: 22, data: [22]))])
        wal.close()
        let jump = WALSnapshotMarker(index: 20, term: 2)
        #expect(throws: WALError.snapshotSuperseded(requested: 5, marker: jump, lastEntryIndex: 10)) {
            _ = try WAL.open(directory: dir, snapshot: WALSnapshotMarker(index: 5, term: 1), configuration: smallConfig(), logger: testLogger)
        }
        #expect(throws: WALError.snapshotSuperseded(requested: 0, marker: jump, lastEntryIndex: 10)) {
            _ = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
        }
        let (w2, replay) = try WAL.open(directory: dir, snapshot: jump, configuration: smallConfig(), logger: testLogger)
        w2.close()
        #expect(replay.entries.map(\.index) == [21, 22])
    }
}

@Suite struct HardStateIsChecked {
    @Test func hardStateCommittingBeyondTheLastIndexIsRefused() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(), logger: testLogger)
        try wal.appendAndSync((1...UInt64(3)).map { .entry(WALEntry(term: 1, index: $0, data: [UInt8($0)])) })
        try wal.appendAndSync([.hardState(WALHardState(term: 1, vote: 1, commit: 5))])
        wal.close()
        #expect(throws: WALError.hardStateBeyondLog(commit: 5, lastIndex: 3)) {
            _ = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
        }
        #expect(WALError.hardStateBeyondLog(commit: 5, lastIndex: 3).description.contains("entries 4…5 are missing"))
    }

    @Test func hardStateCommittingTheLastIndexOpens() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(), logger: testLogger)
        try wal.appendAndSync(
            (1...UInt64(3)).map { .entry(WALEntry(term: 1, index: $0, data: [UInt8($0)])) }
                + [.hardState(WALHardState(term: 1, vote: 1, commit: 3))])
        wal.close()
        let (w2, replay) = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
        w2.close()
        #expect(replay.hardState == WALHardState(term: 1, vote: 1, commit: 3))
    }
}

@Suite struct LockIsClosedOnce {
    private func closes(of path: String, _ recorder: SyscallRecorder) -> [Int] {
        let events = recorder.events
        return events.indices.compactMap { i in
            if case .close(let fd) = events[i], recorder.path(of: fd, at: i, in: events)?.path == path { return i }
            return nil
        }
    }

    @Test func unlockTwiceClosesTheDescriptorOnce() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let recorder = SyscallRecorder()
        let lock = try DataDirLock.acquire(directory: dir, owner: "test", fileSystem: FileSystem(syscalls: recorder.syscalls()))
        lock.unlock()
        lock.unlock()
        #expect(closes(of: dir + "/LOCK", recorder).count == 1)
    }

    @Test func createRefusedForExistingSegmentsClosesTheLockOnce() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: 3)
        let recorder = SyscallRecorder()
        #expect(throws: WALError.invalidArgument("\(dir) already holds WAL segments")) {
            _ = try WAL.create(directory: dir, metadata: testMetadata, configuration: config(recorder), logger: testLogger)
        }
        #expect(closes(of: dir + "/LOCK", recorder).count == 1, "\(recorder.events)")
        let (wal, _) = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
        wal.close()
    }

    @Test func openRefusedClosesTheLockOnce() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: 3)
        let recorder = SyscallRecorder()
        #expect(throws: WALError.self) {
            _ = try WAL.open(
                directory: dir, expectedMetadata: WALMetadata(clusterID: 1, memberID: 2), configuration: config(recorder),
                logger: testLogger)
        }
        #expect(closes(of: dir + "/LOCK", recorder).count == 1, "\(recorder.events)")
    }

    @Test func restateFailureAfterATornTailRepairClosesTheLockOnce() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: 5)
        let (scan, _) = try scanAll(dir)
        var bytes = readBytes(segmentPaths(dir)[0])
        for i in Int(scan.validEndOffset)..<(Int(scan.validEndOffset) + 64) { bytes[i] = 0xA5 }
        writeBytes(segmentPaths(dir)[0], bytes)
        // The tail sync during open succeeds; the restating append after the repair fails.
        let syncs = Mutex(0)
        var failing = Syscalls.live
        failing.fdatasync = { fd in
            syncs.withLock { $0 += 1; return $0 } >= 2 ? -EIO : Syscalls.live.fdatasync(fd)
        }
        let recorder = SyscallRecorder()
        do {
            let (wal, _) = try WAL.open(directory: dir, configuration: config(recorder, base: failing), logger: testLogger)
            wal.close()
            Issue.record("the restating append must fail")
        } catch {
            guard case .stopped = error else { Issue.record("unexpected \(error)"); return }
        }
        #expect(closes(of: dir + "/LOCK", recorder).count == 1, "\(recorder.events)")
    }
}

@Suite struct OversizedRecords {
    /// A payload one byte over the reader's limit, not touched (uninitialized pages cost nothing).
    private func oversizedData() -> [UInt8] {
        let n = WALFormat.maxPayloadBytes - 24 + 1
        return [UInt8](unsafeUninitializedCapacity: n) { _, count in count = n }
    }

    @Test func appendOfARecordOverTheReaderLimitIsRefusedUpFront() async throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: smallConfig(), logger: testLogger)
        defer { wal.close() }
        let refusal = WALError.recordTooLarge(payloadBytes: WALFormat.maxPayloadBytes + 1, maxPayloadBytes: WALFormat.maxPayloadBytes)
        let big = oversizedData()
        #expect(throws: refusal) {
            try wal.appendAndSync([.entry(WALEntry(term: 1, index: 1, data: big))])
        }
        await #expect(throws: refusal) {
            try await wal.append([.entry(WALEntry(term: 1, index: 1, data: big))])
        }
        #expect(throws: refusal) { _ = try wal.appendNextAndSync(term: 1, data: big) }
        #expect(refusal.description.contains("\(WALFormat.maxPayloadBytes + 1) bytes"))
        #expect(refusal.description.contains("(\(WALFormat.maxPayloadBytes) bytes)"))
        // Nothing was written and the WAL still works.
        #expect(wal.statistics.records == 0)
        #expect(wal.stoppedError == nil)
        #expect(try wal.appendNextAndSync(term: 1, data: [1, 2, 3]) == 1)
    }
}

@Suite struct NewDirectoriesAreDurable {
    @Test func createDirectoryFsyncsTheParentOfEachDirectoryItMakes() throws {
        let base = makeTempDir()
        defer { removeTree(base) }
        let recorder = SyscallRecorder()
        let fs = FileSystem(syscalls: recorder.syscalls())
        try fs.createDirectory(base + "/a/b")
        #expect(recorder.fsyncedDirectories() == [base, base + "/a"])
        #expect(recorder.events.contains(.mkdir(path: base + "/a", result: 0)))
        // Existing directories are left alone.
        recorder.clear()
        try fs.createDirectory(base + "/a/b")
        #expect(recorder.fsyncedDirectories().isEmpty)
    }

    @Test func walCreateMakesItsNewDirectoryDurableInTheParent() throws {
        let base = makeTempDir()
        defer { removeTree(base) }
        let recorder = SyscallRecorder()
        let wal = try WAL.create(directory: base + "/member/wal", metadata: testMetadata, configuration: config(recorder), logger: testLogger)
        wal.close()
        let synced = recorder.fsyncedDirectories()
        #expect(synced.starts(with: [base, base + "/member"]), "\(synced)")
    }

    @Test func failedMkdirIsReportedWithItsPath() throws {
        let base = makeTempDir()
        defer { removeTree(base) }
        var s = Syscalls.live
        s.mkdir = { path, mode in path.hasSuffix("/x") ? -EACCES : Syscalls.live.mkdir(path, mode) }
        #expect(throws: FSError(operation: "mkdir", path: base + "/x", errno: EACCES)) {
            try FileSystem(syscalls: s).createDirectory(base + "/x")
        }
    }
}
