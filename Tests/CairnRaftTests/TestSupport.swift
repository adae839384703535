@testable import CairnRaft

/// One node plus its "disk" (MemoryStorage) and applied state machine (a list of entries).
final class Peer {
    let id: UInt64
    var storage: MemoryStorage
    var node: RawNode
    var config: Config
    /// Normal entries applied, in order.
    var applied: [Entry] = []
    var appliedIndex: UInt64 = 0
    var readStates: [ReadState] = []
    var confState: ConfState
    /// How many Readies carried `snapshotTooOld`, and whether to answer them with a new snapshot.
    var snapshotRequests = 0
    var answerSnapshotRequests = true

    init(id: UInt64, storage: MemoryStorage, config: Config) throws {
        self.id = id
        self.storage = storage
        self.config = config
        node = try RawNode(config: config, storage: storage)
        confState = try storage.initialState().confState
        appliedIndex = try storage.firstIndex() - 1
    }

    var raft: Raft { node.raft }

    /// Handles one Ready per the ordering contract; returns the messages to send.
    @discardableResult
    func handleReady() throws -> [Message] {
        guard node.hasReady() else { return [] }
        let rd = try node.ready()
        if let s = rd.snapshot {
            try storage.applySnapshot(s)
            applied = []  // state machine replaced by the snapshot
            appliedIndex = s.metadata.index
            confState = s.metadata.confState
        }
        try storage.append(rd.entries)
        if let hs = rd.hardState { storage.setHardState(hs) }
        for e in rd.committedEntries {
            appliedIndex = e.index
            switch e.type {
            case .normal:
                if !e.data.isEmpty { applied.append(e) }
            case .confChange, .confChangeV2:
                if let cc = ConfChange(decoding: e.data) {
                    confState = try node.applyConfChange(cc)
                    storage.setConfState(confState)
                }
            }
        }
        readStates.append(contentsOf: rd.readStates)
        if rd.snapshotTooOld { snapshotRequests += 1 }
        if try rd.snapshotTooOld && answerSnapshotRequests && appliedIndex > storage.snapshot().metadata.index {
            try storage.createSnapshot(index: appliedIndex, confState: confState, data: [])
        }
        try node.advance()
        return rd.allMessages
    }
}

extension Ready {
    /// Every message of this Ready (sending all of them after persisting is always correct).
    var allMessages: [Message] { messagesBeforePersist + messagesAfterPersist }
}

/// A small in-memory network for the paper and interaction tests.
final class Cluster {
    var peers: [UInt64: Peer] = [:]
    var inFlight: [Message] = []
    /// Links that drop messages (from, to).
    var cut: Set<[UInt64]> = []
    /// Message types dropped everywhere.
    var dropTypes: Set<MessageType> = []
    var ids: [UInt64] { peers.keys.sorted() }

    init(
        ids: [UInt64], preVote: Bool = false, checkQuorum: Bool = false,
        configure: (inout Config) -> Void = { _ in }
    ) throws {
        for id in ids {
            var c = Config(id: id)
            c.preVote = preVote
            c.checkQuorum = checkQuorum
            c.randomSeed = id
            configure(&c)
            peers[id] = try Peer(id: id, storage: MemoryStorage(voters: ids), config: c)
        }
    }

    func addPeer(id: UInt64, voters: [UInt64], learners: [UInt64] = [], configure: (inout Config) -> Void = { _ in }) throws {
        var c = Config(id: id)
        c.preVote = false
        c.checkQuorum = false
        c.randomSeed = id
        configure(&c)
        peers[id] = try Peer(id: id, storage: MemoryStorage(voters: voters, learners: learners), config: c)
    }

    subscript(_ id: UInt64) -> Peer { peers[id]! }

    func isolate(_ id: UInt64) {
        for o in ids where o != id {
            cut.insert([id, o])
            cut.insert([o, id])
        }
    }

    func heal() { cut = [] }

    /// Collects each node's Ready (persisting and applying) into the in-flight queue.
    func collect() throws {
        for id in ids { inFlight.append(contentsOf: try peers[id]!.handleReady()) }
    }

    /// Delivers queued messages once (responses are queued, not delivered).
    func deliverOnce() throws {
        let ms = inFlight
        inFlight = []
        for m in ms {
            if cut.contains([m.from, m.to]) || dropTypes.contains(m.type) { continue }
            guard let p = peers[m.to] else { continue }
            try p.node.step(m)
        }
    }

    /// Runs until no node has anything to do.
    func stabilize(maxRounds: Int = 1000) throws {
        for _ in 0..<maxRounds {
            try collect()
            if inFlight.isEmpty && !ids.contains(where: { peers[$0]!.node.hasReady() }) { return }
            try deliverOnce()
        }
    }

    func tick(_ id: UInt64, _ n: Int = 1) throws {
        for _ in 0..<n { try peers[id]!.node.tick() }
    }

    func tickAll(_ n: Int = 1) throws {
        for _ in 0..<n { for id in ids { try peers[id]!.node.tick() } }
    }

    func campaign(_ id: UInt64) throws {
        try peers[id]!.node.campaign()
        try stabilize()
    }

    func leader() -> UInt64? {
        ids.first { peers[$0]!.raft.role == .leader }
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A config with the classic paper behaviour (no pre-vote, no check-quorum).
func cfg(_ id: UInt64) -> Config {
    var c = Config(id: id)
    c.preVote = false
    c.checkQuorum = false
    c.randomSeed = id
    return c
}

extension Cluster {
    /// Ticks everyone one tick at a time, delivering in between, until a leader exists.
    @discardableResult
    func electLeader(maxTicks: Int = 1000) throws -> UInt64? {
        for _ in 0..<maxTicks {
            if let l = leader() { return l }
            try tickAll()
            try stabilize()
        }
        return leader()
    }
}
