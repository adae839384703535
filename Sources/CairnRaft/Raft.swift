/// Context marking a vote request that results from a leadership transfer: voters grant it
/// even inside a leader lease (thesis §3.10 / §4.2.3).
let campaignTransferContext: [UInt8] = Array("CampaignTransfer".utf8)

enum StepOutcome: Equatable {
    case ok
    case dropped(String)
}

/// The Raft state machine. Single-threaded, no I/O: inputs are messages and ticks, outputs
/// accumulate in `msgs`, `readStates` and the log's unstable part. Role behaviour is a pair of
/// functions (tick and step) selected by `role` and swapped on every role change.
final class Raft {
    let id: UInt64
    var term: UInt64 = 0
    var vote: UInt64 = 0
    let log: RaftLog
    var tracker: ProgressTracker
    private(set) var role: StateRole = .follower
    var isLearner = false
    var lead: UInt64 = 0
    var leadTransferee: UInt64 = 0
    /// Conf changes may not be proposed while this index is not applied.
    var pendingConfIndex: UInt64 = 0
    /// Payload bytes appended by this leader and not yet applied.
    var uncommittedSizeBytes: UInt64 = 0
    var readOnly: ReadOnlyQueue
    /// Reads that arrived before this leader committed an entry of its own term.
    var pendingReadIndexMessages: [Message] = []
    /// A ReadIndex heartbeat round is owed for the newest queued read (sent once per batch).
    var readHeartbeatPending = false
    var readStates: [ReadState] = []
    var msgs: [Message] = []
    /// Set when a member needs a snapshot but `Storage.snapshot()` does not list it in its
    /// `ConfState` (surfaced as `Ready.snapshotTooOld`).
    var snapshotTooOld = false

    var electionElapsed = 0
    var heartbeatElapsed = 0
    /// Ticks since the current leadership transfer began (separate from `electionElapsed`, the
    /// check-quorum clock, so transfer requests cannot postpone a check).
    var transferElapsed = 0
    var randomizedElectionTimeout = 0
    let electionTimeout: Int
    let heartbeatTimeout: Int
    let checkQuorum: Bool
    let preVote: Bool
    let readOnlyOption: ReadOnlyOption
    let disableProposalForwarding: Bool
    let maxSizePerMessageBytes: UInt64
    let maxUncommittedSizeBytes: UInt64
    var rng: SplitMix64

    private enum TickFn { case election, heartbeat }
    private enum StepFn { case follower, candidate, leader }
    private var tickFn: TickFn = .election
    private var stepFn: StepFn = .follower

    init(config c: Config, storage: any Storage) throws {
        try c.validate()
        id = c.id
        log = try RaftLog(storage: storage, maxCommittedSizePerReadyBytes: c.maxCommittedSizePerReadyBytes)
        tracker = ProgressTracker(maxInflightMessages: c.maxInflightMessages, maxInflightBytes: c.maxInflightBytes)
        readOnly = ReadOnlyQueue(maxPending: c.maxPendingReadIndexRequests)
        electionTimeout = c.electionTimeoutTicks
        heartbeatTimeout = c.heartbeatIntervalTicks
        checkQuorum = c.checkQuorum
        preVote = c.preVote
        readOnlyOption = c.readOnlyOption
        disableProposalForwarding = c.disableProposalForwarding
        maxSizePerMessageBytes = c.maxSizePerMessageBytes
        maxUncommittedSizeBytes = c.maxUncommittedEntriesSizeBytes
        rng = SplitMix64(seed: c.randomSeed ^ (c.id &* 0x9E37_79B9_7F4A_7C15))

        let hs: HardState
        let cs: ConfState
        do { (hs, cs) = try storage.initialState() } catch {
            throw RaftError.storageFailure(detail: "initialState: \(error)")
        }
        tracker.reset(to: cs, next: log.lastIndex + 1)
        isLearner = tracker.progress[id]?.isLearner ?? false
        if !hs.isEmpty {
            if hs.commit < log.committed || hs.commit > log.lastIndex {
                throw RaftError.storageGap(
                    detail: "hard state commit \(hs.commit) outside log [\(log.committed), \(log.lastIndex)]")
            }
            log.committed = hs.commit
            term = hs.term
            vote = hs.vote
        }
        if c.applied > 0 {
            if c.applied > log.committed {
                throw RaftError.invalidConfig("applied \(c.applied) beyond commit \(log.committed)")
            }
            log.applied = max(log.applied, c.applied)
        }
        becomeFollower(term: term, lead: 0)
        if let e = log.haltError { throw e }
    }

