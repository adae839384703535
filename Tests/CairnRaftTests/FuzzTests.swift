import Testing
@testable import CairnRaft

/// Random and extreme message fields thrown at nodes in every role: the node must never trap,
/// and its own invariants (commit <= last index, applied <= commit) must hold afterwards.
@Suite("Fuzz: bad input never crashes")
struct FuzzTests {
    static func value(_ rng: inout SplitMix64, around base: UInt64) -> UInt64 {
        switch rng.next() % 8 {
        case 0: return 0
        case 1: return UInt64.max
        case 2: return UInt64.max - 1
        case 3: return rng.next() % 2 == 0 ? UInt64.max / 2 : RawNode.maxSaneValue - 1
        case 4: return base &+ (rng.next() % 3)
        case 5: return base > 0 ? base - 1 : 0
        default: return rng.next() % 8
        }
    }

    static let types: [MessageType] = [.prop, .app, .appResp, .vote, .voteResp, .snap, .heartbeat, .heartbeatResp,
                                       .transferLeader, .timeoutNow, .readIndex, .readIndexResp, .preVote, .preVoteResp]

    @Test("Random messages to leaders, followers and candidates never trap", arguments: 0..<4)
    func fuzz(seed: UInt64) throws {
        var rng = SplitMix64(seed: 1000 + seed)
        for _ in 0..<300 {
            let c = try Cluster(ids: [1, 2, 3], preVote: rng.next() % 2 == 0, checkQuorum: rng.next() % 2 == 0)
            try c.campaign(1)
            try c[1].node.propose(bytes("a"))
            try c.stabilize()
            if rng.next() % 3 == 0 { try c[3].node.campaign() }
            for _ in 0..<20 {
                let target = UInt64(1 + rng.next() % 3)
                let n = c[target]
                let t = n.raft.term
                let li = n.raft.log.lastIndex
                var m = Message(type: Self.types[Int(rng.next() % UInt64(Self.types.count))])
                m.to = target
                m.from = [0, 1, 2, 3, 99, UInt64.max][Int(rng.next() % 6)]
                m.term = Self.value(&rng, around: t)
                m.logTerm = Self.value(&rng, around: t)
                m.index = Self.value(&rng, around: li)
                m.commit = Self.value(&rng, around: li)
                m.reject = rng.next() % 2 == 0
                m.rejectHint = Self.value(&rng, around: li)
                let ne = Int(rng.next() % 3)
                for k in 0..<ne {
                    let idx = rng.next() % 4 == 0 ? Self.value(&rng, around: li) : m.index &+ 1 &+ UInt64(k)
                    m.entries.append(Entry(term: Self.value(&rng, around: t), index: idx,
                                           type: rng.next() % 5 == 0 ? .confChange : .normal, data: [UInt8(k)]))
                }
                if m.type == .snap && rng.next() % 2 == 0 {
                    m.snapshot = Snapshot(data: [1], metadata: SnapshotMetadata(
                        confState: ConfState(voters: [1, 2, 3]), index: Self.value(&rng, around: li),
                        term: Self.value(&rng, around: t)))
                }
                do { try n.node.step(m) } catch RaftError.proposalDropped {}
                let r = n.raft
                #expect(r.log.committed <= r.log.lastIndex)
                #expect(r.log.applied <= r.log.committed)
                if rng.next() % 4 == 0 { try c.tickAll() }
                if rng.next() % 3 == 0 { _ = try? c.stabilize(maxRounds: 50) }
            }
        }
    }
}
