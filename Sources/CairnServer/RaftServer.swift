import CairnBackend
import CairnFS
import CairnMVCC
import CairnRaft
import CairnSnapshot
import CairnSync
import CairnWAL
import Logging
import Metrics
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One member: Raft, the WAL and the keyspace tied into etcd's write and read paths.
///
/// Threads (all dedicated OS threads, never Swift tasks or event loops, because they block):
/// - the **Raft loop** owns the `RawNode` and its in-memory log. It takes queued proposals
///   and reads in batches, ticks the clock, writes each `Ready` to the WAL with one group
///   commit (on its own thread when the WAL is idle), and hands committed entries to the
///   applier, or applies a small batch itself when the applier is idle (light load: one
///   thread switch fewer per write).
/// - the **applier** applies committed entries in batched keyspace transactions (recording the
///   applied index in the same transaction), completes the waiting requests, wakes watchers
///   and readers, and triggers snapshots.
/// - the **snapshotter** writes a snapshot file when `snapshotCount` entries were applied since
///   the last one; the Raft loop then trims its log and the WAL.
///
/// Requests enter through `propose` and `linearizableBarrier` from any task; every queue
/// between the threads has a bound (`ServerOptions`).
public final class RaftServer<Backend: StorageBackend>: @unchecked Sendable {
    public let keyspace: Keyspace<Backend>
    public let options: ServerOptions
    public let identity: ServerIdentity
    let logger: Logger
    let wal: WAL
    public let lessor: Lessor
    public let watchHub: WatchHub<Backend>

    // Raft-loop state: touched only on the Raft thread (and in `open` before it starts).
    private let node: RawNode
    private let raftLog: MemoryStorage
    private var unsavedHardState: HardState?
    private var raftSnapshotIndex: UInt64
    private var readWaiters: [UInt64: [ReadWaiter]] = [:]
    private var nextReadContext: UInt64 = 1
    private var revokingLeases: [Int64: UInt64] = [:]  // id -> retry deadline (monotonic ns)
    private var lastLeaseCheck: UInt64 = 0
    /// When the Raft loop last took proposals whose WAL write has not begun (0: none).
    private var proposalsTakenNanoseconds: UInt64 = 0

    // Metrics (swift-metrics; the executable chooses the backend), with etcd's names.
    let appliedCounter = Counter(label: "etcd_server_proposals_applied_total")
    let failedCounter = Counter(label: "etcd_server_proposals_failed_total")
    let hasLeaderGauge = Gauge(label: "etcd_server_has_leader")
    let leaderChanges = Counter(label: "etcd_server_leader_changes_seen_total")
    let walSyncTimer = Timer(label: "etcd_disk_wal_fsync_duration_seconds")
    let applyTimer = Timer(label: "cairn_apply_batch_duration_seconds")
    /// Where a write's time goes, one observation per batch (with one client, per write):
    /// `queue` (submitted → taken by the Raft loop), `raft` (→ its WAL write begins),
    /// `wal_sync` (the WAL write and fdatasync), `apply` (committed → applied and completed).
    /// The KV service records `decode` (the request decoded and validated, per write) and
    /// `reply` (completed → reply encoded on the event loop).
    let queueStage = Timer(label: "cairn_put_stage_duration_seconds", dimensions: [("stage", "queue")])
    let raftStage = Timer(label: "cairn_put_stage_duration_seconds", dimensions: [("stage", "raft")])
    let walStage = Timer(label: "cairn_put_stage_duration_seconds", dimensions: [("stage", "wal_sync")])
    let applyStage = Timer(label: "cairn_put_stage_duration_seconds", dimensions: [("stage", "apply")])

    // Shared state, each guarded by its own lock.
    let inbox = LockedCondition(Inbox())
    let applyQueue = LockedCondition(ApplyQueue())
    let snapshotRequests = LockedCondition(SnapshotRequests())
    let pending = LockedValue(PendingTable())
    let published: LockedValue<Published>
    let appliedWaiters = LockedValue(AppliedWaiters())
    let alarms = LockedValue<Set<AlarmKey>>([])
    /// Linearizable reads not answered yet, with their deadlines, for the watchdog. Bounded by
    /// the reads in flight (each holds a client call). A read the watchdog answered leaves its
    /// (inert) callback in the Raft loop's or applier's lists until the stall ends, as a
    /// timed-out write leaves its proposal: those grow with clients retrying during a stall.
    let pendingReads = LockedValue<[UInt64: (deadline: UInt64, complete: @Sendable (Result<UInt64, ServerError>) -> Void)]>([:])
    /// The keyspace holds data the WAL does not (restored from a snapshot) until the member's
    /// first snapshot, which is then taken at once (see `KeyspaceCrashGuard`).
    let needsFirstSnapshot = LockedValue(false)
    private let requestIDs: LockedValue<UInt64>
    private let threads = LockedValue<[OSThread]>([])
    /// Tests only: while `closed`, each WAL write waits for it to open, as on a stalled disk;
    /// `waiting` counts the writes held, so a test knows the Raft loop is stuck.
    let walGateForTesting = LockedCondition(WALGate())

    struct WALGate {
        var closed = false
        var waiting = 0
    }
    /// Wakes the watchdog thread when the member stops.
    private let watchdogStop = LockedCondition(false)
    private var requestTimeoutNanoseconds: UInt64 { UInt64(options.effectiveRequestTimeoutMilliseconds) * 1_000_000 }
    private let snapshotIndexes: LockedValue<(index: UInt64, term: UInt64)>

    /// Requests waiting for their entry to apply; `closed` once the member stopped or halted,
    /// checked under the same lock so no request slips in after the last sweep.
    struct PendingTable {
        var calls: [UInt64: PendingCall] = [:]
        var closed: ServerError?
    }

    struct PendingCall {
        var request: ServerRequest
        var complete: @Sendable (Result<ApplyResult, ServerError>) -> Void
        /// Monotonic ns after which the watchdog fails it with "request timed out".
        var deadline: UInt64
    }

    struct ReadWaiter {
        var complete: @Sendable (Result<UInt64, ServerError>) -> Void
    }

    struct Inbox {
        var proposals: [(id: UInt64, data: [UInt8])] = []
        /// When the oldest of `proposals` was queued (monotonic ns; 0 when none).
        var proposalsSinceNanoseconds: UInt64 = 0
        var reads: [ReadWaiter] = []
        var snapshotsTaken: [(index: UInt64, term: UInt64)] = []
        var transferTo: UInt64?
        var stopping = false
        var closed: ServerError?

        var hasWork: Bool {
            !proposals.isEmpty || !reads.isEmpty || !snapshotsTaken.isEmpty || transferTo != nil || stopping
        }
    }