    var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    var softState: SoftState { SoftState(lead: lead, role: role) }

    // MARK: - Sending

    private func send(_ m: Message) {
        var m = m
        m.from = id
        switch m.type {
        case .vote, .preVote, .voteResp, .preVoteResp:
            precondition(m.term != 0, "vote messages carry an explicit term")
        default:
            // Every other message carries our current term, forwarded proposals, reads and
            // transfer requests included (a stale one is then ignored by a newer-term receiver).
            m.term = term
        }
        msgs.append(m)
    }

    /// Sends an append (or a snapshot) to `to` if its flow control allows. Returns whether
    /// something was sent.
    @discardableResult
    func sendAppend(to: UInt64, sendIfEmpty: Bool = true) -> Bool {
        guard var pr = tracker.progress[to], to != id else { return false }
        if pr.isPaused { return false }
        let prevIndex = pr.next - 1
        let prevTerm = log.term(at: prevIndex)
        let ents = log.entries(from: pr.next, maxSizeBytes: maxSizePerMessageBytes)
        if let ents, ents.isEmpty && !sendIfEmpty { return false }
        guard let prevTerm, let ents else {
            // The follower needs entries we compacted: send a snapshot.
            if !pr.recentActive { return false }
            guard let snap = log.snapshot(), !snap.isEmpty else { return false }
            let cs = snap.metadata.confState
            if !cs.voters.contains(to) && !cs.learners.contains(to) {
                // The member joined after this snapshot was taken and would refuse it (see
                // `restore`); sending it would loop forever. Ask the application for a newer one.
                snapshotTooOld = true
                return false
            }
            pr.becomeSnapshot(snap.metadata.index)
            tracker.progress[to] = pr
            send(Message(type: .snap, to: to, snapshot: snap))
            return true
        }
        if let last = ents.last {
            switch pr.state {
            case .replicate:
                pr.next = last.index + 1
                var bytes: UInt64 = 0
                for e in ents { bytes += e.sizeBytes }
                pr.inflights.add(index: last.index, bytes: bytes)
            case .probe:
                pr.probeSent = true
            case .snapshot:
                preconditionFailure("sending append in snapshot state")
            }
        } else if pr.state == .probe {
            pr.probeSent = true
        }
        tracker.progress[to] = pr
        send(Message(type: .app, to: to, logTerm: prevTerm, index: prevIndex, entries: ents, commit: log.committed))
        return true
    }

    func bcastAppend() {
        for p in tracker.peers(except: id) { sendAppend(to: p) }
    }

    func sendHeartbeat(to: UInt64, context: [UInt8]) {
        let match = tracker.progress[to]?.match ?? 0
        send(Message(type: .heartbeat, to: to, commit: min(match, log.committed), context: context))
    }

    func bcastHeartbeat(context: [UInt8] = []) {
        for p in tracker.peers(except: id) { sendHeartbeat(to: p, context: context) }
    }

    // MARK: - Role changes

    private func reset(term newTerm: UInt64) {
        if term != newTerm {
            term = newTerm
            vote = 0
        }
        lead = 0
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout = electionTimeout + Int(rng.next() % UInt64(electionTimeout))
        leadTransferee = 0
        transferElapsed = 0
        tracker.votes = [:]
        let last = log.lastIndex
        let stable = log.stableLastIndex
        for (pid, var pr) in tracker.progress {
            let learner = pr.isLearner
            pr = Progress(next: last + 1, inflights: pr.inflights, isLearner: learner)
            pr.inflights.reset()
            if pid == id { pr.match = stable }
            tracker.progress[pid] = pr
        }
        pendingConfIndex = 0
        uncommittedSizeBytes = 0
        readOnly.reset()
        readHeartbeatPending = false
        pendingReadIndexMessages = []
    }

