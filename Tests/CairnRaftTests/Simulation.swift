import Foundation
import Testing
@testable import CairnRaft

/// Deterministic simulation of a faulty cluster. Everything (timeouts, faults, workload) derives
/// from one seed, so a failing seed replays exactly:
///   CAIRN_RAFT_SIM_SEED=<seed> swift test --filter Simulation
struct SimFailure: Error, CustomStringConvertible {
    let seed: UInt64
    let round: Int
    let what: String
    var description: String {
        "simulation seed \(seed) failed at round \(round): \(what)\n"
            + "replay: CAIRN_RAFT_SIM_SEED=\(seed) swift test -c release -Xswiftc -enable-testing --filter Simulation"
    }
}

final class SimNode {
    let id: UInt64
    let storage: MemoryStorage
    var node: RawNode?
    var config: Config
    /// Volatile state machine: last applied index and a hash chain over applied entries.
    var appliedIndex: UInt64 = 0
    var smHash: UInt64 = 0
    var confState: ConfState
    var removed = false
    /// A leader Ready whose messages were sent but whose log write is not yet durable.
    var pending: Ready?

    init(id: UInt64, bootstrap: ConfState, config: Config) throws {
        self.id = id
        self.config = config
        storage = MemoryStorage(voters: bootstrap.voters, learners: bootstrap.learners)
        confState = bootstrap
        try start()
    }

    var alive: Bool { node != nil && !removed }

    func start() throws {
        let snap = try storage.snapshot()
        var c = config
        c.applied = snap.metadata.index  // the state machine restarts from the snapshot
        node = try RawNode(config: c, storage: storage)
        appliedIndex = snap.metadata.index
        smHash = snap.data.count == 8 ? snap.data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } : 0
        confState = try storage.initialState().confState
    }

    func crash() {
        node = nil
        pending = nil
    }
}

struct InFlightMessage {
    var deliverAt: Int
    var message: Message
}

final class Simulation {
    let seed: UInt64
    var rng: SplitMix64
    var nodes: [UInt64: SimNode] = [:]
    var net: [InFlightMessage] = []
    var round = 0
    var nextSpareID: UInt64
    let bootstrap: ConfState
    /// Links cut by the current partition (from, to).
    var cut: Set<[UInt64]> = []
    var partitionHealsAt = 0
    var dropPercent: UInt64
    var dupPercent: UInt64
    var trace: Bool
    /// Cluster-wide options (mixing them across members can livelock, as in etcd).
    var preVote = true
    var checkQuorum = true

    // Checker state.
    var leaderOfTerm: [UInt64: UInt64] = [:]
    /// Globally applied entries: index -> (term, hash after applying).
    var appliedTerm: [UInt64] = [0]
    var appliedHash: [UInt64] = [0]
    var entryData: [[UInt64]: [UInt8]] = [:]
    var pendingReads: [[UInt8]: UInt64] = [:]
    var readCounter: UInt64 = 0
    var proposalCounter: UInt64 = 0
    var stats = (proposals: 0, confChanges: 0, transfers: 0, crashes: 0, reads: 0, snapshots: 0, readsAnswered: 0, readsDropped: 0, snapsDelivered: 0, leaderWritesDeferred: 0, snapshotsRequested: 0)

    init(seed: UInt64, trace: Bool = false) throws {
        self.seed = seed
        self.trace = trace
        rng = SplitMix64(seed: seed)
        // 3 or 5 voters, or a single voter with one or two learners (a single voter wins inside
        // tick() without a vote round, so its term, vote, entries and appends share one Ready).
        let shape = rng.next() % 4
        let n: UInt64
        if shape == 0 {
            n = 2 + rng.next() % 2
            bootstrap = ConfState(voters: [1], learners: Array(2...n))
        } else {
            n = UInt64(3 + 2 * (shape % 2))
            bootstrap = ConfState(voters: Array(1...n))
        }
        nextSpareID = n + 1
        dropPercent = rng.next() % 10
        dupPercent = rng.next() % 6
        preVote = rng.next() % 4 != 0
        checkQuorum = rng.next() % 4 != 0
        for id in 1...n { nodes[id] = try SimNode(id: id, bootstrap: bootstrap, config: makeConfig(id)) }
    }

