import CairnSync
import CairnFS
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How new segment files get their space.
public enum WALPreallocation: Sendable {
    /// `fallocate` the whole segment (fast; the file system converts extents on first write).
    case fallocate
    /// Write zeros over the whole segment ahead of use (slower to prepare, cheaper syncs).
    case zeroFill
}

/// Settings of a WAL.
public struct WALConfiguration: Sendable {
    /// Size segments are preallocated to; a segment is cut when the next write would not fit.
    public var segmentSizeBytes: Int = 64 << 20
    /// The most bytes one group-commit write may carry (a single larger append still goes alone).
    public var maxBatchBytes: Int = 4 << 20
    /// The most bytes that may wait for the writer; appenders beyond it wait before queueing.
    public var maxQueuedBytes: Int = 64 << 20
    /// How segments are preallocated.
    public var preallocation: WALPreallocation = .fallocate
    /// Take the directory's `DataDirLock` while open.
    public var lockDirectory = true
    /// On open, cut a torn tail (after copying the segment aside) instead of failing.
    public var repairTornTail = true
    /// The file layer (inject faults here).
    public var fileSystem: FileSystem = .live

    public init() {}
}

/// What replay found when a WAL was opened.
public struct WALReplay: Sendable {
    public var metadata: WALMetadata
    public var hardState: WALHardState?
    /// Entries after the snapshot index, in index order (overwrites applied).
    public var entries: [WALEntry]
    /// The torn tail that was cut on open, if any.
    public var repairedTornTail: WALProblem?
}

/// Counters of the group-commit writer.
public struct WALStatistics: Sendable, Equatable {
    /// Writes issued, each followed by one fdatasync.
    public var syncs = 0
    /// Records made durable.
    public var records = 0
    /// Bytes written (framed).
    public var bytes: Int64 = 0
    /// Segments cut.
    public var segmentsCut = 0
    /// Of `syncs`, the writes a blocking appender made on its own thread (the WAL was idle).
    public var inlineSyncs = 0
}

/// A segmented, checksummed write-ahead log with group commit.
///
/// Appenders on any thread or task queue records; one dedicated writer thread
/// takes everything queued (up to `maxBatchBytes`) whenever it is idle, writes it
/// with one `pwrite` and makes it durable with one `fdatasync`, then wakes the
/// appenders of that batch. A batch therefore closes when the previous sync
/// returns. A second thread prepares the next segment file off the write path.
///
/// A blocking appender (`appendAndSync`, the Raft loop's path) that finds nothing queued and
/// no batch being written writes and syncs its records on its own thread instead: handing them
/// to the writer thread and being woken again costs two thread switches (tens of µs each on a
/// VM) on every write of a lone appender. Exactly one thread writes at a time
/// (`SharedState.writing`); appenders that arrive meanwhile queue for the writer thread, which
/// takes them when the write in progress ends.
/// After any failed write or sync the WAL stops: the failed batch and everything
/// queued are failed with `WALError.stopped`, and later appends are refused.
public final class WAL: Sendable {
    /// The directory holding the segments.
    public let directory: String
    let configuration: WALConfiguration
    let logger: Logger
    let shared: LockedCondition<SharedState>
    let writer: WriterContext
    let allocator: SegmentAllocator
    let dirLock: DataDirLock?
    let threads: LockedCondition<[OSThread]>

    struct Pending {
        var records: [WALRecord]
        var frameBytes: Int
        var completion: @Sendable (WALError?) -> Void
    }

    struct SharedState {
        var queue: [Pending] = []
        var queuedBytes = 0
        var waiting: [Pending] = []
        var nextIndex: UInt64
        var stopped: WALError?
        var closing = false
        /// A batch is being written (by the writer thread or an inline appender); the holder
        /// owns `WriterContext` until it clears this.
        var writing = false
        var segments: [WALSegmentFile]
        var statistics = WALStatistics()
    }

    private init(
        directory: String, configuration: WALConfiguration, logger: Logger, writer: WriterContext,
        segments: [WALSegmentFile], dirLock: DataDirLock?
    ) {
        self.directory = directory
        self.configuration = configuration
        self.logger = logger
        self.writer = writer
        self.dirLock = dirLock
        self.shared = LockedCondition(SharedState(nextIndex: writer.lastIndex &+ 1, segments: segments))
        self.allocator = SegmentAllocator(
            directory: directory, segmentSizeBytes: configuration.segmentSizeBytes,
            preallocation: configuration.preallocation, fileSystem: configuration.fileSystem)
        self.threads = LockedCondition([])
        let started = [
            OSThread.start(name: "wal-writer") { [self] in self.writerLoop() },
            OSThread.start(name: "wal-segments") { [allocator] in allocator.run() },
        ]
        threads.withLock { $0 = started }
    }