    func becomeFollower(term t: UInt64, lead l: UInt64) {
        reset(term: t)
        stepFn = .follower
        tickFn = .election
        lead = l
        role = .follower
    }

    func becomeCandidate() {
        precondition(role != .leader, "leader cannot become candidate directly")
        reset(term: term + 1)
        stepFn = .candidate
        tickFn = .election
        vote = id
        role = .candidate
    }

    func becomePreCandidate() {
        precondition(role != .leader, "leader cannot become pre-candidate directly")
        // Term and vote are unchanged: a pre-vote must not disturb anyone.
        stepFn = .candidate
        tickFn = .election
        tracker.votes = [:]
        lead = 0
        role = .preCandidate
    }

    func becomeLeader() {
        precondition(role != .follower, "follower cannot become leader directly")
        reset(term: term)
        stepFn = .leader
        tickFn = .heartbeat
        lead = id
        role = .leader
        if var me = tracker.progress[id] {
            me.becomeReplicate()
            me.recentActive = true
            tracker.progress[id] = me
        }
        // §5.4.2 / §8: commit an entry of the new term to learn what is committed.
        _ = appendEntries([Entry()])
        // Conf changes wait until our empty entry is applied, hence committed in this term
        // (the fix for the single-server membership bug, Ongaro's raft-dev post of 2015).
        pendingConfIndex = log.lastIndex
    }

    /// Whether this node may campaign: a voter in the current configuration with no pending
    /// snapshot.
    var promotable: Bool {
        tracker.isVoter(id) && !log.hasPendingSnapshot
    }

    // MARK: - Ticks

    func tick() {
        switch tickFn {
        case .election: tickElection()
        case .heartbeat: tickHeartbeat()
        }
    }

    private func tickElection() {
        electionElapsed += 1
        if promotable && electionElapsed >= randomizedElectionTimeout {
            electionElapsed = 0
            _ = step(Message(type: .hup, from: id))
        }
    }