    func chance(_ pct: UInt64) -> Bool { rng.next() % 100 < pct }
    func chancePerMille(_ pm: UInt64) -> Bool { rng.next() % 1000 < pm }
    func pick<T>(_ xs: [T]) -> T? { xs.isEmpty ? nil : xs[Int(rng.next() % UInt64(xs.count))] }

    func makeConfig(_ id: UInt64) -> Config {
        var c = Config(id: id)
        c.electionTimeoutTicks = 10
        c.heartbeatIntervalTicks = 1 + Int(rng.next() % 3)
        c.preVote = preVote
        c.checkQuorum = checkQuorum
        c.maxInflightMessages = 1 + Int(rng.next() % 8)
        c.maxSizePerMessageBytes = 40 + rng.next() % 200
        c.maxInflightBytes = rng.next() % 2 == 0 ? 0 : 100 + rng.next() % 500
        c.maxCommittedSizePerReadyBytes = 100 + rng.next() % 400
        c.maxUncommittedEntriesSizeBytes = 2000
        c.randomSeed = rng.next()
        return c
    }

    var ids: [UInt64] { nodes.keys.sorted() }
    var live: [SimNode] { ids.compactMap { nodes[$0]!.alive ? nodes[$0]! : nil } }

    func log(_ s: @autoclosure () -> String) { if trace { print("[\(round)] \(s())") } }

    func fail(_ what: String) -> SimFailure { SimFailure(seed: seed, round: round, what: what) }

    func leader() -> SimNode? {
        live.filter { $0.node!.raft.role == .leader }.max { $0.node!.raft.term < $1.node!.raft.term }
    }

    // MARK: Ready handling

    func handleReady(_ n: SimNode, faults: Bool) throws {
        guard let node = n.node else { return }
        if let rd = n.pending {
            // A leader Ready whose messages already left: its log write is still in progress
            // (it may take several rounds), may be lost in a crash, or completes now.
            if faults && chance(60) { return }
            if faults && chancePerMille(20) {
                log("crash leader \(n.id) after sending, before its log write completed")
                n.crash()
                stats.crashes += 1
                return
            }
            n.pending = nil
            try finishReady(n, node, rd, sent: true, faults: faults)
            return
        }
        guard node.hasReady() else { return }
        let rd = try node.ready()
        if faults && chancePerMille(2) {
            // Crash before anything of this Ready became durable.
            log("crash \(n.id) before persisting")
            n.crash()
            stats.crashes += 1
            return
        }
        // `messagesBeforePersist` may leave in parallel with the log write (Ready contract):
        // sometimes send them now and persist only after a later delivery round, so follower
        // acks arrive before the leader's own write is durable; sometimes crash in between.
        if faults && !rd.messagesBeforePersist.isEmpty && chance(50) {
            // Cross-check the library: early messages only when term and vote are durable.
            let durable = n.storage.hardState
            if let hs = rd.hardState, hs.term != durable.term || hs.vote != durable.vote {
                throw fail("node \(n.id): messages before persisting a term/vote change \(durable) -> \(hs)")
            }
            if rd.snapshot != nil { throw fail("node \(n.id): messages before persisting a snapshot") }
            for m in rd.messagesBeforePersist { send(m, faults: faults) }
            n.pending = rd
            stats.leaderWritesDeferred += 1
            return
        }
        try finishReady(n, node, rd, sent: false, faults: faults)
    }