    // MARK: Create and open

    /// Creates a new log in `directory` (created if missing; must hold no segments).
    public static func create(
        directory: String, metadata: WALMetadata, configuration: WALConfiguration = WALConfiguration(), logger: Logger
    ) throws(WALError) -> WAL {
        let fs = configuration.fileSystem
        do { try fs.createDirectory(directory) } catch { throw .io(error) }
        let lock = try takeLock(directory, configuration)
        do {
            let names = try fs.listDirectory(directory)
            if names.contains(where: { $0.hasSuffix(WALFormat.segmentSuffix) }) {
                throw WALError.invalidArgument("\(directory) already holds WAL segments")  // unlocked below
            }
            for name in names where name.hasSuffix(".tmp") { try fs.unlink(directory + "/" + name) }
            let tmp = directory + "/create.tmp"
            let file = try fs.open(tmp, flags: O_RDWR | O_CREAT | O_TRUNC, mode: 0o600)
            try SegmentAllocator.preallocate(file, bytes: configuration.segmentSizeBytes, configuration.preallocation)
            var frames = FrameWriter(chain: 0, capacity: 256)
            frames.appendSegmentHeader(
                WALSegmentHeader(formatVersion: WALFormat.version, sequence: 0, firstIndex: 1, previousChainCRC: 0),
                batchStart: 0)
            frames.append(.metadata(metadata), batchStart: 0)
            try file.write(frames.buffer, prefix: frames.used, at: 0)
            try file.fsync()
            let name = WALFormat.segmentName(sequence: 0, firstIndex: 1)
            try fs.rename(tmp, directory + "/" + name)
            try fs.fsyncDirectory(directory)
            let ctx = WriterContext(
                file: file, sequence: 0, offset: Int64(frames.used), chain: frames.chain, lastIndex: 0,
                hardState: nil, metadata: metadata, maxBatchBytes: configuration.maxBatchBytes)
            logger.info("wal: created", metadata: ["dir": "\(directory)", "segment": "\(name)"])
            return WAL(
                directory: directory, configuration: configuration, logger: logger, writer: ctx,
                segments: [WALSegmentFile(name: name, sequence: 0, firstIndex: 1)], dirLock: lock)
        } catch let error as WALError {
            lock?.unlock()
            throw error
        } catch let error as FSError {
            lock?.unlock()
            throw .io(error)
        } catch {
            lock?.unlock()
            throw .invalidArgument("\(error)")
        }
    }

    private static func takeLock(_ directory: String, _ configuration: WALConfiguration) throws(WALError) -> DataDirLock? {
        guard configuration.lockDirectory else { return nil }
        do {
            return try DataDirLock.acquire(directory: directory, owner: "cairn wal", fileSystem: configuration.fileSystem)
        } catch {
            throw .locked(error.description)
        }
    }

    /// Opens an existing log for appending, replaying it from `snapshot`.
    ///
    /// Verifies every record from the segment the snapshot needs to the end. A
    /// torn tail is cut (segment copied aside first) when `repairTornTail` is set;
    /// corruption, a foreign cluster or member, an unknown version, a missing
    /// snapshot marker, a log whose start is missing (`logStartMissing`), a later
    /// snapshot marker that jumps past the log (`snapshotSuperseded`) or a hard
    /// state committing beyond the last index (`hardStateBeyondLog`) is thrown.
    ///
    /// Before returning, the last write batch of the replayed tail is rewritten and
    /// fdatasynced (and the directory fsynced): a batch written before a crash or a
    /// failed sync may sit only in the page cache, and what replay returns must be
    /// durable. If that fails, open fails.
    public static func open(
        directory: String, snapshot: WALSnapshotMarker? = nil, expectedMetadata: WALMetadata? = nil,
        configuration: WALConfiguration = WALConfiguration(), logger: Logger
    ) throws(WALError) -> (WAL, WALReplay) {
        let fs = configuration.fileSystem
        let lock = try takeLock(directory, configuration)
        let opened: (WAL, WALReplay)
        do {
            opened = try openLocked(
                directory: directory, snapshot: snapshot, expectedMetadata: expectedMetadata,
                configuration: configuration, logger: logger, lock: lock, fs: fs)
        } catch {
            lock?.unlock()
            throw error
        }
        // From here the WAL owns the lock: `close()` releases it.
        let (wal, replay) = opened
        if replay.repairedTornTail != nil {
            // The cut may have removed the tail segment's own metadata or hard state: restate them
            // so the segment stays replayable on its own.
            var restate: [WALRecord] = [.metadata(replay.metadata)]
            if let hs = replay.hardState { restate.append(.hardState(hs)) }
            do { try wal.appendAndSync(restate) } catch {
                wal.close()
                throw error
            }
        }
        return opened
    }

