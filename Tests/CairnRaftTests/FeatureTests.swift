import Testing
@testable import CairnRaft

@Suite("Pre-vote, check-quorum, reads, transfer, flow control, snapshots")
struct FeatureTests {
    @Test("Pre-vote: a partitioned node that fell behind cannot disrupt the leader when it rejoins (thesis §9.6)")
    func preVoteRejoin() throws {
        let c = try Cluster(ids: [1, 2, 3], preVote: true, checkQuorum: false)
        try c.campaign(1)
        let term = c[1].raft.term
        c.isolate(3)
        try c[1].node.propose(bytes("while away"))
        for _ in 0..<100 {
            try c.tick(3)
            try c.stabilize()
        }
        #expect(c[3].raft.term == term, "pre-vote keeps the isolated node's term")
        #expect(c[3].raft.role == .preCandidate)
        c.heal()
        for _ in 0..<30 {
            try c.tick(3)
            try c.stabilize()
        }
        try c.tick(1)
        try c.stabilize()
        #expect(c[1].raft.role == .leader)
        #expect(c[1].raft.term == term)
        #expect(c[3].raft.lead == 1)
    }

    @Test("Pre-vote + check-quorum: even an up-to-date rejoining node does not disrupt the leader")
    func preVoteCheckQuorumRejoin() throws {
        let c = try Cluster(ids: [1, 2, 3], preVote: true, checkQuorum: true)
        try c.campaign(1)
        let term = c[1].raft.term
        c.isolate(3)
        for _ in 0..<100 {
            try c.tick(3)
            try c.stabilize()
        }
        c.heal()
        for _ in 0..<30 {
            try c.tickAll()
            try c.stabilize()
        }
        #expect(c[1].raft.role == .leader)
        #expect(c[1].raft.term == term)
        #expect(c[3].raft.lead == 1)
    }

    @Test("Without pre-vote the same rejoin bumps the term (control for the tests above)")
    func noPreVoteDisrupts() throws {
        let c = try Cluster(ids: [1, 2, 3], preVote: false, checkQuorum: false)
        try c.campaign(1)
        let term = c[1].raft.term
        c.isolate(3)
        for _ in 0..<100 {
            try c.tick(3)
            try c.stabilize()
        }
        #expect(c[3].raft.term > term)
        c.heal()
        for _ in 0..<30 {
            try c.tick(3)
            try c.stabilize()
        }
        #expect(c[1].raft.term > term)
    }

    @Test("Check-quorum: a leader that loses contact with a quorum steps down (§6.2 of the thesis)")
    func checkQuorumStepDown() throws {
        let c = try Cluster(ids: [1, 2, 3], preVote: true, checkQuorum: true)
        try c.campaign(1)
        #expect(c[1].raft.role == .leader)
        c.isolate(1)
        for _ in 0..<(2 * c[1].config.electionTimeoutTicks + 1) {
            try c.tick(1)
            try c.stabilize()
        }
        #expect(c[1].raft.role == .follower)
    }

    @Test("Check-quorum lease: followers ignore vote requests while they hear from a leader")
    func leaseIgnoresVotes() throws {
        let c = try Cluster(ids: [1, 2, 3], preVote: false, checkQuorum: true)
        try c.campaign(1)
        let term = c[1].raft.term
        try c[2].node.step(Message(type: .vote, to: 2, from: 3, term: term + 5, logTerm: 100, index: 100))
        #expect(c[2].raft.term == term)
        #expect(c[2].raft.lead == 1)
    }

