/// Everything the caller must do after a batch of inputs, returned by `RawNode.ready()`.
///
/// ## Ordering contract
/// Process a `Ready` in this order, then call `RawNode.advance()`:
/// 1. Persist `hardState` (if set), append `entries` to storage (truncating any conflicting
///    suffix) and install `snapshot` (if set). When `mustSync` is true these writes must be
///    durable (fsync) before step 2.
/// 2. Send `messagesAfterPersist`. Votes, vote responses and append responses promise things
///    about the durable state of step 1, so they must not leave before it.
///    `messagesBeforePersist` may be sent at any time, also before or in parallel with step 1
///    (thesis §10.2.1). The library puts a message there only when it is the leader's own
///    append or heartbeat and this `Ready` changes neither term nor vote and carries no
///    snapshot: the leader's term and vote are then already durable, and the leader counts its
///    own log toward commit only after `advance()` confirms the write. Sending everything after
///    step 1 is always correct.
/// 3. Apply `snapshot` and then `committedEntries` to the state machine (they may include entries
///    from `entries`; apply only after step 1). Call `RawNode.applyConfChange` for each
///    conf-change entry, in order.
/// 4. Answer `readStates`: a read may be served once the state machine has applied `index`.
/// 5. If `snapshotTooOld` is set, take a new snapshot at the applied index with the current
///    `ConfState` (see `Storage.snapshot()`).
/// 6. Call `advance()`.
public struct Ready: Sendable {
    /// Set when the role or leader changed since the previous `Ready`.
    public var softState: SoftState?
    /// Set when term, vote or commit changed and must be persisted.
    public var hardState: HardState?
    public var readStates: [ReadState] = []
    /// Entries to append to stable storage.
    public var entries: [Entry] = []
    /// Snapshot to persist and apply.
    public var snapshot: Snapshot?
    /// Committed entries to apply, bounded by `Config.maxCommittedSizePerReadyBytes`.
    public var committedEntries: [Entry] = []
    /// Messages that may be sent before (or in parallel with) persisting this `Ready`: only the
    /// leader's appends and heartbeats, and only when this `Ready` changes neither term nor vote
    /// and carries no snapshot. See the ordering contract above.
    public var messagesBeforePersist: [Message] = []
    /// Messages that must not be sent before `hardState`, `entries` and `snapshot` of this
    /// `Ready` are persisted (durable when `mustSync`).
    public var messagesAfterPersist: [Message] = []
    /// The leader needs to send a snapshot to a member that the `ConfState` of
    /// `Storage.snapshot()` does not list (the member was added after that snapshot was taken),
    /// so the member would refuse it. The leader does not send it; it keeps probing the member
    /// and raises this flag again until `Storage.snapshot()` returns a newer snapshot. The
    /// application should take one at its applied index with its current `ConfState`.
    public var snapshotTooOld: Bool = false
    /// Whether step 1 must be synchronously durable.
    public var mustSync: Bool = false

    public var isEmpty: Bool {
        softState == nil && hardState == nil && readStates.isEmpty && entries.isEmpty && snapshot == nil
            && committedEntries.isEmpty && messagesBeforePersist.isEmpty && messagesAfterPersist.isEmpty
            && !snapshotTooOld
    }
}

/// A snapshot of a node's state for status reports and tests.
public struct Status: Sendable {
    public var id: UInt64
    public var hardState: HardState
    public var softState: SoftState
    public var applied: UInt64
    public var lastIndex: UInt64
    public var confState: ConfState
    public var leadTransferee: UInt64
    /// Per-member (match, next) as seen by a leader; empty on other roles.
    public var progress: [UInt64: (match: UInt64, next: UInt64, state: String)]
}

/// The public, single-node face of the Raft library.
///
/// **Not thread-safe**: all calls must come from one thread (or be serialized by the caller).
/// Every `ready()` must be followed by `advance()` before the next `ready()`.
/// After any call throws `storageGap`/`storageFailure`, the node is halted and every further call
/// throws `RaftError.halted`; the caller must stop it and investigate its storage.
public final class RawNode {
    let raft: Raft
    private var prevSoft: SoftState
    private var prevHard: HardState
    private var inFlight: Ready?
    private var halted: RaftError?