    func finishReady(_ n: SimNode, _ node: RawNode, _ rd: Ready, sent: Bool, faults: Bool) throws {
        if let s = rd.snapshot {
            let old = try n.storage.snapshot().metadata.index
            log("node \(n.id) installs snapshot \(s.metadata.index) over \(old) applied \(n.appliedIndex)")
            try n.storage.applySnapshot(s)
        }
        try n.storage.append(rd.entries)
        if let hs = rd.hardState { n.storage.setHardState(hs) }
        if faults && chancePerMille(2) {
            log("crash \(n.id) after persisting, before sending")
            n.crash()
            stats.crashes += 1
            return
        }
        if !sent { for m in rd.messagesBeforePersist { send(m, faults: faults) } }
        for m in rd.messagesAfterPersist { send(m, faults: faults) }
        if let s = rd.snapshot {
            let h = s.data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            guard Int(s.metadata.index) < appliedHash.count, appliedHash[Int(s.metadata.index)] == h else {
                throw fail("node \(n.id) installed snapshot \(s.metadata.index) with state not matching the applied history")
            }
            n.appliedIndex = s.metadata.index
            n.smHash = h
            n.confState = s.metadata.confState
        }
        for e in rd.committedEntries {
            try apply(n, e)
        }
        for rs in rd.readStates {
            stats.readsAnswered += 1
            if let floor = pendingReads.removeValue(forKey: rs.requestContext), rs.index < floor {
                throw fail("read index \(rs.index) below an index \(floor) committed before the read began")
            }
        }
        try node.advance()
        if !n.alive { return }
        // Compaction: keep the log short so snapshots get exercised.
        let first = try n.storage.firstIndex()
        let snapIndex = try n.storage.snapshot().metadata.index
        if rd.snapshotTooOld && n.appliedIndex > snapIndex {
            // The leader cannot catch up a member added after our latest snapshot: take a new one.
            var d = [UInt8](repeating: 0, count: 8)
            withUnsafeBytes(of: n.smHash) { d = Array($0) }
            try n.storage.createSnapshot(index: n.appliedIndex, confState: n.confState, data: d)
            stats.snapshotsRequested += 1
        } else if n.appliedIndex > first + 15 && n.appliedIndex > snapIndex && chance(30) {
            var d = [UInt8](repeating: 0, count: 8)
            withUnsafeBytes(of: n.smHash) { d = Array($0) }
            try n.storage.createSnapshot(index: n.appliedIndex, confState: n.confState, data: d)
            try n.storage.compact(upTo: n.appliedIndex - min(n.appliedIndex - first, 3))
            stats.snapshots += 1
        }
    }