    /// Throws `logStartMissing` unless the log reaches back to where replay from
    /// `snapshotIndex` starts: segment 0 at index 1 without a snapshot, a segment
    /// starting at or below S+1 from snapshot S.
    static func checkLogStart(_ segments: [WALSegmentFile], snapshotIndex: UInt64?) throws(WALError) {
        let start = segments[WALScanner.startSegment(segments, snapshotIndex: snapshotIndex)]
        let needed = (snapshotIndex ?? 0) &+ 1
        let ok = snapshotIndex == nil ? start.sequence == 0 && start.firstIndex == 1 : start.firstIndex <= needed
        if !ok {
            throw .logStartMissing(
                neededIndex: needed, oldestSegment: start.name, oldestSequence: start.sequence,
                oldestFirstIndex: start.firstIndex)
        }
    }

    /// Makes the last write batch of the valid prefix durable: reads `from..<to` of
    /// the tail segment, writes it back and fdatasyncs. Rewriting (not only syncing)
    /// matters after a failed fdatasync: the kernel may have marked the unwritten
    /// pages clean, and a plain sync would then write nothing.
    static func syncReplayedTail(_ file: FSFile, from: Int64, to: Int64) throws(FSError) {
        let count = Int(to - from)
        if count > 0 {
            let bytes = try file.read(at: from, count: count)
            if bytes.count != count {
                throw FSError(operation: "pread (tail shorter than scanned)", path: file.path, errno: EIO)
            }
            try file.write(bytes, at: from)
        }
        try file.fdatasync()
    }