    /// Creates a node from `storage`. A fresh cluster bootstraps by giving every node a storage
    /// whose `ConfState` lists the initial voters (see `MemoryStorage(voters:)`).
    public init(config: Config, storage: any Storage) throws {
        raft = try Raft(config: config, storage: storage)
        prevSoft = raft.softState
        prevHard = raft.hardState
    }

    public var id: UInt64 { raft.id }

    private func check() throws {
        if let h = halted { throw RaftError.halted(detail: "\(h)") }
        if let e = raft.log.haltError {
            halted = e
            throw e
        }
    }

    private func run(_ m: Message) throws {
        try check()
        let out = raft.step(m)
        try check()
        if case .dropped(let reason) = out { throw RaftError.proposalDropped(reason: reason) }
    }

    /// Advances the logical clock by one tick.
    public func tick() throws {
        try check()
        raft.tick()
        try check()
    }

    /// Starts an election now (skipping the timeout); with pre-vote enabled, a pre-vote first.
    public func campaign() throws { try run(Message(type: .hup, from: raft.id)) }

    /// Proposes `data` to be appended. Throws `proposalDropped` if it cannot be accepted here; a
    /// proposal forwarded to the leader may still be lost (the caller should time out and retry).
    public func propose(_ data: [UInt8]) throws {
        try run(Message(type: .prop, from: raft.id, entries: [Entry(data: data)]))
    }

    /// Proposes a batch of entries in one message (one append round for all of them).
    public func propose(batch: [[UInt8]]) throws {
        try run(Message(type: .prop, from: raft.id, entries: batch.map { Entry(data: $0) }))
    }

    /// Proposes a membership change (see `ConfChange` for the safety rules).
    public func proposeConfChange(_ cc: ConfChange) throws {
        try run(Message(type: .prop, from: raft.id, entries: [Entry(type: .confChange, data: cc.encode())]))
    }

    /// Applies a committed conf change to this node's configuration; call it when applying the
    /// conf-change entry, and persist the returned `ConfState` with the applied state.
    @discardableResult
    public func applyConfChange(_ cc: ConfChange) throws -> ConfState {
        try check()
        return raft.applyConfChange(cc)
    }

    /// Requests a linearizable read. The answer arrives as a `ReadState` with the same context in
    /// a later `Ready`. Reads issued between two `ready()` calls share one heartbeat round.
    /// `context` must be unique among outstanding reads: requests with an equal context are
    /// folded into one and answered by a single `ReadState`.
    public func readIndex(_ context: [UInt8]) throws {
        try run(Message(type: .readIndex, from: 0, entries: [Entry(data: context)]))
    }

    /// Asks the leader to hand leadership to `to` (thesis §3.10).
    public func transferLeader(to: UInt64) throws {
        try run(Message(type: .transferLeader, from: to))
    }

    /// Feeds a message received from a peer.
    public func step(_ m: Message) throws {
        if m.type.isLocal { throw RaftError.localMessageFromNetwork(m.type) }
        if m.from == 0 { return }  // malformed: ignore
        if !Self.isSane(m) { return }  // corrupt numbers: ignore
        // Only forwarded proposals, reads and transfer requests may carry term 0.
        if m.term == 0 && m.type != .prop && m.type != .readIndex && m.type != .transferLeader { return }
        try check()
        _ = raft.step(m)  // drops of forwarded proposals are not the peer's caller's concern
        try check()
    }

    /// Terms and indexes at or above 2^62 cannot occur in a real cluster (they would take
    /// millennia to reach) and would make `+ 1` overflow; messages carrying them are corrupt.
    static let maxSaneValue: UInt64 = 1 << 62

    static func isSane(_ m: Message) -> Bool {
        let limit = maxSaneValue
        if m.term >= limit || m.logTerm >= limit || m.index >= limit || m.commit >= limit || m.rejectHint >= limit {
            return false
        }
        for e in m.entries where e.term >= limit || e.index >= limit { return false }
        if let s = m.snapshot, s.metadata.index >= limit || s.metadata.term >= limit { return false }
        return true
    }

    /// The transport could not reach `id`; the leader falls back to probing it.
    public func reportUnreachable(_ id: UInt64) throws {
        try check()
        _ = raft.step(Message(type: .unreachable, from: id))
    }