    func apply(_ n: SimNode, _ e: Entry) throws {
        guard e.index == n.appliedIndex + 1 else {
            throw fail("node \(n.id) applied index \(e.index) after \(n.appliedIndex)")
        }
        // Only durable entries may be applied (step 3 of the contract comes after step 1).
        guard (try? n.storage.term(at: e.index)) == e.term else {
            throw fail("node \(n.id) applied (\(e.index), term \(e.term)) which is not durable in its storage")
        }
        var h = n.smHash &* 0x100_0000_01B3
        h ^= e.term &+ UInt64(e.data.count) &* 31
        for b in e.data { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        let i = Int(e.index)
        if i < appliedTerm.count {
            if appliedTerm[i] != e.term || appliedHash[i] != h {
                throw fail("state machine safety: node \(n.id) applied (\(e.index), term \(e.term)) but term \(appliedTerm[i]) was applied before")
            }
        } else {
            appliedTerm.append(e.term)
            appliedHash.append(h)
        }
        n.appliedIndex = e.index
        n.smHash = h
        if e.type == .confChange, let cc = ConfChange(decoding: e.data), let node = n.node {
            n.confState = try node.applyConfChange(cc)
            n.storage.setConfState(n.confState)
            log("node \(n.id) applied \(cc.type) \(cc.nodeID) -> \(n.confState)")
            if cc.type == .removeNode, let r = nodes[cc.nodeID], node.raft.role == .leader || cc.nodeID == n.id {
                // The server shuts down a member once its removal is applied.
                if !r.removed { log("node \(cc.nodeID) removed") }
                r.removed = true
            }
        }
    }

    func send(_ m: Message, faults: Bool) {
        if faults && chance(dropPercent) {
            dropped(m)
            return
        }
        let delay = faults ? Int(rng.next() % 4) : 0
        net.append(InFlightMessage(deliverAt: round + delay, message: m))
        if faults && chance(dupPercent) {
            net.append(InFlightMessage(deliverAt: round + Int(rng.next() % 6), message: m))
        }
    }

    func dropped(_ m: Message) {
        if m.type == .snap, let s = nodes[m.from], let node = s.node { try? node.reportSnapshot(m.to, status: .failed) }
    }

    func deliver() throws {
        var keep: [InFlightMessage] = []
        var due: [Message] = []
        for f in net {
            if f.deliverAt <= round { due.append(f.message) } else { keep.append(f) }
        }
        net = keep
        // Reorder within the batch.
        if due.count > 1 {
            for i in stride(from: due.count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                due.swapAt(i, j)
            }
        }
        for m in due {
            guard let dst = nodes[m.to], dst.alive, !cut.contains([m.from, m.to]) else {
                dropped(m)
                continue
            }
            try dst.node!.step(m)
            if m.type == .snap { stats.snapsDelivered += 1 }
            if m.type == .snap, let s = nodes[m.from], let node = s.node { try node.reportSnapshot(m.to, status: .finished) }
        }
    }

    func describe() -> String {
        var out = ""
        for id in ids {
            let n = nodes[id]!
            guard let node = n.node else { out += "  \(id): down removed=\(n.removed)\n"; continue }
            let r = node.raft
            out += "  \(id): \(r.role) term \(r.term) lead \(r.lead) first \(r.log.firstIndex) last \(r.log.lastIndex) commit \(r.log.committed) applied \(r.log.applied)/\(n.appliedIndex) conf \(r.tracker.voters)/\(r.tracker.learners) removed=\(n.removed)\n"
            if r.role == .leader {
                for (k, p) in r.tracker.progress.sorted(by: { $0.key < $1.key }) {
                    out += "     pr \(k): match \(p.match) next \(p.next) \(p.state) paused \(p.isPaused) pending \(p.pendingSnapshot) active \(p.recentActive) inflight \(p.inflights.count)\n"
                }
            }
        }
        return out
    }

    // MARK: Checkers

    func checkSafety(full: Bool) throws {
        for n in live {
            let r = n.node!.raft
            if r.role == .leader {
                if let other = leaderOfTerm[r.term], other != n.id {
                    throw fail("election safety: \(other) and \(n.id) both leaders in term \(r.term)")
                }
                if leaderOfTerm[r.term] == nil {
                    leaderOfTerm[r.term] = n.id
                    // Leader completeness: every applied (hence committed) entry is in its log.
                    let first = r.log.firstIndex
                    let top = UInt64(appliedTerm.count - 1)
                    if top > 0 && first <= top {
                        for i in first...top where r.log.term(at: i) != appliedTerm[Int(i)] {
                            throw fail("leader completeness: leader \(n.id) term \(r.term) lacks committed entry \(i)")
                        }
                    }
                }
            }
        }
        guard full else { return }
        // Log matching over every pair of live logs.
        let logs = live.map { ($0.id, $0.node!.raft.log) }
        for a in 0..<logs.count {
            let la = logs[a].1
            for b in (a + 1)..<logs.count {
                let lb = logs[b].1
                let lo = max(la.firstIndex, lb.firstIndex)
                let hi = min(la.lastIndex, lb.lastIndex)
                if lo > hi { continue }
                var matched = false
                var i = hi
                while i >= lo {
                    let ta = la.term(at: i)
                    let tb = lb.term(at: i)
                    if ta == tb {
                        matched = true
                    } else if matched {
                        throw fail("log matching: nodes \(logs[a].0),\(logs[b].0) agree above \(i) but differ at \(i)")
                    }
                    if i == 0 { break }
                    i -= 1
                }
            }
            // Same (index, term) must carry the same data.
            if let es = la.slice(from: la.firstIndex, to: la.lastIndex + 1, maxSizeBytes: .max) {
                for e in es {
                    let k = [e.index, e.term]
                    if let d = entryData[k] {
                        if d != e.data { throw fail("log matching: entry \(k) has two different payloads") }
                    } else {
                        entryData[k] = e.data
                    }
                }
            }
        }
    }

    // MARK: Workload and faults

    func randomAction() throws {
        let r = rng.next() % 100
        switch r {
        case 0..<40:
            guard let n = pick(live) else { return }
            proposalCounter += 1
            let batch = Int(1 + rng.next() % 3)
            var datas: [[UInt8]] = []
            for k in 0..<batch { datas.append(Array("p\(proposalCounter).\(k)".utf8)) }
            stats.proposals += 1
            do { try n.node!.propose(batch: datas) } catch RaftError.proposalDropped { }
        case 40..<46:
            guard let n = pick(live) else { return }
            readCounter += 1
            let ctx = Array("r\(readCounter)".utf8)
            pendingReads[ctx] = UInt64(appliedTerm.count - 1)
            stats.reads += 1
            do { try n.node!.readIndex(ctx) } catch RaftError.proposalDropped(let why) {
                log("read dropped on \(n.id) (\(n.node!.raft.role)): \(why)")
                pendingReads[ctx] = nil
                stats.readsDropped += 1
            }
        case 46..<49:
            guard let l = leader() else { return }
            let voters = l.node!.raft.tracker.voters
            guard let t = pick(voters) else { return }
            stats.transfers += 1
            log("transfer \(l.id) -> \(t)")
            do { try l.node!.transferLeader(to: t) } catch RaftError.proposalDropped { }
        case 49..<52:
            try confChange()
        case 52..<53:
            guard let n = pick(live) else { return }
            log("crash \(n.id)")
            n.crash()
            stats.crashes += 1
        case 55..<62:
            if let n = pick(ids.map { nodes[$0]! }.filter { $0.node == nil && !$0.removed }) {
                log("restart \(n.id)")
                try n.start()
            }
        case 62..<65:
            if cut.isEmpty {
                let all = ids
                var side: Set<UInt64> = []
                for id in all where chance(50) { side.insert(id) }
                for a in all { for b in all where side.contains(a) != side.contains(b) { cut.insert([a, b]) } }
                if chance(30), let a = pick(all), let b = pick(all), a != b { cut.insert([a, b]) }  // asymmetric
                partitionHealsAt = round + 10 + Int(rng.next() % 60)
                log("partition \(side.sorted()) | rest")
            }
        default:
            break
        }
    }

    func confChange() throws {
        guard let l = leader(), let node = l.node else { return }
        let r = node.raft
        let voters = r.tracker.voters
        let learners = r.tracker.learners
        let cc: ConfChange
        let k = rng.next() % 4
        if k == 0 && nextSpareID <= 9 {
            let id = nextSpareID
            nextSpareID += 1
            nodes[id] = try SimNode(id: id, bootstrap: bootstrap, config: makeConfig(id))
            cc = ConfChange(type: .addLearnerNode, nodeID: id)
        } else if k == 1, let x = pick(learners) {
            cc = ConfChange(type: .addNode, nodeID: x)
        } else if k == 2 && voters.count > 3, let x = pick(voters) {
            cc = ConfChange(type: .removeNode, nodeID: x)
        } else if k == 3 && voters.count > 3 {
            cc = ConfChange(type: .removeNode, nodeID: l.id)  // remove the leader itself
        } else {
            return
        }
        stats.confChanges += 1
        log("propose \(cc.type) \(cc.nodeID) via \(l.id)")
        do { try node.proposeConfChange(cc) } catch RaftError.proposalDropped(let why) { log("dropped: \(why)") }
    }

    func step(faults: Bool) throws {
        round += 1
        var afterTick = 0
        if faults {
            let actions = Int(rng.next() % 3)
            // Some actions land between tick() and ready(), e.g. a proposal to a node that has
            // just won an election inside tick() (so one Ready carries term, vote and entries).
            afterTick = actions == 0 ? 0 : Int(rng.next() % UInt64(actions + 1))
            for _ in 0..<(actions - afterTick) { try randomAction() }
            if !cut.isEmpty && round >= partitionHealsAt {
                log("heal")
                cut = []
            }
        }
        for n in live { try n.node!.tick() }
        for _ in 0..<afterTick { try randomAction() }
        for n in live { try handleReady(n, faults: faults) }
        try deliver()
        for n in live { try handleReady(n, faults: faults) }
        try checkSafety(full: round % 25 == 0)
    }

    /// Runs `faultRounds` of chaos, then heals everything and requires progress.
    func run(faultRounds: Int, livenessRounds: Int) throws {
        do { try runUnchecked(faultRounds: faultRounds, livenessRounds: livenessRounds) } catch let e as SimFailure {
            throw e
        } catch {
            throw fail("unexpected error: \(error)")  // keep the seed for the replay
        }
    }

    private func runUnchecked(faultRounds: Int, livenessRounds: Int) throws {
        for _ in 0..<faultRounds { try step(faults: true) }
        // Faults stop: heal, restart everyone, require a fresh proposal to be applied everywhere.
        cut = []
        for id in ids where nodes[id]!.node == nil && !nodes[id]!.removed { try nodes[id]!.start() }
        try checkSafety(full: true)
        let marker = Array("marker-\(seed)".utf8)
        var proposedAt: UInt64 = 0
        for _ in 0..<livenessRounds {
            try step(faults: false)
            guard let l = leader() else { continue }
            let lnode = l.node!
            if proposedAt == 0 || lnode.raft.log.term(at: proposedAt) == nil {
                do {
                    try lnode.propose(marker)
                    proposedAt = lnode.raft.log.lastIndex
                } catch RaftError.proposalDropped { continue }
            }
            // Done when every member of the leader's configuration applied past the marker.
            let members = lnode.raft.tracker.voters + lnode.raft.tracker.learners
            let done = members.allSatisfy { id in
                guard let n = nodes[id], n.alive else { return false }
                return n.appliedIndex >= proposedAt && proposedAt > 0
                    && n.node!.raft.log.committed >= proposedAt
            }
            if done && Int(proposedAt) < appliedTerm.count {
                try checkSafety(full: true)
                return
            }
        }
        throw fail("no progress \(livenessRounds) rounds after faults stopped (leader: \(leader()?.id ?? 0), marker at \(proposedAt))\n" + describe())
    }
}

@Suite("Deterministic simulation")
struct SimulationTests {
    static let shards = 4