    private static func openLocked(
        directory: String, snapshot: WALSnapshotMarker?, expectedMetadata: WALMetadata?,
        configuration: WALConfiguration, logger: Logger, lock: DataDirLock?, fs: FileSystem
    ) throws(WALError) -> (WAL, WALReplay) {
        let scanner = WALScanner(directory: directory, fileSystem: fs)
        // Refuse a log without its start before touching anything (no repair, no cleanup).
        try checkLogStart(try scanner.listSegments(), snapshotIndex: snapshot?.index)
        do {
            for name in try fs.listDirectory(directory) where name.hasSuffix(".tmp") {
                try fs.unlink(directory + "/" + name)
            }
        } catch { throw .io(error) }
        let snapIndex = snapshot?.index ?? 0
        var entries: [WALEntry] = []
        var foundMarker = snapshot == nil || snapIndex == 0
        // The last entry index seen (including entries at or below the snapshot).
        var lastSeen: UInt64?
        // The first marker above both the caller's snapshot and the last entry.
        var superseding: (marker: WALSnapshotMarker, lastEntry: UInt64)?
        var scan = try scanner.scan(fromSnapshotIndex: snapshot?.index, visit: { _, body in
            switch body {
            case .segmentHeader(let h):
                if lastSeen == nil { lastSeen = h.firstIndex &- 1 }
            case .record(.entry(let e)):
                lastSeen = e.index
                guard e.index > snapIndex else { return }
                if let first = entries.first, e.index <= entries[entries.count - 1].index {
                    if e.index < first.index { entries.removeAll() } else { entries.removeSubrange(Int(e.index - first.index)...) }
                }
                entries.append(e)
            case .record(.snapshot(let s)):
                if let snapshot, s == snapshot { foundMarker = true }
                let last = lastSeen ?? 0
                if s.index > last {
                    // The log jumps to a snapshot it never held the entries of.
                    if s.index > snapIndex && superseding == nil { superseding = (s, last) }
                    lastSeen = s.index
                }
            default: break
            }
        })
        if let superseding {
            throw .snapshotSuperseded(requested: snapIndex, marker: superseding.marker, lastEntryIndex: superseding.lastEntry)
        }
        // The valid prefix (which a repair keeps) must hold every entry its hard state commits.
        if let hs = scan.hardState, hs.commit > scan.lastIndex {
            throw .hardStateBeyondLog(commit: hs.commit, lastIndex: scan.lastIndex)
        }
        var repaired: WALProblem?
        if let problem = scan.problem {
            guard problem.kind == .tornTail, configuration.repairTornTail else { throw .damaged(problem) }
            if scan.validEndOffset == 0 && scan.validEndSegment == 0 { throw .damaged(problem) }
            let outcome = try WALRepair.truncate(directory: directory, at: scan, fileSystem: fs)
            logger.warning(
                "wal: cut torn tail",
                metadata: ["problem": "\(problem)", "copies": "\(outcome.keptCopies)"])
            repaired = problem
            if scan.validEndOffset == 0 {
                // The tail segment was moved aside whole: the previous one is the tail now.
                scan.segments.removeLast(scan.segments.count - scan.validEndSegment)
                // Re-scan to find the end of the new tail segment.
                scan = try scanner.scan(fromSnapshotIndex: snapshot?.index)
                if let again = scan.problem { throw .damaged(again) }
            } else {
                scan.segments.removeLast(scan.segments.count - scan.validEndSegment - 1)
            }
        }
        guard let metadata = scan.metadata else {
            throw .notAWAL(path: directory, reason: "no metadata record in the replayed segments")
        }
        let firstSegment = scan.segments[0].name
        if let expected = expectedMetadata {
            if expected.clusterID != metadata.clusterID {
                throw .clusterMismatch(expected: expected.clusterID, found: metadata.clusterID, segment: firstSegment)
            }
            if expected.memberID != metadata.memberID {
                throw .memberMismatch(expected: expected.memberID, found: metadata.memberID, segment: firstSegment)
            }
        }
        if !foundMarker, let snapshot { throw .snapshotNotFound(index: snapshot.index, term: snapshot.term) }
        // What Raft gets must run from snapIndex + 1 without a gap.
        var expectedIndex = snapIndex &+ 1
        for e in entries {
            if e.index != expectedIndex { throw .replayNotContiguous(expected: expectedIndex, found: e.index) }
            expectedIndex &+= 1
        }
        let tail = scan.segments[scan.segments.count - 1]
        let file: FSFile
        do { file = try fs.open(directory + "/" + tail.name, flags: O_RDWR) } catch { throw .io(error) }
        do {
            try syncReplayedTail(file, from: scan.tailBatchStart, to: scan.validEndOffset)
            try fs.fsyncDirectory(directory)
        } catch {
            file.close()
            throw .io(error)
        }
        let ctx = WriterContext(
            file: file, sequence: tail.sequence, offset: scan.validEndOffset, chain: scan.chainCRC,
            lastIndex: scan.lastIndex, hardState: scan.hardState, metadata: metadata,
            maxBatchBytes: configuration.maxBatchBytes)
        logger.info(
            "wal: opened",
            metadata: [
                "dir": "\(directory)", "segments": "\(scan.segments.count)", "entries": "\(entries.count)",
                "lastIndex": "\(scan.lastIndex)",
            ])
        let all: [WALSegmentFile]
        do { all = try scanner.listSegments() } catch {
            file.close()
            throw error
        }
        let wal = WAL(
            directory: directory, configuration: configuration, logger: logger, writer: ctx, segments: all,
            dirLock: lock)
        return (wal, WALReplay(metadata: metadata, hardState: scan.hardState, entries: entries, repairedTornTail: repaired))
    }

    // MARK: Appending

    /// Appends records and returns once they are durable (group-committed).
    ///
    /// Cancellation does not abandon the append: once queued, the records are
    /// written and the call returns when the writer has synced them.
    public func append(_ records: [WALRecord]) async throws(WALError) {
        let error: WALError? = await withCheckedContinuation { (c: CheckedContinuation<WALError?, Never>) in
            enqueue(records, assignIndex: nil) { c.resume(returning: $0) }
        }
        if let error { throw error }
    }

    /// Appends records and blocks the calling thread until they are durable.
    /// For the Raft loop's own (non-cooperative) thread; do not call from a Swift task.
    public func appendAndSync(_ records: [WALRecord]) throws(WALError) {
        switch writeInlineIfIdle(records) {
        case .written: return
        case .failed(let error): throw error
        case .busy: break
        }
        let completion = Completion()
        enqueue(records, assignIndex: nil) { completion.complete($0) }
        if let error = completion.wait() { throw error }
    }

