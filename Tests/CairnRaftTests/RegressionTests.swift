import Testing
@testable import CairnRaft

/// Regression tests for the review findings (most adapted from the reviewer's reproductions).
@Suite("Review regressions")
struct RegressionTests {
    // MARK: 1. Messages sent before the write must not outrun a term/vote change

    /// Voters [1] + learner 2. Node 1 wins inside tick() (no vote round) and takes a proposal
    /// before ready(): that Ready carries an unpersisted term/vote change, entries and an append
    /// to the learner. Messages the library allows to leave early are sent, then node 1 crashes
    /// before its write. It must not be able to write a different entry at the same (index, term).
    @Test("Early messages never precede a term/vote change (single voter wins in tick)")
    func earlyMessagesWaitForTermChange() throws {
        let c = try Cluster(ids: [])
        try c.addPeer(id: 1, voters: [1], learners: [2])
        try c.addPeer(id: 2, voters: [1], learners: [2])
        try c.campaign(1)
        try c[1].node.propose(bytes("a"))
        try c.stabilize()
        // Node 1 restarts (cleanly) as a follower, then wins a new election by ticking.
        var cfg1 = c[1].config
        cfg1.applied = c[1].appliedIndex
        c.peers[1] = try Peer(id: 1, storage: c[1].storage, config: cfg1)
        c[1].appliedIndex = cfg1.applied
        var ticks = 0
        while c[1].raft.role != .leader && ticks < 100 { try c[1].node.tick(); ticks += 1 }
        #expect(c[1].raft.role == .leader)
        try c[1].node.propose(bytes("LOST"))
        let rd = try c[1].node.ready()
        #expect(rd.hardState?.term != c[1].storage.hardState.term)
        #expect(rd.mustSync)
        #expect(rd.messagesBeforePersist.isEmpty, "term/vote not durable yet: nothing may leave early")
        #expect(rd.messagesAfterPersist.contains { $0.type == .app && $0.to == 2 })
        // Send what may leave early; crash before the write is durable.
        for m in rd.messagesBeforePersist { try c[2].node.step(m) }
        try c[2].handleReady()
        c.peers[1] = try Peer(id: 1, storage: c[1].storage, config: cfg1)
        c[1].appliedIndex = cfg1.applied
        ticks = 0
        while c[1].raft.role != .leader && ticks < 100 { try c[1].node.tick(); ticks += 1 }
        try c[1].node.propose(bytes("WIN"))
        try c.stabilize()
        for _ in 0..<5 { try c.tickAll(); try c.stabilize() }
        let last = c[1].raft.log.lastIndex
        #expect(c[2].raft.log.lastIndex == last)
        for i in 1...last {
            #expect(try c[1].storage.entries(from: i, to: i + 1, maxSizeBytes: .max)
                == c[2].storage.entries(from: i, to: i + 1, maxSizeBytes: .max), "log matching at \(i)")
        }
    }

    @Test("A steady leader's appends may leave before its own log write")
    func steadyLeaderAppendsEarly() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        try c[1].node.propose(bytes("x"))
        let rd = try c[1].node.ready()
        #expect(rd.hardState == nil || rd.hardState?.term == c[1].storage.hardState.term)
        #expect(!rd.entries.isEmpty)
        #expect(rd.messagesBeforePersist.filter { $0.type == .app }.count == 2)
        #expect(rd.messagesBeforePersist.allSatisfy { $0.type == .app || $0.type == .heartbeat })
        try c[1].node.advance()
    }

    // MARK: 2. Stale snapshot for a member added after it

    @Test("A learner added after the latest snapshot catches up via a fresh snapshot")
    func staleSnapshotNewLearner() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        for i in 0..<10 { try c[1].node.propose(bytes("x\(i)")); try c.stabilize() }
        let l = c[1]
        let ai = l.appliedIndex
        try l.storage.createSnapshot(index: ai, confState: l.confState, data: [])
        try l.storage.compact(upTo: ai)
        try c.addPeer(id: 4, voters: [1, 2, 3])
        c.isolate(4)
        l.answerSnapshotRequests = false
        try c[1].node.proposeConfChange(ConfChange(type: .addLearnerNode, nodeID: 4))
        try c.stabilize()
        #expect(l.confState.learners == [4])
        // The stored snapshot keeps the ConfState as of its own index.
        #expect(try l.storage.snapshot().metadata.confState == ConfState(voters: [1, 2, 3]))
        #expect(try l.storage.initialState().confState == ConfState(voters: [1, 2, 3], learners: [4]))
        c.heal()
        var snaps = 0
        for _ in 0..<30 {
            try c.tickAll()
            try c.stabilize()
            if l.node.status.progress[4]?.state == "snapshot" { snaps += 1; try l.node.reportSnapshot(4, status: .finished) }
        }
        // The leader neither sends a useless snapshot nor stays silent: it asks for a new one.
        #expect(snaps == 0)
        #expect(l.snapshotRequests > 0)
        #expect(c[4].raft.log.committed == 0)
        l.answerSnapshotRequests = true
        for _ in 0..<30 {
            try c.tickAll()
            try c.stabilize()
            if l.node.status.progress[4]?.state == "snapshot" { try l.node.reportSnapshot(4, status: .finished) }
        }
        #expect(c[4].raft.log.committed == l.raft.log.committed)
        #expect(c[4].confState.learners == [4])
    }

    @Test("MemoryStorage: setConfState does not rewrite the snapshot's ConfState")
    func memoryStorageConfStateTiedToSnapshot() throws {
        let s = MemoryStorage(voters: [1])
        try s.append([Entry(term: 1, index: 1), Entry(term: 1, index: 2)])
        try s.createSnapshot(index: 1, confState: nil, data: [])
        s.setConfState(ConfState(voters: [1], learners: [2]))
        #expect(try s.snapshot().metadata.confState == ConfState(voters: [1]))
        #expect(try s.initialState().confState == ConfState(voters: [1], learners: [2]))
        try s.createSnapshot(index: 2, confState: nil, data: [])
        #expect(try s.snapshot().metadata.confState == ConfState(voters: [1], learners: [2]))
    }

    // MARK: 3. A dropped conf change must not stay pending

    @Test("A conf change dropped by the uncommitted-size bound does not block later ones")
    func pendingConfIndexOnlyAfterAppend() throws {
        let c = try Cluster(ids: [1, 2, 3], configure: { $0.maxUncommittedEntriesSizeBytes = 100 })
        try c.campaign(1)
        c.isolate(2)
        c.isolate(3)
        try c[1].node.propose([UInt8](repeating: 1, count: 90))
        #expect(throws: RaftError.self) {
            try c[1].node.proposeConfChange(
                ConfChange(type: .addLearnerNode, nodeID: 4, context: [UInt8](repeating: 0, count: 20)))
        }
        c.heal()
        for _ in 0..<5 { try c.tickAll(); try c.stabilize() }
        #expect(c[1].raft.log.applied == c[1].raft.log.lastIndex)
        try c[1].node.proposeConfChange(ConfChange(type: .addLearnerNode, nodeID: 4))
    }

    // MARK: 4. Pre-vote refusal at term 0

    @Test("A pre-vote refused at term 0 with a non-empty log does not trap")
    func preVoteRefusedAtTermZero() throws {
        let s = MemoryStorage(voters: [1, 2, 3])
        try s.append([Entry(term: 1, index: 1), Entry(term: 1, index: 2)])
        let n = try RawNode(config: cfg(2), storage: s)
        try n.step(Message(type: .preVote, to: 2, from: 1, term: 1, logTerm: 0, index: 0))
        let rd = try n.ready()
        #expect(!rd.allMessages.contains { $0.type == .preVoteResp && !$0.reject })
        #expect(rd.allMessages.allSatisfy { $0.term != 0 })
        try n.advance()
    }

    // MARK: 5. Transfer requests must not reset the check-quorum clock

    @Test("Check quorum: repeated transfer requests do not keep a partitioned leader in office")
    func transferDoesNotResetCheckQuorum() throws {
        let c = try Cluster(ids: [1, 2, 3], checkQuorum: true)
        try c.campaign(1)
        #expect(c[1].raft.role == .leader)
        c.isolate(1)
        let timeout = c[1].config.electionTimeoutTicks
        for t in 0..<(3 * timeout) {
            if t % 2 == 0 { try? c[1].node.transferLeader(to: t % 4 == 0 ? 2 : 3) }
            try c.tick(1)
            try c.stabilize()
        }
        #expect(c[1].raft.role == .follower)
    }

    @Test("Leadership transfer is abandoned after an election timeout of its own")
    func transferTimesOut() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        c.isolate(3)
        try c[1].node.transferLeader(to: 3)
        #expect(c[1].raft.leadTransferee == 3)
        try c.tick(1, c[1].config.electionTimeoutTicks - 1)
        #expect(c[1].raft.leadTransferee == 3)
        try c.tick(1)
        #expect(c[1].raft.leadTransferee == 0)
    }

    // MARK: 6. timeoutNow only from the leader

    @Test("timeoutNow is accepted only from the current leader")
    func timeoutNowOnlyFromLeader() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        let term = c[2].raft.term
        try c[2].node.step(Message(type: .timeoutNow, to: 2, from: 3, term: term))
        #expect(c[2].raft.role == .follower)
        #expect(c[2].raft.term == term)
        try c[2].node.step(Message(type: .timeoutNow, to: 2, from: 1, term: term))
        #expect(c[2].raft.role == .candidate)
        #expect(c[2].raft.term == term + 1)
    }

    // MARK: Found by the extended simulation: single-voter reads

    /// A single voter restarts with a durable commit index (1) below what it had committed and
    /// a learner applied (3) before the crash (the commit index need not be durable). Thesis
    /// §6.4 step 1 holds for a single voter too: no read index before an entry of its term commits.
    @Test("ReadIndex on a single voter waits for an entry of its term (thesis §6.4)")
    func singleVoterReadWaitsForOwnTerm() throws {
        let s = MemoryStorage(voters: [1], learners: [2])
        try s.append((1...3).map { Entry(term: 1, index: $0) })
        s.setHardState(HardState(term: 1, vote: 1, commit: 1))
        let n = try RawNode(config: cfg(1), storage: s)
        try n.campaign()
        #expect(n.status.softState.role == .leader)
        try n.readIndex(bytes("r"))
        let rd = try n.ready()
        #expect(rd.readStates.isEmpty, "read answered at \(rd.readStates.map(\.index)) before committing")
        try s.append(rd.entries)
        if let hs = rd.hardState { s.setHardState(hs) }
        try n.advance()
        let rd2 = try n.ready()
        #expect(rd2.readStates.map(\.index) == [4])
        try n.advance()
    }

    // MARK: 7. Storage compacted past applied

    @Test("Storage compacted past the applied index halts with storageGap")
    func compactedPastAppliedHalts() throws {
        let s = MemoryStorage(voters: [1, 2, 3])
        try s.append((1...5).map { Entry(term: 1, index: $0) })
        s.setHardState(HardState(term: 1, vote: 0, commit: 5))
        let n = try RawNode(config: cfg(1), storage: s)
        #expect(n.status.applied == 0)
        try s.compact(upTo: 3)
        do {
            let rd = try n.ready()
            Issue.record("expected storageGap, got committed \(rd.committedEntries.map(\.index))")
        } catch RaftError.storageGap {
        }
        #expect(throws: RaftError.self) { try n.tick() }
    }
}