    static var seedCount: Int {
        if let s = ProcessInfo.processInfo.environment["CAIRN_RAFT_SIM_SEEDS"], let n = Int(s) { return n }
        return 10_000
    }

    @Test("Simulation: safety under faults and progress after they stop", arguments: 0..<shards)
    func simulate(shard: Int) throws {
        if let s = ProcessInfo.processInfo.environment["CAIRN_RAFT_SIM_SEED"], let seed = UInt64(s) {
            guard shard == 0 else { return }
            let sim = try Simulation(seed: seed, trace: ProcessInfo.processInfo.environment["CAIRN_RAFT_SIM_TRACE"] != nil)
            do { try sim.run(faultRounds: 300, livenessRounds: 600) } catch {
                Issue.record("\(error)")
            }
            print("seed \(seed): \(sim.stats), rounds \(sim.round), applied \(sim.appliedTerm.count - 1), terms \(sim.leaderOfTerm.count)")
            return
        }
        var failures: [String] = []
        var seed = UInt64(shard)
        while seed < UInt64(Self.seedCount) {
            let sim = try Simulation(seed: seed)
            do { try sim.run(faultRounds: 300, livenessRounds: 600) } catch {
                failures.append("\(error)")
                if failures.count >= 3 { break }
            }
            seed += UInt64(Self.shards)
        }
        for f in failures { Issue.record("\(f)") }
    }

    @Test("Simulation: the same seed replays exactly")
    func replayIsExact() throws {
        func fingerprint(_ seed: UInt64) throws -> [UInt64] {
            let sim = try Simulation(seed: seed)
            try? sim.run(faultRounds: 200, livenessRounds: 400)
            return [UInt64(sim.round), UInt64(sim.appliedTerm.count)] + sim.appliedHash.suffix(3)
                + sim.ids.map { sim.nodes[$0]!.node?.raft.term ?? 0 }
        }
        for seed in [1, 7, 42] as [UInt64] { #expect(try fingerprint(seed) == fingerprint(seed)) }
    }
}