    /// Appends one entry at the next index (assigned in queue order) and returns
    /// that index once durable. For single-log producers such as the benchmark;
    /// Raft assigns indexes itself and uses `append`.
    public func appendNext(term: UInt64, type: WALEntryType = .normal, data: [UInt8]) async throws(WALError) -> UInt64 {
        let box = IndexBox()
        let error: WALError? = await withCheckedContinuation { (c: CheckedContinuation<WALError?, Never>) in
            enqueue([], assignIndex: (term, type, data, box)) { c.resume(returning: $0) }
        }
        if let error { throw error }
        return box.value.load(ordering: .acquiring)
    }

    /// Blocking form of `appendNext` for dedicated threads.
    public func appendNextAndSync(term: UInt64, type: WALEntryType = .normal, data: [UInt8]) throws(WALError) -> UInt64 {
        let box = IndexBox()
        let completion = Completion()
        enqueue([], assignIndex: (term, type, data, box)) { completion.complete($0) }
        if let error = completion.wait() { throw error }
        return box.value.load(ordering: .acquiring)
    }

    /// Carries the index `enqueue` assigned back to the appender.
    final class IndexBox: Sendable {
        let value = Atomic<UInt64>(0)
    }

    private func enqueue(
        _ records: [WALRecord], assignIndex: (UInt64, WALEntryType, [UInt8], IndexBox)?,
        completion: @escaping @Sendable (WALError?) -> Void
    ) {
        let assigned = assignIndex.map { WALRecord.entry(WALEntry(term: 0, index: 0, data: $0.2)) }
        if let tooLarge = Self.oversized(records, plus: assigned) {
            completion(tooLarge)
            return
        }
        var records = records
        let rejection: WALError? = shared.withLock { s in
            if let stopped = s.stopped { return stopped }
            if s.closing { return .closed }
            if let (term, type, data, box) = assignIndex {
                let index = s.nextIndex
                box.value.store(index, ordering: .releasing)
                records = [.entry(WALEntry(term: term, index: index, type: type, data: data))]
            }
            let bytes = Self.account(records, &s)
            let pending = Pending(records: records, frameBytes: bytes, completion: completion)
            if s.waiting.isEmpty && (s.queue.isEmpty || s.queuedBytes + bytes <= configuration.maxQueuedBytes) {
                s.queue.append(pending)
                s.queuedBytes += bytes
            } else {
                s.waiting.append(pending)
            }
            return nil
        }
        if let rejection {
            completion(rejection)
            return
        }
        shared.broadcast()
    }

    /// The reader treats a longer payload as damage: refuse it before it is acknowledged.
    private static func oversized(_ records: [WALRecord], plus extra: WALRecord? = nil) -> WALError? {
        var largest = extra?.payloadBytes ?? 0
        for r in records { largest = max(largest, r.payloadBytes) }
        if largest > WALFormat.maxPayloadBytes {
            return .recordTooLarge(payloadBytes: largest, maxPayloadBytes: WALFormat.maxPayloadBytes)
        }
        return nil
    }

    /// Advances the next index past `records` (lock held); returns their framed size.
    private static func account(_ records: [WALRecord], _ s: inout SharedState) -> Int {
        var bytes = 0
        for r in records {
            bytes += WALFormat.frameBytes(payloadBytes: r.payloadBytes)
            switch r {
            case .entry(let e): s.nextIndex = e.index &+ 1
            case .snapshot(let m): s.nextIndex = max(s.nextIndex, m.index &+ 1)
            default: break
            }
        }
        return bytes
    }

    private enum InlineOutcome {
        case written
        case failed(WALError)
        /// Something is queued or being written: the records must queue behind it.
        case busy
    }

    /// Writes and syncs `records` on the calling thread if the WAL is idle (see the type's
    /// documentation); `.busy` leaves them to the queue.
    private func writeInlineIfIdle(_ records: [WALRecord]) -> InlineOutcome {
        if let tooLarge = Self.oversized(records) { return .failed(tooLarge) }
        let claimed: Result<Pending?, WALError> = shared.withLock { s in
            if let stopped = s.stopped { return .failure(stopped) }
            if s.closing { return .failure(.closed) }
            guard !s.writing, s.queue.isEmpty, s.waiting.isEmpty else { return .success(nil) }
            s.writing = true
            let bytes = Self.account(records, &s)
            return .success(Pending(records: records, frameBytes: bytes, completion: { _ in }))
        }
        let pending: Pending
        switch claimed {
        case .failure(let error): return .failed(error)
        case .success(nil): return .busy
        case .success(let p?): pending = p
        }
        let (error, writerWaits) = finishBatch(writeBatch([pending]), [pending], inline: true)
        // Wake the writer thread only if it waits for this write to end (appenders queued
        // meanwhile, or a close); otherwise a later enqueue or close wakes it itself.
        if writerWaits { shared.broadcast() }
        return error.map { .failed($0) } ?? .written
    }