    /// Result of sending a snapshot to `id`. Every `snap` message handed to the transport must
    /// be reported (`.failed` if it was dropped): until then the leader keeps `id` in snapshot
    /// state and sends it nothing.
    public func reportSnapshot(_ id: UInt64, status: SnapshotStatus) throws {
        try check()
        _ = raft.step(Message(type: .snapStatus, from: id, reject: status == .failed))
    }

    public func hasReady() -> Bool {
        if halted != nil || raft.log.haltError != nil { return false }
        if raft.softState != prevSoft { return true }
        let hs = raft.hardState
        if hs != prevHard { return true }
        if !raft.msgs.isEmpty || raft.readHeartbeatPending || !raft.readStates.isEmpty { return true }
        if raft.snapshotTooOld { return true }
        if !raft.log.unstable.entries.isEmpty || raft.log.hasPendingSnapshot { return true }
        return raft.log.hasNextCommittedEntries()
    }

    /// Returns what the caller must do now; see `Ready` for the ordering contract.
    public func ready() throws -> Ready {
        try check()
        precondition(inFlight == nil, "ready() called twice without advance()")
        raft.flushReadHeartbeat()
        var rd = Ready()
        let ss = raft.softState
        if ss != prevSoft { rd.softState = ss }
        let hs = raft.hardState
        if hs != prevHard { rd.hardState = hs }
        rd.entries = raft.log.unstable.entries
        rd.snapshot = raft.log.unstable.snapshot
        rd.committedEntries = raft.log.nextCommittedEntries()
        let termOrVoteChanged = hs.term != prevHard.term || hs.vote != prevHard.vote
        // Thesis §10.2.1: the leader may replicate in parallel with its own log write, but only
        // when its term and vote are already durable (a leader elected inside this very Ready,
        // e.g. a single voter winning in tick(), could otherwise crash, restart at the old term,
        // win that term again and write different entries at the same (index, term)).
        let early = raft.role == .leader && !termOrVoteChanged && rd.snapshot == nil
        for m in raft.msgs {
            if early && (m.type == .app || m.type == .heartbeat) {
                rd.messagesBeforePersist.append(m)
            } else {
                rd.messagesAfterPersist.append(m)
            }
        }
        raft.msgs = []
        rd.readStates = raft.readStates
        raft.readStates = []
        rd.snapshotTooOld = raft.snapshotTooOld
        raft.snapshotTooOld = false
        rd.mustSync = !rd.entries.isEmpty || rd.snapshot != nil || termOrVoteChanged
        try check()
        inFlight = rd
        return rd
    }

    /// Tells the node the last `Ready` was fully processed.
    public func advance() throws {
        try check()
        guard let rd = inFlight else { return }
        inFlight = nil
        if let s = rd.softState { prevSoft = s }
        if let h = rd.hardState { prevHard = h }
        if let s = rd.snapshot { raft.log.unstable.stableSnapTo(index: s.metadata.index) }
        if let last = rd.entries.last { raft.log.unstable.stableTo(index: last.index, term: last.term) }
        if let last = rd.committedEntries.last {
            raft.log.appliedTo(last.index)
            if raft.role == .leader {
                var sz: UInt64 = 0
                for e in rd.committedEntries { sz += e.payloadSizeBytes }
                raft.uncommittedSizeBytes = raft.uncommittedSizeBytes > sz ? raft.uncommittedSizeBytes - sz : 0
            }
        }
        // The snapshot was applied to the state machine in step 3 of the contract.
        if let s = rd.snapshot { raft.log.appliedTo(s.metadata.index) }
        raft.onPersisted()
        try check()
    }

    public var status: Status {
        var prs: [UInt64: (match: UInt64, next: UInt64, state: String)] = [:]
        if raft.role == .leader {
            for (k, p) in raft.tracker.progress { prs[k] = (p.match, p.next, p.state.rawValue) }
        }
        return Status(
            id: raft.id, hardState: raft.hardState, softState: raft.softState, applied: raft.log.applied,
            lastIndex: raft.log.lastIndex, confState: raft.tracker.confState, leadTransferee: raft.leadTransferee,
            progress: prs)
    }
}