    @Test("ReadIndex: reads issued together share one heartbeat round and return the commit index")
    func readIndexBatched() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        try c[1].node.propose(bytes("a"))
        try c.stabilize()
        for k in 0..<5 { try c[1].node.readIndex([UInt8(k)]) }
        let msgs = try c[1].handleReady()
        let hbs = msgs.filter { $0.type == .heartbeat }
        #expect(hbs.count == 2, "one heartbeat per follower for five reads")
        #expect(c[1].readStates.isEmpty, "not answered before the quorum confirms")
        c.inFlight = msgs
        try c.stabilize()
        #expect(c[1].readStates.map(\.requestContext) == (0..<5).map { [UInt8($0)] })
        #expect(c[1].readStates.allSatisfy { $0.index == c[1].raft.log.committed })
    }

    @Test("ReadIndex: a leader partitioned from the quorum never answers")
    func readIndexNeedsQuorum() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        c.isolate(1)
        try c[1].node.readIndex(bytes("r"))
        try c.stabilize()
        #expect(c[1].readStates.isEmpty)
    }

    @Test("ReadIndex: a follower forwards the read to the leader and gets the leader's commit index")
    func readIndexFromFollower() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        try c[1].node.propose(bytes("a"))
        try c.stabilize()
        try c[2].node.readIndex(bytes("f"))
        try c.stabilize()
        #expect(c[2].readStates == [ReadState(index: c[1].raft.log.committed, requestContext: bytes("f"))])
    }

    @Test("ReadIndex: a new leader answers only after committing an entry of its term (thesis §6.4)")
    func readIndexWaitsForTermCommit() throws {
        let c = try Cluster(ids: [1, 2, 3])
        c.dropTypes = [.appResp]
        try c.campaign(1)
        try c[1].node.readIndex(bytes("early"))
        try c.stabilize()
        #expect(c[1].readStates.isEmpty)
        c.dropTypes = []
        try c.tick(1)
        try c.stabilize()
        #expect(c[1].readStates.map(\.requestContext) == [bytes("early")])
    }

    @Test("Lease-based reads answer at once (opt-in; needs check-quorum and bounded clock drift)")
    func leaseRead() throws {
        let c = try Cluster(ids: [1, 2, 3], checkQuorum: true) { $0.readOnlyOption = .leaseBased }
        try c.campaign(1)
        try c[1].node.readIndex(bytes("l"))
        _ = try c[1].handleReady()
        #expect(c[1].readStates.count == 1)
        var bad = Config(id: 1)
        bad.checkQuorum = false
        bad.readOnlyOption = .leaseBased
        #expect(throws: RaftError.self) { try RawNode(config: bad, storage: MemoryStorage(voters: [1])) }
    }

    @Test("Leadership transfer to an up-to-date follower (thesis §3.10)")
    func transferUpToDate() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        try c[1].node.transferLeader(to: 3)
        try c.stabilize()
        #expect(c[3].raft.role == .leader)
        #expect(c[1].raft.role == .follower)
    }

    @Test("Leadership transfer to a lagging follower: catch up first; proposals are dropped meanwhile")
    func transferLagging() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        c.isolate(3)
        try c[1].node.propose(bytes("a"))
        try c.stabilize()
        try c[1].node.transferLeader(to: 3)
        try c.stabilize()
        #expect(throws: RaftError.self) { try c[1].node.propose(bytes("during")) }
        c.heal()
        try c.tick(1)
        try c.stabilize()
        #expect(c[3].raft.role == .leader)
        #expect(c[3].applied.map(\.data) == [bytes("a")])
    }

    @Test("Leadership transfer is abandoned after an election timeout")
    func transferTimeout() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        c.isolate(3)
        try c[1].node.transferLeader(to: 3)
        #expect(c[1].raft.leadTransferee == 3)
        try c.tick(1, c[1].config.electionTimeoutTicks)
        #expect(c[1].raft.leadTransferee == 0)
        try c[1].node.propose(bytes("ok"))
    }

    @Test("Flow control: at most maxInflightMessages appends in flight; probe state sends one")
    func inflightWindow() throws {
        let c = try Cluster(ids: [1, 2]) { $0.maxInflightMessages = 3; $0.maxSizePerMessageBytes = 1 }
        try c.campaign(1)
        #expect(c[1].raft.tracker.progress[2]?.state == .replicate)
        c.isolate(2)
        for k in 0..<10 {
            try c[1].node.propose([UInt8(k)])
        }
        var apps = 0
        for _ in 0..<5 {
            apps += try c[1].handleReady().filter { $0.type == .app && !$0.entries.isEmpty }.count
        }
        #expect(apps == 3, "window of 3 messages")
        #expect(c[1].raft.tracker.progress[2]!.isPaused)
        try c[1].node.reportUnreachable(2)
        #expect(c[1].raft.tracker.progress[2]?.state == .probe)
        c.heal()
        try c.tick(1)
        try c.stabilize()
        #expect(c[2].applied.count == 10)
    }

    @Test("Snapshots: a follower behind the leader's compacted log receives and installs a snapshot")
    func snapshotInstall() throws {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        c.isolate(3)
        for k in 0..<20 { try c[1].node.propose([UInt8(k)]) }
        try c.stabilize()
        let s1 = c[1].storage
        let applied = c[1].appliedIndex
        try s1.createSnapshot(index: applied, confState: c[1].confState, data: bytes("state"))
        try s1.compact(upTo: applied)
        c.heal()
        try c.tick(1)
        try c.stabilize()
        #expect(try c[3].storage.snapshot().data == bytes("state"))
        #expect(c[3].raft.log.committed == c[1].raft.log.committed)
        try c[1].node.propose(bytes("after"))
        try c.stabilize()
        #expect(c[3].applied.map(\.data) == [bytes("after")])
        #expect(c[1].raft.tracker.progress[3]?.state == .replicate)
    }

    @Test("Proposals are dropped and reported when no leader is known or forwarding is disabled")
    func droppedProposals() throws {
        let c = try Cluster(ids: [1, 2, 3])
        #expect(throws: RaftError.self) { try c[2].node.propose(bytes("x")) }
        try c.campaign(1)
        try c[2].node.propose(bytes("fwd"))
        try c.stabilize()
        #expect(c[1].applied.map(\.data) == [bytes("fwd")], "followers forward proposals")
        let d = try Cluster(ids: [1, 2, 3]) { $0.disableProposalForwarding = true }
        try d.campaign(1)
        #expect(throws: RaftError.self) { try d[2].node.propose(bytes("x")) }
    }

    @Test("Bound: uncommitted proposals beyond maxUncommittedEntriesSizeBytes are dropped")
    func uncommittedBound() throws {
        let c = try Cluster(ids: [1, 2, 3]) { $0.maxUncommittedEntriesSizeBytes = 100 }
        try c.campaign(1)
        c.isolate(1)
        var accepted = 0
        var dropped = 0
        for _ in 0..<20 {
            do {
                try c[1].node.propose([UInt8](repeating: 1, count: 30))
                accepted += 1
            } catch RaftError.proposalDropped { dropped += 1 }
        }
        #expect(accepted == 3 && dropped == 17)
        c.heal()
        try c.tick(1)
        try c.stabilize()
        try c[1].node.propose([UInt8](repeating: 1, count: 30))  // room again once applied
    }

    @Test("Bound: committed entries per Ready respect maxCommittedSizePerReadyBytes")
    func committedPerReadyBound() throws {
        let c = try Cluster(ids: [1]) { $0.maxCommittedSizePerReadyBytes = 100 }
        try c.campaign(1)
        for _ in 0..<10 { try c[1].node.propose([UInt8](repeating: 7, count: 40)) }
        var maxBatch = 0
        for _ in 0..<20 {
            guard c[1].node.hasReady() else { break }
            let rd = try c[1].node.ready()
            try c[1].storage.append(rd.entries)
            if let hs = rd.hardState { c[1].storage.setHardState(hs) }
            maxBatch = max(maxBatch, rd.committedEntries.filter { !$0.data.isEmpty }.count)
            try c[1].node.advance()
        }
        #expect(maxBatch == 1, "64-byte entries with a 100-byte bound: one per Ready")
        #expect(c[1].raft.log.applied == 11)
    }

    @Test("Single-node cluster commits after its own log write")
    func singleNode() throws {
        let c = try Cluster(ids: [1])
        try c.campaign(1)
        try c[1].node.propose(bytes("solo"))
        try c.stabilize()
        #expect(c[1].applied.map(\.data) == [bytes("solo")])
        try c[1].node.readIndex(bytes("r"))
        _ = try c[1].handleReady()
        #expect(c[1].readStates.count == 1)
    }
}