    /// Records a written batch (or stops the WAL after a failed one), clears `writing`, and
    /// completes the batch's appenders, and on failure everything queued. Returns the batch's
    /// error, and whether the writer thread has work waiting for `writing` to clear.
    @discardableResult
    private func finishBatch(
        _ result: Result<BatchStats, WALError>, _ batch: [Pending], inline: Bool = false
    ) -> (error: WALError?, writerWaits: Bool) {
        switch result {
        case .success(let stats):
            let cutSegment = stats.cut
            let writerWaits = shared.withLock { s -> Bool in
                s.writing = false
                s.statistics.syncs += 1
                if inline { s.statistics.inlineSyncs += 1 }
                s.statistics.records += stats.records
                s.statistics.bytes += Int64(stats.bytes)
                if let cutSegment {
                    s.statistics.segmentsCut += 1
                    s.segments.append(cutSegment)
                }
                return !s.queue.isEmpty || s.closing
            }
            for p in batch { p.completion(nil) }
            return (nil, writerWaits)
        case .failure(let error):
            logger.error("wal: stopped after failed write", metadata: ["error": "\(error)"])
            let rest: [Pending] = shared.withLock { s in
                s.writing = false
                s.stopped = error
                let all = s.queue + s.waiting
                s.queue = []
                s.waiting = []
                s.queuedBytes = 0
                return all
            }
            for p in batch { p.completion(error) }
            for p in rest { p.completion(error) }
            return (error, true)
        }
    }

    /// Counters so far.
    public var statistics: WALStatistics { shared.withLock { $0.statistics } }

    /// The error that stopped the WAL, if any.
    public var stoppedError: WALError? { shared.withLock { $0.stopped } }

    /// Segment files currently in the directory, oldest first.
    public var segments: [WALSegmentFile] { shared.withLock { $0.segments } }

    /// Writes what is queued, stops the threads and releases the directory lock.
    public func close() {
        let already = shared.withLock { s -> Bool in
            let was = s.closing
            s.closing = true
            return was
        }
        if already { return }
        shared.broadcast()
        let toJoin = threads.withLock { t -> [OSThread] in
            let all = t
            t = []
            return all
        }
        // The writer first (it drains the queue and may still need a prepared segment),
        // then the allocator.
        if toJoin.count == 2 {
            toJoin[0].join()
            allocator.stop()
            toJoin[1].join()
        } else {
            allocator.stop()
        }
        writer.file.close()
        allocator.discardPrepared()
        dirLock?.unlock()
    }

    deinit {
        close()
    }

    // MARK: Segment release

    /// Removes segments wholly below `snapshotIndex` (those before the last segment
    /// whose first index is ≤ `snapshotIndex`, which replay from that snapshot never
    /// reads), oldest first, while more than `maxWALs`
    /// segments remain; 0 keeps all (etcd's `--max-wals` semantics). Never removes
    /// the segment being written. Returns the removed names.
    @discardableResult
    public func releaseSegments(snapshotIndex: UInt64, maxWALs: Int) throws(WALError) -> [String] {
        guard maxWALs > 0 else { return [] }
        let candidates: [WALSegmentFile] = shared.withLock { s in
            var needed = 0
            for (i, seg) in s.segments.enumerated() where seg.firstIndex <= snapshotIndex { needed = i }
            needed = min(needed, s.segments.count - 1)
            let removable = min(needed, max(0, s.segments.count - maxWALs))
            return Array(s.segments[0..<removable])
        }
        guard !candidates.isEmpty else { return [] }
        let fs = configuration.fileSystem
        var removed: [String] = []
        do {
            for seg in candidates {
                try fs.unlink(directory + "/" + seg.name)
                removed.append(seg.name)
            }
            try fs.fsyncDirectory(directory)
        } catch {
            shared.withLock { s in s.segments.removeAll { removed.contains($0.name) } }
            throw .io(error)
        }
        shared.withLock { s in s.segments.removeAll { removed.contains($0.name) } }
        logger.info("wal: released segments", metadata: ["segments": "\(removed)"])
        return removed
    }

    // MARK: Writer thread