    struct ApplyQueue {
        var entries: [Entry] = []
        /// When the oldest of `entries` was queued (monotonic ns; 0 when none).
        var entriesSinceNanoseconds: UInt64 = 0
        /// A batch is being applied (by the applier, or inline by the Raft loop): applies never
        /// overlap, and run in log order.
        var applying = false
        var stopping = false
        var stopped = false
    }

    struct SnapshotRequests {
        var wanted = false
        var stopping = false
        /// Defragmentations asked for (Maintenance.Defragment), run on the snapshot thread.
        var defragmentations: [@Sendable (Result<(beforeBytes: Int64, afterBytes: Int64), ServerError>) -> Void] = []
    }

    /// What other threads read about the member.
    public struct Published: Sendable {
        public var term: UInt64 = 0
        public var leader: UInt64 = 0
        public var isLeader = false
        public var committedIndex: UInt64 = 0
        public var appliedIndex: UInt64 = 0
        public var appliedTerm: UInt64 = 0
        public var halted: String?
        public var stopping = false
    }

    /// etcd's `AlarmType.NOSPACE`.
    static var noSpaceAlarm: Int { 1 }
    /// When the quota was last compared with the backend's size (monotonic ns). Touched only by
    /// the thread that holds `ApplyQueue.applying` (the applier, or the Raft loop applying inline).
    private var lastQuotaCheck: UInt64 = 0

    public struct AlarmKey: Hashable, Sendable {
        public var memberID: UInt64
        /// etcd's `AlarmType`: 1 = NOSPACE, 2 = CORRUPT.
        public var alarm: Int
    }

    struct AppliedWaiters {
        var waiters: [(index: UInt64, complete: @Sendable (Result<UInt64, ServerError>) -> Void)] = []
        var applied: UInt64 = 0
        var closed: ServerError?
    }

    // MARK: Opening

    /// Opens (or creates) the member in `options.dataDirectory` over `keyspace`'s backend.
    ///
    /// A new member creates its WAL and elects itself. An existing one restores the keyspace
    /// from the newest snapshot if the backend is behind it, replays the WAL from that
    /// snapshot, and re-applies every committed entry the keyspace has not applied.
    public static func open(
        options: ServerOptions, backend: Backend, logger: Logger
    ) throws -> RaftServer {
        let fs = FileSystem.live
        try fs.createDirectory(options.memberDirectory)
        try Snapshotter.open(directory: options.snapshotDirectory, logger: logger)
        let walDir = options.resolvedWALDirectory
        let snaps = try Snapshotter.list(directory: options.snapshotDirectory)
        var hasWAL = false
        if fs.isDirectory(walDir) {
            hasWAL = try fs.listDirectory(walDir).contains { $0.hasSuffix(WALFormat.segmentSuffix) }
        }
        var keyspace = try Keyspace(backend: backend, logger: logger)
        let raftLog = MemoryStorage()
        let wal: WAL
        let identity: ServerIdentity
        var snapshotMark: (index: UInt64, term: UInt64) = (0, 0)
        var fresh = false
        if !hasWAL {
            if keyspace.appliedIndex > 0 || !snaps.isEmpty {
                throw ServerStartError(
                    "\(options.memberDirectory) holds a keyspace or snapshots (applied index \(keyspace.appliedIndex)) "
                        + "but no WAL in \(walDir); refusing to start a new member over it")
            }
            if keyspace.revision > 1 || !keyspace.allLeases().isEmpty {
                // A keyspace restored from an etcd snapshot (an empty one is at revision 1 with
                // no lease): the WAL about to start holds none of its data. The restore writes
                // this flag itself; this covers keyspaces restored before it did. Before the
                // WAL exists, so that no later start can miss it.
                try KeyspaceCrashGuard.markRestored(options)
            }
            identity = ServerIdentity.derive(
                name: options.name, peerURLs: options.peerURLs, clientURLs: options.clientURLs,
                token: options.initialClusterToken)
            wal = try WAL.create(
                directory: walDir, metadata: WALMetadata(clusterID: identity.clusterID, memberID: identity.memberID),
                configuration: options.walConfiguration, logger: logger)
            raftLog.setConfState(ConfState(voters: [identity.memberID]))
            fresh = true
        } else {
            // The newest snapshot the WAL has a marker for (the marker is written before the
            // file, so a file without one is the leftover of an interrupted snapshot).
            let (opened_, replay, chosen) = try openWAL(
                walDir, configuration: options.walConfiguration, newestFirst: Array(snaps.reversed()), logger: logger)
            let marker = chosen.map { WALSnapshotMarker(index: $0.index, term: $0.term) }
            let restoreMarker = options.memberDirectory + "/restore.marker"
            if let chosen {
                snapshotMark = (chosen.index, chosen.term)
                let interrupted = fs.exists(restoreMarker)
                if keyspace.appliedIndex < chosen.index || interrupted {
                    let path = options.snapshotDirectory + "/" + chosen.name
                    logger.warning(
                        interrupted ? "a restore was interrupted; restoring again" : "keyspace is behind the newest snapshot; restoring it",
                        metadata: ["applied": "\(keyspace.appliedIndex)", "snapshot": "\(path)"])
                    do {
                        try Snapshotter.restore(from: path, into: backend, markerPath: restoreMarker, logger: logger)
                        keyspace = try Keyspace(backend: backend, logger: logger)
                    } catch {
                        opened_.close()
                        throw error
                    }
                }
            } else if fs.exists(restoreMarker) {
                opened_.close()
                throw ServerStartError("\(restoreMarker) says a restore was interrupted, but no usable snapshot is left")
            }
            let wal_ = opened_
            wal = wal_
            identity = ServerIdentity(
                name: options.name, memberID: replay.metadata.memberID, clusterID: replay.metadata.clusterID,
                peerURLs: options.peerURLs, clientURLs: options.clientURLs)
            let conf = ConfState(voters: [identity.memberID])
            if let m = marker {
                try raftLog.applySnapshot(
                    Snapshot(metadata: SnapshotMetadata(confState: conf, index: m.index, term: m.term)))
            } else {
                raftLog.setConfState(conf)
            }
            try raftLog.append(
                replay.entries.map {
                    Entry(term: $0.term, index: $0.index, type: EntryType(rawValue: $0.type.rawValue) ?? .normal, data: $0.data)
                })
            let last = try raftLog.lastIndex()
            if keyspace.appliedIndex > last {
                wal.close()
                throw ServerStartError(
                    "the keyspace has applied index \(keyspace.appliedIndex) but the WAL ends at \(last): "
                        + "the WAL lost entries that were applied")
            }
            if let hs = replay.hardState {
                // The commit index is written lazily; whatever the keyspace applied was committed.
                let commit = max(hs.commit, keyspace.appliedIndex)
                raftLog.setHardState(HardState(term: hs.term, vote: hs.vote, commit: min(commit, last)))
            }
            if let torn = replay.repairedTornTail {
                logger.warning("wal: cut a torn tail", metadata: ["problem": "\(torn)"])
            }
        }
        var config = Config(id: identity.memberID)
        config.electionTimeoutTicks = options.electionTicks
        config.heartbeatIntervalTicks = 1
        config.applied = max(keyspace.appliedIndex, snapshotMark.index)
        config.randomSeed = identity.memberID ^ UInt64(truncatingIfNeeded: monotonicNanoseconds())
        let node = try RawNode(config: config, storage: raftLog)
        let server = RaftServer(
            keyspace: keyspace, options: options, identity: identity, logger: logger, wal: wal, node: node,
            raftLog: raftLog, snapshotMark: snapshotMark)
        try server.loadAlarms()
        if KeyspaceCrashGuard.isRestored(options) {
            server.needsFirstSnapshot.withLock { $0 = true }
            logger.info("the keyspace was restored from a snapshot: taking the member's first snapshot as soon as it applies an entry")
        }
        let lastIndex = try raftLog.lastIndex()
        logger.info(
            "member opened",
            metadata: [
                "name": "\(identity.name)", "member-id": "\(hex(identity.memberID))",
                "cluster-id": "\(hex(identity.clusterID))", "new": "\(fresh)",
                "applied-index": "\(keyspace.appliedIndex)", "last-index": "\(lastIndex)",
                "revision": "\(keyspace.revision)",
            ])
        return server
    }