    private func tickHeartbeat() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if leadTransferee != 0 {
            transferElapsed += 1
            if transferElapsed >= electionTimeout {  // transfer timed out
                leadTransferee = 0
                transferElapsed = 0
            }
        }
        if electionElapsed >= electionTimeout {
            electionElapsed = 0
            if checkQuorum { _ = step(Message(type: .checkQuorum, from: id)) }
        }
        guard role == .leader else { return }
        if heartbeatElapsed >= heartbeatTimeout {
            heartbeatElapsed = 0
            _ = step(Message(type: .beat, from: id))
        }
    }

    // MARK: - Elections

    private func hasUnappliedConfChanges() -> Bool {
        if log.committed <= log.applied { return false }
        var lo = log.applied + 1
        while lo <= log.committed {
            guard let es = log.slice(from: lo, to: log.committed + 1, maxSizeBytes: 1 << 20), !es.isEmpty else {
                return false
            }
            if es.contains(where: { $0.type != .normal }) { return true }
            lo = es.last!.index + 1
        }
        return false
    }

    private func hup(transfer: Bool) {
        if role == .leader || !promotable { return }
        // A node that has not applied a committed conf change might campaign under a stale
        // configuration; wait until it is applied.
        if hasUnappliedConfChanges() { return }
        if preVote && !transfer { campaign(pre: true, transfer: false) } else { campaign(pre: false, transfer: transfer) }
    }

    private func campaign(pre: Bool, transfer: Bool) {
        let voteTerm: UInt64
        let type: MessageType
        if pre {
            becomePreCandidate()
            voteTerm = term + 1
            type = .preVote
        } else {
            becomeCandidate()
            voteTerm = term
            type = .vote
        }
        tracker.votes[id] = true
        switch tracker.voteResult() {
        case .won:
            if pre { campaign(pre: false, transfer: transfer) } else { becomeLeader() }
            return
        case .lost, .pending: break
        }
        let ctx = transfer ? campaignTransferContext : []
        for v in tracker.voters where v != id {
            send(Message(type: type, to: v, term: voteTerm, logTerm: log.lastTerm, index: log.lastIndex, context: ctx))
        }
    }

    // MARK: - Step

    /// Processes one message. Never traps on bad input: unknown senders, stale terms and
    /// out-of-range indexes are ignored or answered as the protocol says.
    func step(_ m: Message) -> StepOutcome {
        if m.term == 0 {
            // Local message or a forwarded proposal/read.
        } else if m.term > term {
            if m.type == .vote || m.type == .preVote {
                let force = m.context == campaignTransferContext
                let inLease = checkQuorum && lead != 0 && electionElapsed < electionTimeout
                if !force && inLease {
                    // §6 / thesis §4.2.3: ignore disruptive candidates while we hear from a leader.
                    return .ok
                }
            }
            if m.type == .preVote {
                // Never change term on a pre-vote.
            } else if m.type == .preVoteResp && !m.reject {
                // Granted pre-vote responses carry the future term; handled by the candidate.
            } else if m.type == .app || m.type == .heartbeat || m.type == .snap {
                becomeFollower(term: m.term, lead: m.from)
            } else {
                becomeFollower(term: m.term, lead: 0)
            }
        } else if m.term < term {
            if (checkQuorum || preVote) && (m.type == .heartbeat || m.type == .app) {
                // A stale leader (e.g. after a partition): tell it our term so it steps down.
                send(Message(type: .appResp, to: m.from))
            } else if m.type == .preVote {
                send(Message(type: .preVoteResp, to: m.from, term: term, reject: true))
            }
            return .ok
        }

        switch m.type {
        case .hup:
            hup(transfer: false)
            return .ok
        case .vote, .preVote:
            let canVote = vote == m.from || (vote == 0 && lead == 0) || (m.type == .preVote && m.term > term)
            let respType: MessageType = m.type == .vote ? .voteResp : .preVoteResp
            if canVote && m.from != 0 && log.isUpToDate(lastIndex: m.index, term: m.logTerm) {
                send(Message(type: respType, to: m.from, term: m.term))
                if m.type == .vote {
                    electionElapsed = 0
                    vote = m.from
                }
            } else if term == 0 {
                // Only a pre-vote can be refused at term 0 (a vote raised our term above). A
                // refusal carries our term and 0 is not a valid term: stay silent instead.
            } else {
                send(Message(type: respType, to: m.from, term: term, reject: true))
            }
            return .ok
        default:
            switch stepFn {
            case .follower: return stepFollower(m)
            case .candidate: return stepCandidate(m)
            case .leader: return stepLeader(m)
            }
        }
    }

    // MARK: Leader

    func appendEntries(_ es: [Entry]) -> Bool {
        var es = es
        var size: UInt64 = 0
        for e in es { size += e.payloadSizeBytes }
        if maxUncommittedSizeBytes > 0 && size > 0 && uncommittedSizeBytes > 0
            && uncommittedSizeBytes + size > maxUncommittedSizeBytes {
            return false
        }
        uncommittedSizeBytes += size
        let li = log.lastIndex
        for k in es.indices {
            es[k].term = term
            es[k].index = li + 1 + UInt64(k)
        }
        log.append(es[...])
        return true
    }

    /// Called after the caller persisted entries: the leader counts its own durable log.
    func onPersisted() {
        guard role == .leader, var me = tracker.progress[id] else { return }
        if me.maybeUpdate(log.stableLastIndex) {
            tracker.progress[id] = me
            if maybeCommit() { bcastAppend() }
        }
    }

    func maybeCommit() -> Bool {
        let mci = tracker.committed()
        if log.maybeCommit(index: mci, term: term) {
            releasePendingReadIndexMessages()
            return true
        }
        return false
    }

    private var committedEntryInCurrentTerm: Bool { log.term(at: log.committed) == term }

    private func releasePendingReadIndexMessages() {
        if pendingReadIndexMessages.isEmpty || !committedEntryInCurrentTerm { return }
        let pend = pendingReadIndexMessages
        pendingReadIndexMessages = []
        for m in pend { handleReadIndex(m) }
    }

    private func respondToRead(_ req: Message, index: UInt64) {
        let ctx = req.entries.first?.data ?? []
        if req.from == 0 || req.from == id {
            readStates.append(ReadState(index: index, requestContext: ctx))
        } else {
            send(Message(type: .readIndexResp, to: req.from, index: index, entries: req.entries))
        }
    }

    @discardableResult
    private func handleReadIndex(_ m: Message) -> StepOutcome {
        guard m.entries.count == 1 else { return .dropped("malformed read index request") }
        if !committedEntryInCurrentTerm {
            // Thesis §6.4 step 1: wait until an entry of this term is committed. This holds for a
            // single voter too: after a restart its commit index may lag what it had committed
            // (and a learner applied) before the crash.
            if pendingReadIndexMessages.count >= readOnly.maxPending { return .dropped("too many pending reads") }
            pendingReadIndexMessages.append(m)
            return .ok
        }
        if tracker.voters == [id] {
            respondToRead(m, index: log.committed)
            return .ok
        }
        switch readOnlyOption {
        case .leaseBased:
            respondToRead(m, index: log.committed)
        case .safe:
            let ctx = m.entries[0].data
            if !readOnly.add(index: log.committed, request: m, context: ctx) { return .dropped("too many pending reads") }
            _ = readOnly.ack(from: id, context: ctx)
            readHeartbeatPending = true
        }
        return .ok
    }

    /// Sends one heartbeat round for all reads queued since the last round.
    func flushReadHeartbeat() {
        guard readHeartbeatPending else { return }
        readHeartbeatPending = false
        if role == .leader, let ctx = readOnly.lastContext { bcastHeartbeat(context: ctx) }
    }

    private func stepLeader(_ m: Message) -> StepOutcome {
        switch m.type {
        case .beat:
            // Carry the newest pending read's context so reads whose own round was lost still
            // complete with the periodic heartbeats.
            bcastHeartbeat(context: readOnly.lastContext ?? [])
            return .ok
        case .checkQuorum:
            if !tracker.quorumActive(selfID: id) {
                becomeFollower(term: term, lead: 0)
                return .ok
            }
            for pid in tracker.progress.keys where pid != id { tracker.progress[pid]!.recentActive = false }
            return .ok
        case .prop:
            if m.entries.isEmpty { return .dropped("empty proposal") }
            if tracker.progress[id] == nil { return .dropped("leader is not a member") }
            if leadTransferee != 0 { return .dropped("leadership transfer in progress") }
            var es = m.entries
            var newPendingConf: UInt64? = nil
            for k in es.indices where es[k].type != .normal {
                if pendingConfIndex > log.applied || newPendingConf != nil {
                    return .dropped("previous configuration change not yet applied")
                }
                guard let cc = ConfChange(decoding: es[k].data), validate(cc) else {
                    return .dropped("invalid configuration change")
                }
                newPendingConf = log.lastIndex + UInt64(k) + 1
                es[k].type = .confChange
            }
            if !appendEntries(es) { return .dropped("uncommitted entries exceed maxUncommittedEntriesSizeBytes") }
            // Only an appended conf change is pending (a dropped one must not block later ones).
            if let p = newPendingConf { pendingConfIndex = p }
            bcastAppend()
            return .ok
        case .readIndex:
            return handleReadIndex(m)
        default:
            break
        }
        guard var pr = tracker.progress[m.from], m.from != id else { return .ok }  // unknown member
        switch m.type {
        case .appResp:
            pr.recentActive = true
            if m.reject {
                var hint = m.rejectHint
                if m.logTerm > 0 { hint = log.findConflictByTerm(index: m.rejectHint, term: m.logTerm).index }
                if pr.maybeDecrTo(rejected: m.index, hint: hint) {
                    if pr.state == .replicate { pr.becomeProbe() }
                    tracker.progress[m.from] = pr
                    sendAppend(to: m.from)
                } else {
                    tracker.progress[m.from] = pr
                }
                return .ok
            }
            if m.index > log.lastIndex {
                tracker.progress[m.from] = pr
                return .ok  // acknowledges entries we never sent: ignore
            }
            let wasPaused = pr.isPaused
            if pr.maybeUpdate(m.index) || (pr.match == m.index && pr.state == .probe) {
                switch pr.state {
                case .probe: pr.becomeReplicate()
                case .snapshot:
                    if pr.match + 1 >= log.firstIndex || pr.match >= pr.pendingSnapshot {
                        pr.becomeProbe()
                        pr.becomeReplicate()
                    }
                case .replicate: pr.inflights.freeLE(m.index)
                }
                tracker.progress[m.from] = pr
                if maybeCommit() {
                    bcastAppend()
                } else if wasPaused {
                    sendAppend(to: m.from)
                }
                // Pipelining: fill the window.
                var rounds = 0
                while rounds < tracker.maxInflightMessages && sendAppend(to: m.from, sendIfEmpty: false) { rounds += 1 }
                if m.from == leadTransferee, tracker.progress[m.from]?.match == log.lastIndex {
                    send(Message(type: .timeoutNow, to: m.from))
                }
            } else {
                tracker.progress[m.from] = pr
            }
        case .heartbeatResp:
            pr.recentActive = true
            pr.probeSent = false
            if pr.state == .replicate && pr.inflights.isFull { pr.inflights.freeFirstOne() }
            tracker.progress[m.from] = pr
            if pr.match < log.lastIndex { sendAppend(to: m.from) }
            guard readOnlyOption == .safe, !m.context.isEmpty,
                let acks = readOnly.ack(from: m.from, context: m.context)
            else { return .ok }
            let voterAcks = acks.filter { tracker.isVoter($0) }.count
            if voterAcks >= Quorum.size(tracker.voters.count) {
                for p in readOnly.release(through: m.context) { respondToRead(p.request, index: p.index) }
            }
        case .snapStatus:
            guard pr.state == .snapshot else { return .ok }
            if m.reject {
                pr.pendingSnapshot = 0
                pr.becomeProbe()
            } else {
                pr.becomeProbe()
            }
            // Wait for the next heartbeat response (or the append response) before probing.
            pr.probeSent = true
            tracker.progress[m.from] = pr
        case .unreachable:
            if pr.state == .replicate { pr.becomeProbe() }
            tracker.progress[m.from] = pr
        case .transferLeader:
            if pr.isLearner { return .ok }
            let target = m.from
            if leadTransferee == target { return .ok }
            leadTransferee = 0
            if target == id { return .ok }
            transferElapsed = 0
            leadTransferee = target
            if pr.match == log.lastIndex {
                send(Message(type: .timeoutNow, to: target))
            } else {
                sendAppend(to: target)
            }
        default:
            break
        }
        return .ok
    }

    // MARK: Candidate

    private func stepCandidate(_ m: Message) -> StepOutcome {
        let myRespType: MessageType = role == .preCandidate ? .preVoteResp : .voteResp
        switch m.type {
        case .prop:
            return .dropped("no leader (election in progress)")
        case .app:
            becomeFollower(term: m.term, lead: m.from)
            handleAppend(m)
        case .heartbeat:
            becomeFollower(term: m.term, lead: m.from)
            handleHeartbeat(m)
        case .snap:
            becomeFollower(term: m.term, lead: m.from)
            handleSnapshot(m)
        case myRespType:
            guard tracker.isVoter(m.from) else { return .ok }
            tracker.votes[m.from] = !m.reject
            switch tracker.voteResult() {
            case .won:
                if role == .preCandidate {
                    campaign(pre: false, transfer: false)
                } else {
                    becomeLeader()
                    bcastAppend()
                }
            case .lost:
                becomeFollower(term: term, lead: 0)
            case .pending:
                break
            }
        case .readIndex:
            return .dropped("no leader (election in progress)")
        default:
            break
        }
        return .ok
    }

    // MARK: Follower

    private func stepFollower(_ m: Message) -> StepOutcome {
        switch m.type {
        case .prop:
            if lead == 0 { return .dropped("no leader") }
            if disableProposalForwarding { return .dropped("proposal forwarding disabled") }
            var f = m
            f.to = lead
            send(f)
        case .app:
            electionElapsed = 0
            lead = m.from
            handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            lead = m.from
            handleHeartbeat(m)
        case .snap:
            electionElapsed = 0
            lead = m.from
            handleSnapshot(m)
        case .transferLeader:
            if lead == 0 { return .dropped("no leader") }
            var f = m
            f.to = lead
            msgs.append(f)  // keep `from` = requested transferee
        case .timeoutNow:
            // Only the current leader may hand over leadership (it has caught us up first).
            guard lead != 0 && m.from == lead else { return .ok }
            hup(transfer: true)
        case .readIndex:
            if lead == 0 { return .dropped("no leader") }
            var f = m
            f.to = lead
            send(f)
        case .readIndexResp:
            guard m.entries.count == 1 else { return .ok }
            readStates.append(ReadState(index: m.index, requestContext: m.entries[0].data))
        default:
            break
        }
        return .ok
    }

    private func handleAppend(_ m: Message) {
        if m.index < log.committed {
            send(Message(type: .appResp, to: m.from, index: log.committed))
            return
        }
        if let last = log.maybeAppend(index: m.index, logTerm: m.logTerm, committed: m.commit, entries: m.entries) {
            send(Message(type: .appResp, to: m.from, index: last))
        } else {
            let hintIndex = min(m.index, log.lastIndex)
            let (hi, ht) = log.findConflictByTerm(index: hintIndex, term: m.logTerm)
            send(Message(type: .appResp, to: m.from, logTerm: ht, index: m.index, reject: true, rejectHint: hi))
        }
    }

    private func handleHeartbeat(_ m: Message) {
        log.commitTo(min(m.commit, log.lastIndex))
        send(Message(type: .heartbeatResp, to: m.from, context: m.context))
    }

    private func handleSnapshot(_ m: Message) {
        guard let s = m.snapshot else { return }
        if restore(s) {
            send(Message(type: .appResp, to: m.from, index: log.lastIndex))
        } else {
            send(Message(type: .appResp, to: m.from, index: log.committed))
        }
    }

    /// Installs `s` if it is newer than what we have; returns whether it was installed.
    func restore(_ s: Snapshot) -> Bool {
        let md = s.metadata
        if md.index <= log.committed { return false }
        if role != .follower { return false }  // a snapshot at our own term from another leader: bad input
        let cs = md.confState
        if !cs.voters.contains(id) && !cs.learners.contains(id) { return false }
        if log.matchTerm(md.index, md.term) {
            log.commitTo(md.index)
            return false
        }
        log.restore(s)
        tracker.reset(to: cs, next: log.lastIndex + 1)
        isLearner = tracker.progress[id]?.isLearner ?? false
        return true
    }

    // MARK: - Configuration

    func validate(_ cc: ConfChange) -> Bool {
        if cc.nodeID == 0 { return false }
        switch cc.type {
        case .removeNode:
            return tracker.voters != [cc.nodeID] && tracker.progress[cc.nodeID] != nil
        case .addLearnerNode:
            return tracker.voters != [cc.nodeID]
        case .addNode, .updateNode:
            return true
        }
    }

    func applyConfChange(_ cc: ConfChange) -> ConfState {
        let next = log.lastIndex + 1
        switch cc.type {
        case .addNode:
            tracker.set(id: cc.nodeID, learner: false, next: next)
        case .addLearnerNode:
            if tracker.voters != [cc.nodeID] { tracker.set(id: cc.nodeID, learner: true, next: next) }
        case .removeNode:
            if tracker.voters != [cc.nodeID] { tracker.remove(cc.nodeID) }
        case .updateNode:
            break
        }
        isLearner = tracker.progress[id]?.isLearner ?? false
        if role == .leader {
            if tracker.progress[id] == nil || isLearner {
                // Removed or demoted leader: tell followers what is committed, then step down.
                bcastAppend()
                becomeFollower(term: term, lead: 0)
            } else {
                if leadTransferee != 0 && !tracker.isVoter(leadTransferee) { leadTransferee = 0 }
                if maybeCommit() { bcastAppend() } else if tracker.progress[cc.nodeID] != nil {
                    sendAppend(to: cc.nodeID)
                }
            }
        } else if role != .follower && !tracker.isVoter(id) {
            becomeFollower(term: term, lead: 0)
        }
        return tracker.confState
    }
}