    private func writerLoop() {
        let maxBatch = configuration.maxBatchBytes
        let maxQueued = configuration.maxQueuedBytes
        while true {
            // An inline write in progress owns the writer context; wait for it even when closing,
            // so `close()` never closes the file under it.
            let batch: [Pending]? = shared.withLock(waitingUntil: { (!$0.queue.isEmpty || $0.closing) && !$0.writing }) { s in
                if s.queue.isEmpty { return nil }
                s.writing = true
                var n = 0
                var bytes = 0
                while n < s.queue.count && (n == 0 || bytes + s.queue[n].frameBytes <= maxBatch) {
                    bytes += s.queue[n].frameBytes
                    n += 1
                }
                let taken = Array(s.queue[0..<n])
                s.queue.removeFirst(n)
                s.queuedBytes -= bytes
                var admitted = 0
                while admitted < s.waiting.count
                    && (s.queue.isEmpty || s.queuedBytes + s.waiting[admitted].frameBytes <= maxQueued)
                {
                    s.queue.append(s.waiting[admitted])
                    s.queuedBytes += s.waiting[admitted].frameBytes
                    admitted += 1
                }
                s.waiting.removeFirst(admitted)
                return taken
            }
            guard let batch else { return }
            finishBatch(writeBatch(batch), batch)
        }
    }

    struct BatchStats {
        var records: Int
        var bytes: Int
        var cut: WALSegmentFile?
    }

    /// Frames, writes and syncs one batch. Runs only on the thread that set `SharedState.writing`.
    private func writeBatch(_ batch: [Pending]) -> Result<BatchStats, WALError> {
        let ctx = writer
        var total = 0
        var count = 0
        for p in batch {
            total += p.frameBytes
            count += p.records.count
        }
        ctx.frames.used = 0
        ctx.frames.chain = ctx.chain
        var cut: WALSegmentFile?
        if ctx.offset + Int64(total) > Int64(configuration.segmentSizeBytes) && ctx.offset > 0 {
            switch cutSegment() {
            case .success(let seg): cut = seg
            case .failure(let e): return .failure(e)
            }
        }
        let batchStart = UInt64(ctx.offset)
        for p in batch {
            for r in p.records {
                ctx.frames.append(r, batchStart: batchStart)
                switch r {
                case .entry(let e): ctx.lastIndex = e.index
                case .hardState(let h): ctx.hardState = h
                case .snapshot(let m): ctx.lastIndex = max(ctx.lastIndex, m.index)
                case .metadata: break
                }
            }
        }
        let used = ctx.frames.used
        do {
            try ctx.file.write(ctx.frames.buffer, prefix: used, at: ctx.offset)
            try ctx.file.fdatasync()
        } catch {
            return .failure(.stopped(reason: error.isOutOfSpace ? "disk full: \(error)" : "\(error)"))
        }
        ctx.offset += Int64(used)
        ctx.chain = ctx.frames.chain
        if ctx.frames.buffer.count > 4 * configuration.maxBatchBytes {
            ctx.frames = FrameWriter(chain: ctx.chain, capacity: configuration.maxBatchBytes)  // shrink after a huge append
        }
        return .success(BatchStats(records: count, bytes: used, cut: cut))
    }

    /// Switches to the prepared segment file; its header records are framed at
    /// the start of the current batch buffer, so they are written with the batch.
    private func cutSegment() -> Result<WALSegmentFile, WALError> {
        let ctx = writer
        let fs = configuration.fileSystem
        let prepared: (FSFile, String)
        switch allocator.take() {
        case .success(let p): prepared = p
        case .failure(let e): return .failure(.stopped(reason: "cannot prepare the next segment: \(e)"))
        }
        let sequence = ctx.sequence + 1
        let firstIndex = ctx.lastIndex &+ 1
        let name = WALFormat.segmentName(sequence: sequence, firstIndex: firstIndex)
        do {
            try fs.rename(prepared.1, directory + "/" + name)
            try fs.fsyncDirectory(directory)
        } catch {
            prepared.0.close()
            return .failure(.stopped(reason: "cannot cut segment \(name): \(error)"))
        }
        ctx.file.close()
        ctx.file = prepared.0
        ctx.sequence = sequence
        ctx.offset = 0
        ctx.frames.appendSegmentHeader(
            WALSegmentHeader(
                formatVersion: WALFormat.version, sequence: sequence, firstIndex: firstIndex,
                previousChainCRC: ctx.frames.chain),
            batchStart: 0)
        ctx.frames.append(.metadata(ctx.metadata), batchStart: 0)
        if let hs = ctx.hardState { ctx.frames.append(.hardState(hs), batchStart: 0) }
        logger.debug("wal: cut segment", metadata: ["segment": "\(name)"])
        return .success(WALSegmentFile(name: name, sequence: sequence, firstIndex: firstIndex))
    }
}