    /// Opens the WAL from the newest snapshot it has a marker for.
    private static func openWAL(
        _ walDir: String, configuration: WALConfiguration, newestFirst: [(name: String, term: UInt64, index: UInt64)],
        logger: Logger
    ) throws -> (WAL, WALReplay, (name: String, term: UInt64, index: UInt64)?) {
        var candidates = newestFirst[...]
        while true {
            let c = candidates.first
            let marker = c.map { WALSnapshotMarker(index: $0.index, term: $0.term) }
            let result: Result<(WAL, WALReplay), WALError>
            do {
                result = .success(try WAL.open(directory: walDir, snapshot: marker, configuration: configuration, logger: logger))
            } catch {
                result = .failure(error)
            }
            switch result {
            case .success(let (wal, replay)):
                return (wal, replay, c)
            case .failure(.snapshotNotFound(let index, let term)) where c != nil:
                logger.warning("snapshot has no WAL marker; ignoring it", metadata: ["index": "\(index)", "term": "\(term)"])
                candidates = candidates.dropFirst()
            case .failure(let error):
                throw error
            }
        }
    }

    private init(
        keyspace: Keyspace<Backend>, options: ServerOptions, identity: ServerIdentity, logger: Logger, wal: WAL,
        node: RawNode, raftLog: MemoryStorage, snapshotMark: (index: UInt64, term: UInt64)
    ) {
        self.keyspace = keyspace
        self.options = options
        self.identity = identity
        self.logger = logger
        self.wal = wal
        self.node = node
        self.raftLog = raftLog
        self.raftSnapshotIndex = snapshotMark.index
        self.snapshotIndexes = LockedValue(snapshotMark)
        var p = Published()
        p.appliedIndex = keyspace.appliedIndex
        p.appliedTerm = (try? raftLog.term(at: keyspace.appliedIndex)) ?? 0
        self.published = LockedValue(p)
        self.appliedWaiters.withLock { $0.applied = keyspace.appliedIndex }
        // Request ids: the member id's low bits above a counter, so ids from different members differ.
        self.requestIDs = LockedValue((identity.memberID & 0xffff) << 48 | (monotonicNanoseconds() & 0xffff_ffff) << 16)
        self.lessor = Lessor(minTTLSeconds: options.minLeaseTTLSeconds, logger: logger)
        self.watchHub = WatchHub(keyspace: keyspace, logger: logger)
        for l in keyspace.allLeases() { lessor.restore(id: l.id, ttlSeconds: l.ttlSeconds) }
    }

    /// Loads the alarms the keyspace recorded (they outlive restarts, as etcd's do).
    private func loadAlarms() throws {
        let stored = try keyspace.storedAlarms()
        alarms.withLock { set in for a in stored { set.insert(AlarmKey(memberID: a.memberID, alarm: a.alarm)) } }
        if !stored.isEmpty { logger.warning("alarms raised before the restart are still raised", metadata: ["alarms": "\(stored)"]) }
    }

    /// Starts the threads; a lone voter campaigns at once instead of waiting an election timeout.
    public func start() throws {
        if node.status.confState.voters == [identity.memberID] {
            try node.campaign()
        }
        let started = [
            OSThread.start(name: "cairn-raft") { [self] in self.raftLoop() },
            OSThread.start(name: "cairn-apply") { [self] in self.applyLoop() },
            OSThread.start(name: "cairn-snapshot") { [self] in self.snapshotLoop() },
        ]
        threads.withLock { $0 = started + [OSThread.start(name: "cairn-watchdog") { [self] in self.watchdogLoop() }] }
        watchHub.start()
    }

    /// Stops taking requests, lets the Raft loop and the applier finish what they hold, syncs the
    /// backend and closes the WAL. Requests still waiting fail with "server stopped". Returns
    /// whether the backend was synced (false if it failed, or the member was already stopped).
    @discardableResult
    public func stop() -> Bool {
        let already = published.withLock { p -> Bool in
            let was = p.stopping
            p.stopping = true
            return was
        }
        if already { return false }
        inbox.withLock { $0.stopping = true }
        inbox.broadcast()
        let all = threads.withLock { t -> [OSThread] in
            let a = t
            t = []
            return a
        }
        if all.count == 4 {
            all[0].join()  // the Raft loop hands its last committed entries to the applier first
            applyQueue.withLock { $0.stopping = true }
            applyQueue.broadcast()
            all[1].join()
            snapshotRequests.withLock { $0.stopping = true }
            snapshotRequests.broadcast()
            all[2].join()
            watchdogStop.withLock { $0 = true }
            watchdogStop.broadcast()
            all[3].join()
        }
        watchHub.stop()
        failAllPending(.stopped)
        var synced = true
        do { try keyspace.backend.sync() } catch {
            synced = false
            logger.error("backend sync at stop failed", metadata: ["error": "\(error)"])
        }
        wal.close()
        logger.info("member stopped", metadata: ["applied-index": "\(keyspace.appliedIndex)"])
        return synced
    }

    // MARK: Public state

