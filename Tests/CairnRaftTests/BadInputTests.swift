import Testing
@testable import CairnRaft

/// Wraps a MemoryStorage and drops one index from `entries` answers (a corrupted log).
final class GappyStorage: Storage {
    let inner: MemoryStorage
    let missing: UInt64
    init(_ inner: MemoryStorage, missing: UInt64) {
        self.inner = inner
        self.missing = missing
    }
    func initialState() throws -> (hardState: HardState, confState: ConfState) { try inner.initialState() }
    func entries(from lo: UInt64, to hi: UInt64, maxSizeBytes: UInt64) throws -> [Entry] {
        try inner.entries(from: lo, to: hi, maxSizeBytes: maxSizeBytes).filter { $0.index != missing }
    }
    func term(at index: UInt64) throws -> UInt64 { try inner.term(at: index) }
    func firstIndex() throws -> UInt64 { try inner.firstIndex() }
    func lastIndex() throws -> UInt64 { try inner.lastIndex() }
    func snapshot() throws -> Snapshot { try inner.snapshot() }
}

@Suite("Bad input never crashes")
struct BadInputTests {
    func leader() throws -> Cluster {
        let c = try Cluster(ids: [1, 2, 3])
        try c.campaign(1)
        try c[1].node.propose(bytes("a"))
        try c.stabilize()
        return c
    }

    @Test("Messages from unknown members are ignored")
    func unknownMembers() throws {
        let c = try leader()
        let n = c[1].node
        let t = c[1].raft.term
        for type in [MessageType.appResp, .heartbeatResp, .transferLeader, .readIndex, .snap, .app, .timeoutNow] {
            try n.step(Message(type: type, to: 1, from: 99, term: t, index: 12345, reject: true))
        }
        #expect(c[1].raft.role == .leader)
        #expect(c[1].raft.tracker.progress[99] == nil)
    }

    @Test("Stale-term messages are ignored (or answered with our term)")
    func staleTerms() throws {
        let c = try leader()
        let before = c[2].raft.log.lastIndex
        try c[2].node.step(Message(type: .app, to: 2, from: 3, term: 0 + 1 - 1 + 0, logTerm: 0, index: 0,
                                   entries: [Entry(term: 0, index: 1)]))
        try c[2].node.step(Message(type: .vote, to: 2, from: 3, term: c[2].raft.term - 1 + 0, logTerm: 9, index: 99))
        #expect(c[2].raft.log.lastIndex == before)
        #expect(c[2].raft.lead == 1)
    }

    @Test("Out-of-range indexes are rejected per protocol")
    func outOfRange() throws {
        let c = try leader()
        let t = c[1].raft.term
        // Append far beyond the follower's log: rejected with a hint.
        try c[2].node.step(Message(type: .app, to: 2, from: 1, term: t, logTerm: t, index: 1_000_000,
                                   entries: [Entry(term: t, index: 1_000_001)]))
        let r = try c[2].handleReady().first { $0.type == .appResp }
        #expect(r?.reject == true)
        // Non-contiguous entries are refused.
        try c[2].node.step(Message(type: .app, to: 2, from: 1, term: t, logTerm: t, index: 2,
                                   entries: [Entry(term: t, index: 3), Entry(term: t, index: 7)]))
        #expect(c[2].raft.log.lastIndex == 2)
        // An ack for an index the leader never had is ignored.
        try c[1].node.step(Message(type: .appResp, to: 1, from: 2, term: t, index: UInt64.max - 1))
        #expect(c[1].raft.tracker.progress[2]!.match <= c[1].raft.log.lastIndex)
        // Rejection with absurd hints.
        try c[1].node.step(Message(type: .appResp, to: 1, from: 2, term: t, logTerm: UInt64.max, index: 0, reject: true,
                                   rejectHint: UInt64.max))
        try c[1].node.step(Message(type: .heartbeat, to: 1, from: 2, term: t, commit: UInt64.max))
        try c[2].node.step(Message(type: .heartbeat, to: 2, from: 1, term: t, commit: UInt64.max))
        #expect(c[2].raft.log.committed <= c[2].raft.log.lastIndex)
        // Snapshot message without a snapshot, and malformed read requests.
        try c[2].node.step(Message(type: .snap, to: 2, from: 1, term: t))
        try c[1].node.step(Message(type: .readIndex, to: 1, from: 2, term: t))
        try c[2].node.step(Message(type: .readIndexResp, to: 2, from: 1, term: t))
        try c.tick(1)
        try c.stabilize()
        try c[1].node.propose(bytes("b"))
        try c.stabilize()
        #expect(c[2].applied.map(\.data) == [bytes("a"), bytes("b")])
    }

    @Test("Local-only message types from the network are refused with an error")
    func localFromNetwork() throws {
        let c = try leader()
        for type in [MessageType.hup, .beat, .checkQuorum, .unreachable, .snapStatus] {
            #expect(throws: RaftError.localMessageFromNetwork(type)) {
                try c[1].node.step(Message(type: type, to: 1, from: 2, term: 1))
            }
        }
    }

    @Test("Malformed conf changes are dropped, not applied")
    func malformedConfChange() throws {
        let c = try leader()
        #expect(throws: RaftError.self) {
            try c[1].node.proposeConfChange(ConfChange(type: .removeNode, nodeID: 42))
        }
        #expect(throws: RaftError.self) {
            try c[1].node.proposeConfChange(ConfChange(type: .addNode, nodeID: 0))
        }
        #expect(ConfChange(decoding: [9, 1, 2]) == nil)
    }

    @Test("A gap in the Storage answer stops the node with RaftError.storageGap")
    func storageGap() throws {
        let mem = MemoryStorage(voters: [1])
        try mem.append((1...5).map { Entry(term: 1, index: $0, data: [UInt8($0)]) })
        mem.setHardState(HardState(term: 1, vote: 1, commit: 5))
        let n = try RawNode(config: cfg(1), storage: GappyStorage(mem, missing: 3))
        var caught: RaftError?
        do { _ = try n.ready() } catch let e as RaftError { caught = e }
        guard case .storageGap = caught else {
            Issue.record("expected storageGap, got \(String(describing: caught))")
            return
        }
        #expect(!n.hasReady())
        #expect(throws: RaftError.self) { try n.tick() }
        #expect(throws: RaftError.self) { try n.propose([1]) }
    }

    @Test("Storage whose bounds are inconsistent is refused at start")
    func inconsistentHardState() throws {
        let mem = MemoryStorage(voters: [1])
        mem.setHardState(HardState(term: 1, vote: 1, commit: 10))
        #expect(throws: RaftError.self) { try RawNode(config: cfg(1), storage: mem) }
    }
}