/// The writer thread's own state.
///
/// `@unchecked Sendable`: after `WAL.init` hands it over, only the thread that set
/// `SharedState.writing` (the writer thread or an inline appender) reads or writes these
/// fields, and the mutex that guards that flag orders one holder after the next; `close()`
/// uses them after joining the writer thread, which exits only when no write is in progress.
final class WriterContext: @unchecked Sendable {
    var file: FSFile
    var sequence: UInt64
    var offset: Int64
    var chain: UInt32
    var lastIndex: UInt64
    var hardState: WALHardState?
    let metadata: WALMetadata
    var frames: FrameWriter

    init(
        file: FSFile, sequence: UInt64, offset: Int64, chain: UInt32, lastIndex: UInt64, hardState: WALHardState?,
        metadata: WALMetadata, maxBatchBytes: Int
    ) {
        self.file = file
        self.sequence = sequence
        self.offset = offset
        self.chain = chain
        self.lastIndex = lastIndex
        self.hardState = hardState
        self.metadata = metadata
        self.frames = FrameWriter(chain: chain, capacity: min(maxBatchBytes + 4096, 8 << 20))
    }
}

/// Prepares the next segment file (`<n>.tmp`, preallocated and fsynced) on its
/// own thread so that cutting a segment only costs a rename and a directory fsync.
final class SegmentAllocator: Sendable {
    struct State {
        var prepared: (FSFile, String)?
        var error: FSError?
        var wanted = true
        var stopping = false
        var counter = 0
    }

    let directory: String
    let segmentSizeBytes: Int
    let preallocation: WALPreallocation
    let fileSystem: FileSystem
    let state = LockedCondition(State())

    init(directory: String, segmentSizeBytes: Int, preallocation: WALPreallocation, fileSystem: FileSystem) {
        self.directory = directory
        self.segmentSizeBytes = segmentSizeBytes
        self.preallocation = preallocation
        self.fileSystem = fileSystem
    }

    static func preallocate(_ file: FSFile, bytes: Int, _ mode: WALPreallocation) throws(FSError) {
        switch mode {
        case .fallocate:
            try file.allocate(offset: 0, length: Int64(bytes))
        case .zeroFill:
            let chunk = [UInt8](repeating: 0, count: 1 << 20)
            var off = 0
            while off < bytes {
                let n = min(chunk.count, bytes - off)
                try file.write(chunk, prefix: n, at: Int64(off))
                off += n
            }
        }
    }

    func run() {
        while true {
            let job: Int? = state.withLock(waitingUntil: { ($0.wanted && $0.prepared == nil && $0.error == nil) || $0.stopping }) {
                s in
                if s.stopping { return nil }
                s.counter += 1
                return s.counter
            }
            guard let job else { return }
            let path = directory + "/\(job).tmp"
            do throws(FSError) {
                let file = try fileSystem.open(path, flags: O_RDWR | O_CREAT | O_TRUNC, mode: 0o600)
                do throws(FSError) {
                    try Self.preallocate(file, bytes: segmentSizeBytes, preallocation)
                    try file.fsync()
                    try fileSystem.fsyncDirectory(directory)  // the creation itself is durable
                } catch {
                    file.close()
                    _ = try? fileSystem.unlink(path)
                    throw error
                }
                state.withLock { s in
                    s.prepared = (file, path)
                    s.wanted = false
                }
            } catch {
                state.withLock { $0.error = error }
            }
            state.broadcast()
        }
    }

    /// Waits for the prepared file, takes it, and asks for the next one.
    func take() -> Result<(FSFile, String), FSError> {
        let r: Result<(FSFile, String), FSError> = state.withLock(
            waitingUntil: { $0.prepared != nil || $0.error != nil || $0.stopping }
        ) { s in
            if let p = s.prepared {
                s.prepared = nil
                s.wanted = true
                return .success(p)
            }
            guard let e = s.error else {
                return .failure(FSError(operation: "prepare segment (WAL closing)", path: directory, errno: ECANCELED))
            }
            s.error = nil  // a later cut may retry
            s.wanted = true
            return .failure(e)
        }
        state.broadcast()
        return r
    }

    func stop() {
        state.withLock { $0.stopping = true }
        state.broadcast()
    }

    func discardPrepared() {
        let p = state.withLock { s -> (FSFile, String)? in
            let p = s.prepared
            s.prepared = nil
            return p
        }
        if let p {
            p.0.close()
            _ = try? fileSystem.unlink(p.1)
        }
    }
}