    public var status: Published { published.current }

    /// `(clusterID, memberID, raftTerm)` for response headers.
    public var header: (clusterID: UInt64, memberID: UInt64, raftTerm: UInt64) {
        (identity.clusterID, identity.memberID, published.withLock { $0.term })
    }

    public var activeAlarms: [AlarmKey] { alarms.current.sorted { ($0.memberID, $0.alarm) < ($1.memberID, $1.alarm) } }

    // MARK: Requests

    /// Proposes `request` and returns its result once the entry is applied on this member.
    public func propose(_ request: ServerRequest) async throws(ServerError) -> ApplyResult {
        let result: Result<ApplyResult, ServerError> = await withCheckedContinuation { c in
            submit(request) { c.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Queues `request`; `complete` runs where the entry is applied (the applier, or the Raft
    /// loop for a small batch, see `applyInlineIfIdle`), or at once on failure.
    /// `encoded` is the request's etcd message as received; the log entry carries it as is.
    func submit(
        _ request: ServerRequest, encoded: ByteBuffer? = nil,
        complete: @escaping @Sendable (Result<ApplyResult, ServerError>) -> Void
    ) {
        let state = published.current
        if state.stopping { return complete(.failure(.stopped)) }
        if let why = state.halted { return complete(.failure(.halted(why))) }
        if !state.isLeader { return complete(.failure(.noLeader)) }
        if request.consumesSpace, alarms.current.contains(where: { $0.alarm == Self.noSpaceAlarm }) {
            return complete(.failure(.spaceExceeded))
        }
        let id = requestIDs.withLock { v -> UInt64 in
            v &+= 1
            return v
        }
        let data: [UInt8]
        if let encoded, let kind = EntryCodec.Kind(request) {
            data = EntryCodec.entry(id: id, kind: kind, payload: encoded)
        } else {
            do { data = try EntryCodec.encode(id: id, request) } catch {
                return complete(.failure(.halted("encoding a request failed: \(error)")))
            }
        }
        let refusal = pending.withLock { p -> ServerError? in
            if let closed = p.closed { return closed }
            guard p.calls.count < options.maxPendingRequests else { return .tooManyRequests }
            p.calls[id] = PendingCall(request: request, complete: complete, deadline: monotonicNanoseconds() + requestTimeoutNanoseconds)
            return nil
        }
        if let refusal { return complete(.failure(refusal)) }
        inbox.withLock {
            if $0.proposals.isEmpty { $0.proposalsSinceNanoseconds = monotonicNanoseconds() }
            $0.proposals.append((id, data))
        }
        inbox.broadcast()
    }

    /// Returns once this member has applied everything committed when the call began, as
    /// confirmed by the leader (Raft's ReadIndex): a read after it is linearizable.
    ///
    /// Like a write, it fails with "etcdserver: request timed out" after the request timeout (a
    /// stalled disk holding the Raft loop or the applier): the watchdog answers it, and the
    /// answer the member would have given later is dropped.
    public func linearizableBarrier() async throws(ServerError) {
        let result: Result<UInt64, ServerError> = await withCheckedContinuation { c in
            let state = published.current
            if state.stopping { return c.resume(returning: .failure(.stopped)) }
            if let why = state.halted { return c.resume(returning: .failure(.halted(why))) }
            let id = requestIDs.withLock { v -> UInt64 in
                v &+= 1
                return v
            }
            let once = OnceFlag()
            let complete: @Sendable (Result<UInt64, ServerError>) -> Void = { [weak self] r in
                guard once.claim() else { return }
                self?.pendingReads.withLock { _ = $0.removeValue(forKey: id) }
                c.resume(returning: r)
            }
            let deadline = monotonicNanoseconds() + requestTimeoutNanoseconds
            pendingReads.withLock { $0[id] = (deadline, complete) }
            let closed = inbox.withLock { s -> ServerError? in
                if let closed = s.closed { return closed }
                s.reads.append(ReadWaiter(complete: complete))
                return nil
            }
            if let closed { return complete(.failure(closed)) }
            inbox.broadcast()
        }
        _ = try result.get()
    }

    /// Asks the leader to hand leadership to `memberID`.
    public func moveLeader(to memberID: UInt64) throws(ServerError) {
        guard voters.contains(memberID) else {
            throw .badLeaderTransferee
        }
        if memberID == identity.memberID { return }
        inbox.withLock { $0.transferTo = memberID }
        inbox.broadcast()
    }

    /// Voters of the current configuration (single-member for now).
    public var voters: [UInt64] { [identity.memberID] }

    /// Fails every waiting request and refuses new ones with `error`.
    private func failAllPending(_ error: ServerError) {
        let calls = pending.withLock { p -> [PendingCall] in
            let all = Array(p.calls.values)
            p.calls.removeAll()
            if p.closed == nil { p.closed = error }
            return all
        }
        for c in calls { c.complete(.failure(error)) }
        let reads = inbox.withLock { s -> [ReadWaiter] in
            let r = s.reads
            s.reads = []
            s.proposals = []
            if s.closed == nil { s.closed = error }
            return r
        }
        for r in reads { r.complete(.failure(error)) }
        let waiting = appliedWaiters.withLock { w -> [@Sendable (Result<UInt64, ServerError>) -> Void] in
            let all = w.waiters.map(\.complete)
            w.waiters = []
            if w.closed == nil { w.closed = error }
            return all
        }
        for w in waiting { w(.failure(error)) }
    }

    /// Raft-thread only: fails the reads waiting for a ReadIndex answer.
    private func failReadWaiters(_ error: ServerError) {
        let waiting = readWaiters.values.flatMap { $0 }
        readWaiters = [:]
        for r in waiting { r.complete(.failure(error)) }
    }

    private func halt(_ why: String) {
        logger.critical("member halted: stops serving writes and linearizable reads", metadata: ["reason": "\(why)"])
        published.withLock {
            $0.halted = why
            $0.isLeader = false
        }
        failAllPending(.halted(why))
    }

    // MARK: Request timeouts

    /// Fails writes that have waited longer than the request timeout (a stalled disk, say), and
    /// every 5 s returns freed heap memory to the system (`malloc_trim`). Runs on a thread of
    /// its own so that it runs even while the Raft loop or the applier is stuck.
    /// A timed-out write may still be applied later; the client only learns that the outcome
    /// is unknown, as etcd's clients do.
    static var memoryTrimIntervalNanoseconds: UInt64 { 5_000_000_000 }

    private func watchdogLoop() {
        let periodNanoseconds = max(min(requestTimeoutNanoseconds / 4, 500_000_000), 10_000_000)
        var nextTrim = monotonicNanoseconds() + Self.memoryTrimIntervalNanoseconds
        while true {
            let stop = watchdogStop.withLock(waitingUntil: { $0 }, deadline: monotonicNanoseconds() + periodNanoseconds) { $0 }
            if stop { return }
            let now = monotonicNanoseconds()
            if now >= nextTrim {
                // glibc keeps freed memory in its arenas; after a burst (10,000 watchers dropped,
                // a flood of connections) hand the free pages back so resident memory returns
                // to where it was. Cheap at this size, and off every serving thread.
                #if canImport(Glibc)
                _ = glibcMallocTrim(0)
                #endif
                nextTrim = now + Self.memoryTrimIntervalNanoseconds
            }
            let expired = pending.withLock { p -> [PendingCall] in
                let ids = p.calls.compactMap { $0.value.deadline <= now ? $0.key : nil }
                return ids.compactMap { p.calls.removeValue(forKey: $0) }
            }
            if !expired.isEmpty {
                logger.warning("requests timed out waiting to be applied", metadata: ["count": "\(expired.count)"])
                for c in expired { c.complete(.failure(.timeout)) }
            }
            let expiredReads = pendingReads.withLock { r -> [@Sendable (Result<UInt64, ServerError>) -> Void] in
                r.values.compactMap { $0.deadline <= now ? $0.complete : nil }
            }
            if !expiredReads.isEmpty {
                logger.warning("linearizable reads timed out", metadata: ["count": "\(expiredReads.count)"])
                for complete in expiredReads { complete(.failure(.timeout)) }
            }
        }
    }

    // MARK: The Raft loop

    private func raftLoop() {
        let tickNanoseconds = UInt64(options.heartbeatIntervalMilliseconds) * 1_000_000
        var nextTick = monotonicNanoseconds() + tickNanoseconds
        while true {
            let work = inbox.withLock(waitingUntil: { $0.hasWork }, deadline: nextTick) { s -> Inbox in
                let w = s
                s.proposals = []
                s.proposalsSinceNanoseconds = 0
                s.reads = []
                s.snapshotsTaken = []
                s.transferTo = nil
                return w
            }
            if let why = published.current.halted {
                // Halted: answer what arrives, keep no clock (nothing to tick), wait for stop.
                for r in work.reads { r.complete(.failure(.halted(why))) }
                failProposals(work.proposals, .halted(why))
                failReadWaiters(.halted(why))
                if work.stopping { return }
                nextTick = UInt64.max / 2
                continue
            }
            do {
                let now = monotonicNanoseconds()
                if !work.proposals.isEmpty {
                    queueStage.recordNanoseconds(Int64(now &- work.proposalsSinceNanoseconds))
                    proposalsTakenNanoseconds = now
                }
                if now >= nextTick {
                    try node.tick()
                    nextTick = max(nextTick + tickNanoseconds, now + tickNanoseconds / 2)
                    checkLeases(now: now)
                }
                if !work.proposals.isEmpty { propose(work.proposals) }
                if !work.reads.isEmpty { requestRead(work.reads) }
                for s in work.snapshotsTaken { try compactLog(to: s) }
                if let to = work.transferTo { try node.transferLeader(to: to) }
                try processReady()
                if work.stopping {
                    failReadWaiters(.stopped)
                    return
                }
            } catch {
                halt("raft loop: \(error)")
                failReadWaiters(.halted("raft loop: \(error)"))
                if work.stopping { return }
            }
        }
    }

    private func propose(_ proposals: [(id: UInt64, data: [UInt8])]) {
        do {
            try node.propose(batch: proposals.map(\.data))
        } catch {
            failProposals(proposals, .noLeader)
        }
    }

    private func failProposals(_ proposals: [(id: UInt64, data: [UInt8])], _ error: ServerError) {
        let calls = pending.withLock { p in proposals.compactMap { p.calls.removeValue(forKey: $0.id) } }
        for c in calls { c.complete(.failure(error)) }
    }

    private func requestRead(_ reads: [ReadWaiter]) {
        let ctx = nextReadContext
        nextReadContext &+= 1
        var bytes: [UInt8] = []
        withUnsafeBytes(of: ctx.bigEndian) { bytes.append(contentsOf: $0) }
        do {
            try node.readIndex(bytes)
            readWaiters[ctx] = reads
        } catch {
            for r in reads { r.complete(.failure(.noLeader)) }
        }
    }

    private func processReady() throws {
        while node.hasReady() {
            let rd = try node.ready()
            if let ss = rd.softState { roleChanged(ss) }
            if let hs = rd.hardState {
                unsavedHardState = hs
                published.withLock {
                    $0.term = hs.term
                    $0.committedIndex = hs.commit
                }
            }
            if rd.mustSync || !rd.entries.isEmpty {
                var records: [WALRecord] = []
                records.reserveCapacity(rd.entries.count + 1)
                for e in rd.entries {
                    records.append(
                        .entry(WALEntry(term: e.term, index: e.index, type: WALEntryType(rawValue: e.type.rawValue), data: e.data)))
                }
                // After the entries: a hard state never commits past what precedes it in the log.
                if let hs = unsavedHardState {
                    records.append(.hardState(WALHardState(term: hs.term, vote: hs.vote, commit: hs.commit)))
                    unsavedHardState = nil
                }
                let t0 = monotonicNanoseconds()
                if !rd.entries.isEmpty, proposalsTakenNanoseconds != 0 {
                    raftStage.recordNanoseconds(Int64(t0 &- proposalsTakenNanoseconds))
                    proposalsTakenNanoseconds = 0
                }
                holdAtWALGateForTesting()
                try wal.appendAndSync(records)
                let walNanoseconds = Int64(monotonicNanoseconds() - t0)
                walSyncTimer.recordNanoseconds(walNanoseconds)
                if !rd.entries.isEmpty { walStage.recordNanoseconds(walNanoseconds) }
            }
            if let hs = rd.hardState { raftLog.setHardState(hs) }
            try raftLog.append(rd.entries)
            // Single member: no peers to send to (rd.messagesBeforePersist/AfterPersist go to the
            // peer transport when the cluster issue lands).
            if !rd.committedEntries.isEmpty { enqueueApply(rd.committedEntries) }
            for rs in rd.readStates { answerRead(rs) }
            try node.advance()
        }
    }

    private func holdAtWALGateForTesting() {
        guard walGateForTesting.withLock({ $0.closed }) else { return }
        walGateForTesting.withLock { $0.waiting += 1 }
        walGateForTesting.broadcast()
        walGateForTesting.withLock(waitingUntil: { !$0.closed }) { $0.waiting -= 1 }
        walGateForTesting.broadcast()
    }

    private func roleChanged(_ ss: SoftState) {
        let leader = ss.role == .leader
        hasLeaderGauge.record(ss.lead != 0 ? 1 : 0)
        leaderChanges.increment()
        let was = published.withLock { p -> Bool in
            let was = p.isLeader
            p.leader = ss.lead
            p.isLeader = leader
            return was
        }
        logger.info(
            "raft role changed",
            metadata: ["role": "\(ss.role)", "leader": "\(hex(ss.lead))", "term": "\(node.status.hardState.term)"])
        if leader && !was {
            lessor.promote(extendNanoseconds: UInt64(options.electionTimeoutMilliseconds) * 1_000_000)
        } else if !leader && was {
            lessor.demote()
            // Proposals this member accepted may still commit under the next leader; readers
            // waiting for a ReadIndex answer from this term will not get one.
            failReadWaiters(.noLeader)
        }
    }

    private func answerRead(_ rs: ReadState) {
        guard rs.requestContext.count == 8 else { return }
        var ctx: UInt64 = 0
        for b in rs.requestContext { ctx = ctx << 8 | UInt64(b) }
        guard let waiters = readWaiters.removeValue(forKey: ctx) else { return }
        let closed = appliedWaiters.withLock { w -> ServerError? in
            if let closed = w.closed { return closed }
            for r in waiters { w.waiters.append((rs.index, r.complete)) }
            return nil
        }
        if let closed {
            for r in waiters { r.complete(.failure(closed)) }
        }
        releaseAppliedWaiters()
    }

    private func enqueueApply(_ entries: [Entry]) {
        if let last = entries.last { published.withLock { $0.committedIndex = max($0.committedIndex, last.index) } }
        if Self.appliesInline(entries, maxEntries: options.maxApplyBatchEntries), applyInlineIfIdle(entries) { return }
        // Backpressure: the Raft loop waits while the applier is far behind.
        applyQueue.withLock(waitingUntil: { $0.entries.count < self.options.maxApplyBacklogEntries || $0.stopped }) { q in
            if q.entries.isEmpty { q.entriesSinceNanoseconds = monotonicNanoseconds() }
            q.entries.append(contentsOf: entries)
        }
        applyQueue.broadcast()
    }

    /// Whether the Raft loop may apply `entries` itself: a few puts (at most 8, and at most
    /// `maxEntries`) and the leader's empty entry. Work of unbounded cost (a range delete, a
    /// txn, a compaction, lease revocation) always goes to the applier, so the Raft loop never
    /// stops ticking, proposing or answering reads for long.
    static func appliesInline(_ entries: [Entry], maxEntries: Int) -> Bool {
        guard entries.count <= min(8, maxEntries) else { return false }
        for e in entries where e.type != .normal || !(e.data.isEmpty || e.data[0] == EntryCodec.Kind.put.rawValue) {
            return false
        }
        return true
    }

    /// Light load: a small batch with nothing queued or being applied ahead of it is applied
    /// on the Raft loop, which saves waking the applier (a thread switch, 15-30 µs on a VM, on
    /// every write of a lone client). Larger batches go to the applier, so that under load the
    /// next WAL write overlaps the apply of the last. Returns false if the batch must queue.
    private func applyInlineIfIdle(_ entries: [Entry]) -> Bool {
        let claimed = applyQueue.withLock { q -> Bool in
            guard q.entries.isEmpty, !q.applying, !q.stopping else { return false }
            q.applying = true
            return true
        }
        guard claimed else { return false }
        let queuedAt = monotonicNanoseconds()
        if published.current.halted == nil {
            apply(entries)
            applyStage.recordNanoseconds(Int64(monotonicNanoseconds() &- queuedAt))
        }
        // The applier can only be waiting for `applying` to clear if entries were queued or a
        // stop began meanwhile (neither happens while the Raft loop is here; checked anyway).
        let applierWaits = applyQueue.withLock { q -> Bool in
            q.applying = false
            return !q.entries.isEmpty || q.stopping
        }
        if applierWaits { applyQueue.broadcast() }
        return true
    }

    // MARK: Leases (leader)

    private func checkLeases(now: UInt64) {
        let interval = UInt64(options.leaseCheckIntervalMilliseconds) * 1_000_000
        guard now >= lastLeaseCheck + interval, published.current.isLeader else { return }
        lastLeaseCheck = now
        revokingLeases = revokingLeases.filter { $0.value > now && lessor.exists($0.key) }
        let expired = lessor.expired(now: now, limit: options.maxLeaseRevokesPerCheck, excluding: Set(revokingLeases.keys))
        guard !expired.isEmpty else { return }
        var proposals: [(id: UInt64, data: [UInt8])] = []
        for lease in expired {
            let id = requestIDs.withLock { v -> UInt64 in
                v &+= 1
                return v
            }
            guard let data = try? EntryCodec.encode(id: id, .leaseRevoke(id: lease)) else { continue }
            proposals.append((id, data))
            revokingLeases[lease] = now + 3 * UInt64(options.electionTimeoutMilliseconds) * 1_000_000
        }
        logger.debug("revoking expired leases", metadata: ["count": "\(proposals.count)"])
        try? node.propose(batch: proposals.map(\.data))
    }

    // MARK: Snapshots and log compaction

    private func compactLog(to snap: (index: UInt64, term: UInt64)) throws {
        guard snap.index > raftSnapshotIndex else { return }
        try raftLog.createSnapshot(index: snap.index, confState: nil, data: [])
        raftSnapshotIndex = snap.index
        if snap.index > options.snapshotCatchUpEntries {
            let upTo = snap.index - options.snapshotCatchUpEntries
            if upTo > (try raftLog.firstIndex()) { try raftLog.compact(upTo: upTo) }
        }
        let removed = try wal.releaseSegments(snapshotIndex: snap.index, maxWALs: options.maxWALs)
        if !removed.isEmpty { logger.info("wal: released segments", metadata: ["segments": "\(removed)"]) }
    }

    /// How often the snapshot thread drops the store's mapped pages from the process (see
    /// `releaseMappedPagesIfApplied`).
    static var mappedPagesReleaseIntervalNanoseconds: UInt64 { 1_000_000_000 }

    private func snapshotLoop() {
        var nextRelease = monotonicNanoseconds() + Self.mappedPagesReleaseIntervalNanoseconds
        // The first tick always releases: opening the keyspace read the whole key table
        // through the map to build the index.
        var appliedAtRelease = UInt64.max
        while true {
            let (go, defrags, stopping) = snapshotRequests.withLock(
                waitingUntil: { $0.wanted || $0.stopping || !$0.defragmentations.isEmpty }, deadline: nextRelease
            ) { s in
                let w = s.wanted
                let d = s.defragmentations
                s.wanted = false
                s.defragmentations = []
                return (w && !s.stopping, d, s.stopping)
            }
            if !defrags.isEmpty { defragmentNow(defrags, refuse: stopping) }
            if go { takeSnapshot() }
            if stopping { return }
            if monotonicNanoseconds() >= nextRelease {
                releaseMappedPagesIfApplied(since: &appliedAtRelease)
                nextRelease = monotonicNanoseconds() + Self.mappedPagesReleaseIntervalNanoseconds
            }
        }
    }

    /// Writes read the store's B-tree through its memory map, and each commit puts the pages it
    /// changed at new places in the file, so the pages a process has mapped grow with every
    /// commit (measured: 178 MiB after 100,000 puts since the last snapshot) although they are
    /// only page cache. Once a second, if anything was applied, they are dropped from the
    /// process (they stay cached; the next access maps them again). On this thread because it
    /// may wait for a map resize or defragmentation, which the watchdog must never do.
    private func releaseMappedPagesIfApplied(since applied: inout UInt64) {
        let now = published.current.appliedIndex
        guard now != applied else { return }
        applied = now
        keyspace.backend.releaseMappedPages()
    }

    /// Rewrites the backend without its free space (Maintenance.Defragment). Reads and writes
    /// wait while it runs, as with etcd. Runs on the snapshot thread, never beside a snapshot.
    public func defragment() async throws(ServerError) -> (beforeBytes: Int64, afterBytes: Int64) {
        let result: Result<(beforeBytes: Int64, afterBytes: Int64), ServerError> = await withCheckedContinuation { c in
            let accepted = snapshotRequests.withLock { s -> Bool in
                guard !s.stopping else { return false }
                s.defragmentations.append { c.resume(returning: $0) }
                return true
            }
            if accepted { snapshotRequests.broadcast() } else { c.resume(returning: .failure(.stopped)) }
        }
        return try result.get()
    }

    private func defragmentNow(
        _ waiting: [@Sendable (Result<(beforeBytes: Int64, afterBytes: Int64), ServerError>) -> Void], refuse: Bool
    ) {
        if refuse {
            for w in waiting { w(.failure(.stopped)) }
            return
        }
        let started = monotonicNanoseconds()
        let result: Result<(beforeBytes: Int64, afterBytes: Int64), ServerError>
        do {
            let sizes = try keyspace.backend.defragment()
            logger.info(
                "backend defragmented",
                metadata: [
                    "before-bytes": "\(sizes.beforeBytes)", "after-bytes": "\(sizes.afterBytes)",
                    "took-ms": "\((monotonicNanoseconds() - started) / 1_000_000)",
                ])
            result = .success(sizes)
        } catch {
            logger.error("defragmentation failed", metadata: ["error": "\(error)"])
            result = .failure(.keyspace(.backend(error)))
        }
        for w in waiting { w(result) }
    }

    /// Writes a snapshot file at the applied index. The file's data may be newer than its
    /// index (the applier keeps going); restoring it and replaying the WAL from its index is
    /// still right, because the keyspace skips entries at or below its own applied index.
    private func takeSnapshot() {
        let (index, term) = published.withLock { ($0.appliedIndex, $0.appliedTerm) }
        let last = snapshotIndexes.current.index
        let first = needsFirstSnapshot.current
        guard index >= last + options.snapshotCount || (first && index > last) else { return }
        do {
            // The WAL marker first: a file always has its marker, so replay can start from it.
            try wal.appendAndSync([.snapshot(WALSnapshotMarker(index: index, term: term))])
            let membership = Array("\(hex(identity.memberID))".utf8)
            let (path, header) = try Snapshotter.write(
                backend: keyspace.backend, tables: Keyspace<Backend>.tableNames, term: term, index: index,
                membership: membership, directory: options.snapshotDirectory, logger: logger)
            snapshotIndexes.withLock { $0 = (index, term) }
            // The backend commits without fsync (the WAL is the durable record); make what it
            // applied durable before the WAL segments that cover it can be released.
            try keyspace.backend.sync()
            // The snapshot read every page of the store through its memory map; without this
            // the whole file would stay in the server's resident memory after each snapshot.
            keyspace.backend.releaseMappedPages()
            if first {
                try KeyspaceCrashGuard.clearRestored(options)
                needsFirstSnapshot.withLock { $0 = false }
            }
            logger.info(
                "snapshot written",
                metadata: ["path": "\(path)", "index": "\(index)", "bytes": "\(header.compressedBytes)"])
            inbox.withLock { $0.snapshotsTaken.append((index, term)) }
            inbox.broadcast()
            let purged = try Snapshotter.purge(directory: options.snapshotDirectory, maxSnapshots: options.maxSnapshots)
            if !purged.isEmpty { logger.info("snapshots purged", metadata: ["files": "\(purged)"]) }
        } catch {
            logger.error("snapshot failed; will retry after more entries", metadata: ["error": "\(error)"])
        }
    }

    // MARK: The applier

    private func applyLoop() {
        while true {
            let (batch, queuedSince) = applyQueue.withLock(waitingUntil: { (!$0.entries.isEmpty || $0.stopping) && !$0.applying }) {
                q -> ([Entry], UInt64) in
                let n = min(q.entries.count, options.maxApplyBatchEntries)
                if n > 0 { q.applying = true }
                let b = Array(q.entries.prefix(n))
                let since = q.entriesSinceNanoseconds
                q.entries.removeFirst(n)
                // The rest waited at least as long; counting it from now underestimates, never overstates.
                q.entriesSinceNanoseconds = q.entries.isEmpty ? 0 : monotonicNanoseconds()
                if q.entries.isEmpty && q.stopping { q.stopped = true }
                return (b, since)
            }
            applyQueue.broadcast()
            if batch.isEmpty { return }
            if published.current.halted == nil {
                apply(batch)
                if queuedSince != 0 { applyStage.recordNanoseconds(Int64(monotonicNanoseconds() &- queuedSince)) }
            }
            applyQueue.withLock { $0.applying = false }
        }
    }

    private func apply(_ entries: [Entry]) {
        let skipThrough = keyspace.appliedIndex
        let todo = entries.filter { $0.index > skipThrough }
        guard let last = entries.last else { return }
        var ids: [UInt64] = []
        ids.reserveCapacity(todo.count)
        for e in todo where e.type == .normal {
            if let id = EntryCodec.requestID(e.data) { ids.append(id) }
        }
        let calls = pending.withLock { p -> [UInt64: PendingCall] in
            var out: [UInt64: PendingCall] = [:]
            out.reserveCapacity(ids.count)
            for id in ids { if let c = p.calls.removeValue(forKey: id) { out[id] = c } }
            return out
        }
        var results: [(id: UInt64, result: ApplyResult)] = []
        var leaseChanges: [ApplyResult] = []
        var alarmChanges: [AlarmChange] = []
        var revokedLeases: [Int64] = []
        let applyStart = monotonicNanoseconds()
        defer { applyTimer.recordNanoseconds(Int64(monotonicNanoseconds() - applyStart)) }
        do {
            if !todo.isEmpty {
                try keyspace.apply { w in
                    results.removeAll(keepingCapacity: true)  // the backend may run this body again
                    leaseChanges.removeAll()
                    alarmChanges.removeAll()
                    revokedLeases.removeAll()
                    for e in todo {
                        guard e.type == .normal, !e.data.isEmpty else { continue }
                        let id = EntryCodec.requestID(e.data) ?? 0
                        let request: ServerRequest
                        if let local = calls[id] { request = local.request } else { request = try EntryCodec.decode(e.data) }
                        let r = try execute(request, w)
                        switch (request, r) {
                        case (.leaseGrant, .leaseGrant): leaseChanges.append(r)
                        case (.leaseRevoke(let lease), .leaseRevoke), (.leaseRevoke(let lease), .failed(.leaseNotFound)):
                            revokedLeases.append(lease)
                        case (.alarm(let a), .alarm): alarmChanges.append(a)
                        default: break
                        }
                        results.append((id, r))
                    }
                    w.setAppliedIndex(last.index)
                }
            }
        } catch {
            // A backend failure (or an undecodable entry) cannot be skipped: members would diverge.
            for (_, c) in calls { c.complete(.failure(.halted("apply: \(error)"))) }
            halt("applying entries \(todo.first?.index ?? 0)...\(last.index): \(error)")
            return
        }
        for change in leaseChanges {
            if case .leaseGrant(let id, let ttl, _) = change { lessor.grant(id: id, ttlSeconds: ttl) }
        }
        for lease in revokedLeases { lessor.remove(id: lease) }
        if !alarmChanges.isEmpty {
            alarms.withLock { set in
                for a in alarmChanges {
                    let key = AlarmKey(memberID: a.memberID, alarm: a.alarm)
                    if a.action == .activate { set.insert(key) } else { set.remove(key) }
                }
            }
        }
        published.withLock {
            $0.appliedIndex = max($0.appliedIndex, last.index)
            $0.appliedTerm = last.term
        }
        appliedCounter.increment(by: todo.count)
        var failures = 0
        for (id, r) in results {
            if case .failed = r { failures += 1 }
            calls[id]?.complete(.success(r))
        }
        if failures > 0 { failedCounter.increment(by: failures) }
        watchHub.notify()
        appliedWaiters.withLock { $0.applied = max($0.applied, last.index) }
        releaseAppliedWaiters()
        checkQuota()
        if last.index >= snapshotIndexes.current.index + options.snapshotCount || needsFirstSnapshot.current {
            snapshotRequests.withLock { $0.wanted = true }
            snapshotRequests.broadcast()
        }
    }

    /// Applying (applier or inline): raises NOSPACE (through Raft, as etcd does) once the backend's data
    /// reaches the quota. Writes that can grow it are then refused before they are proposed;
    /// reads, deletes, compaction and disarming keep working. Checked at most every 100 ms.
    private func checkQuota() {
        let now = monotonicNanoseconds()
        guard now >= lastQuotaCheck + 100_000_000 else { return }
        lastQuotaCheck = now
        guard published.current.isLeader,
            !alarms.current.contains(where: { $0.alarm == Self.noSpaceAlarm }),
            let stats = try? keyspace.backend.stats(), stats.sizeInUseBytes >= options.quotaBackendBytes
        else { return }
        logger.warning(
            "backend quota reached: raising NOSPACE",
            metadata: ["in-use-bytes": "\(stats.sizeInUseBytes)", "quota-bytes": "\(options.quotaBackendBytes)"])
        submit(.alarm(AlarmChange(action: .activate, memberID: identity.memberID, alarm: Self.noSpaceAlarm))) { _ in }
    }

    private func execute(_ request: ServerRequest, _ w: KeyspaceWriter<Backend>) throws(KeyspaceError) -> ApplyResult {
        do {
            switch request {
            case .put(let r): return .put(try w.put(r))
            case .deleteRange(let r): return .deleteRange(try w.deleteRange(r))
            case .txn(let t): return .txn(try w.txn(t))
            case .compact(let rev, _): return .compact(revision: try w.compact(rev))
            case .leaseGrant(let id, let ttl):
                try w.leaseGrant(LeaseRecord(id: id, ttlSeconds: ttl))
                return .leaseGrant(id: id, ttlSeconds: ttl, revision: w.currentRevision)
            case .leaseRevoke(let id): return .leaseRevoke(revision: try w.leaseRevoke(id))
            case .alarm(let a):
                try w.setAlarm(memberID: a.memberID, alarm: a.alarm, active: a.action == .activate)
                return .alarm(revision: w.currentRevision)
            }
        } catch {
            if case .backend = error { throw error }
            if case .corrupt = error { throw error }
            return .failed(error)
        }
    }

    private func releaseAppliedWaiters() {
        let ready = appliedWaiters.withLock { w -> [(UInt64, @Sendable (Result<UInt64, ServerError>) -> Void)] in
            guard !w.waiters.isEmpty else { return [] }
            var out: [(UInt64, @Sendable (Result<UInt64, ServerError>) -> Void)] = []
            var keep: [(index: UInt64, complete: @Sendable (Result<UInt64, ServerError>) -> Void)] = []
            for x in w.waiters {
                if x.index <= w.applied { out.append((x.index, x.complete)) } else { keep.append(x) }
            }
            w.waiters = keep
            return out
        }
        for (i, c) in ready { c(.success(i)) }
    }
}

extension ServerRequest {
    /// Whether the request can grow the backend (refused while a NOSPACE alarm is raised).
    var consumesSpace: Bool {
        switch self {
        case .put, .txn, .leaseGrant: return true
        case .deleteRange, .compact, .leaseRevoke, .alarm: return false
        }
    }
}

/// A member could not start; the message says why.
public struct ServerStartError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

func hex(_ v: UInt64) -> String { String(v, radix: 16) }

#if canImport(Glibc)
/// glibc's `malloc_trim` (malloc.h, which the Glibc module does not export).
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
#endif

/// True for the first `claim()` only: one answer per request, whichever thread comes first.
final class OnceFlag: Sendable {
    private let claimed = Atomic<Bool>(false)
    func claim() -> Bool { !claimed.exchange(true, ordering: .acquiringAndReleasing) }
}
