import Foundation
import Testing
@testable import CairnRaft

/// Script-driven interaction tests. Each file in testdata/ is a list of commands; every command
/// is followed by its output, indented by two spaces. The test replays the commands and compares
/// the whole transcript. To accept new output, run with CAIRN_RAFT_REWRITE=1 (rewrites the files
/// in the source tree) and review the diff.
///
/// Commands:
///   add-nodes <n> [pre-vote] [check-quorum] [lease-read] [inflight=<k>]   nodes 1...n, voters 1...n
///   start-node <id>                 a new node booting with the initial configuration
///   campaign <id> | tick <id> [n] | tick-all [n]
///   propose <id> <data> | propose-conf-change <id> add|add-learner|remove <node>
///   read-index <id> <ctx> | transfer-leader <leader> <target>
///   process-ready [ids...]          handle one Ready per node, print it (messages get queued)
///   deliver-msgs [ids...]           deliver queued messages (to the given nodes), print them
///   stabilize                       process-ready + deliver-msgs until quiet
///   isolate <id> | partition <ids> / <ids> | heal
///   compact <id>                    snapshot at the applied index and compact the log
///   status [ids...] | log <id>
final class ScriptRunner {
    var c: Cluster?
    var out: [String] = []
    var voters: [UInt64] = []

    func emit(_ s: String) { out.append(s) }

    static func describe(_ e: Entry) -> String {
        let kind: String
        switch e.type {
        case .normal: kind = ""
        case .confChange, .confChangeV2:
            if let cc = ConfChange(decoding: e.data) { return "\(e.term)/\(e.index) \(cc.type)(\(cc.nodeID))" }
            kind = "conf"
        }
        let d = String(decoding: e.data, as: UTF8.self)
        return "\(e.term)/\(e.index)\(kind.isEmpty ? "" : " " + kind) \"\(d)\""
    }

    static func describe(_ m: Message) -> String {
        var s = "\(m.from)->\(m.to) \(m.type) term=\(m.term)"
        switch m.type {
        case .app:
            s += " prev=\(m.logTerm)/\(m.index) commit=\(m.commit)"
            if !m.entries.isEmpty { s += " entries=[" + m.entries.map(describe).joined(separator: ", ") + "]" }
        case .appResp:
            s += " index=\(m.index)"
            if m.reject { s += " reject hint=\(m.logTerm)/\(m.rejectHint)" }
        case .vote, .preVote:
            s += " last=\(m.logTerm)/\(m.index)"
        case .voteResp, .preVoteResp:
            s += m.reject ? " rejected" : " granted"
        case .heartbeat:
            s += " commit=\(m.commit)"
            if !m.context.isEmpty { s += " ctx=\(String(decoding: m.context, as: UTF8.self))" }
        case .heartbeatResp:
            if !m.context.isEmpty { s += " ctx=\(String(decoding: m.context, as: UTF8.self))" }
        case .snap:
            if let sn = m.snapshot { s += " snapshot=\(sn.metadata.term)/\(sn.metadata.index) voters=\(sn.metadata.confState.voters)" }
        case .readIndex, .readIndexResp:
            s += " index=\(m.index) ctx=\(String(decoding: m.entries.first?.data ?? [], as: UTF8.self))"
        case .prop:
            s += " entries=[" + m.entries.map(describe).joined(separator: ", ") + "]"
        default:
            break
        }
        return s
    }

    func processReady(_ ids: [UInt64]) throws -> Bool {
        guard let c else { return false }
        var any = false
        for id in ids {
            let p = c[id]
            guard p.node.hasReady() else { continue }
            any = true
            let rd = try p.node.ready()
            emit("  \(id) ready:")
            if let ss = rd.softState { emit("    soft: lead=\(ss.lead) \(ss.role)") }
            if let hs = rd.hardState { emit("    hard: term=\(hs.term) vote=\(hs.vote) commit=\(hs.commit)") }
            if !rd.entries.isEmpty { emit("    entries: " + rd.entries.map(Self.describe).joined(separator: ", ")) }
            if let s = rd.snapshot { emit("    snapshot: \(s.metadata.term)/\(s.metadata.index) \(s.metadata.confState.voters)") }
            if !rd.committedEntries.isEmpty {
                emit("    committed: " + rd.committedEntries.map(Self.describe).joined(separator: ", "))
            }
            for rs in rd.readStates {
                emit("    read-state: index=\(rs.index) ctx=\(String(decoding: rs.requestContext, as: UTF8.self))")
            }
            for m in rd.allMessages { emit("    send: " + Self.describe(m)) }
            if let s = rd.snapshot {
                try p.storage.applySnapshot(s)
                p.appliedIndex = s.metadata.index
                p.confState = s.metadata.confState
            }
            try p.storage.append(rd.entries)
            if let hs = rd.hardState { p.storage.setHardState(hs) }
            for e in rd.committedEntries {
                p.appliedIndex = e.index
                if e.type != .normal, let cc = ConfChange(decoding: e.data) {
                    p.confState = try p.node.applyConfChange(cc)
                    p.storage.setConfState(p.confState)
                    emit("    applied conf change: voters=\(p.confState.voters) learners=\(p.confState.learners)")
                }
            }
            try p.node.advance()
            c.inFlight.append(contentsOf: rd.allMessages)
        }
        return any
    }

    func deliver(_ ids: [UInt64]?) throws -> Bool {
        guard let c else { return false }
        var keep: [Message] = []
        var any = false
        let ms = c.inFlight
        c.inFlight = []
        for m in ms {
            if let ids, !ids.contains(m.to) {
                keep.append(m)
                continue
            }
            any = true
            if c.cut.contains([m.from, m.to]) || c.peers[m.to] == nil {
                emit("  dropped: " + Self.describe(m))
                continue
            }
            emit("  deliver: " + Self.describe(m))
            try c[m.to].node.step(m)
        }
        c.inFlight = keep + c.inFlight
        return any
    }

    func status(_ id: UInt64) {
        guard let c else { return }
        let r = c[id].raft
        emit("  \(id): \(r.role) term=\(r.term) lead=\(r.lead) vote=\(r.vote) last=\(r.log.lastIndex) commit=\(r.log.committed) applied=\(r.log.applied) voters=\(r.tracker.voters) learners=\(r.tracker.learners)")
        if r.role == .leader {
            for (k, p) in r.tracker.progress.sorted(by: { $0.key < $1.key }) where k != id {
                emit("    \(k): match=\(p.match) next=\(p.next) \(p.state)\(p.isPaused ? " paused" : "")")
            }
        }
    }

    func run(_ line: String) throws {
        let words = line.split(separator: " ").map(String.init)
        guard let cmd = words.first else { return }
        let args = Array(words.dropFirst())
        let nums = args.compactMap { UInt64($0) }
        func tryEmit(_ body: () throws -> Void) throws {
            do {
                try body()
                emit("  ok")
            } catch let e as RaftError { emit("  error: \(e)") }
        }
        switch cmd {
        case "add-nodes":
            let n = nums.first ?? 3
            voters = Array(1...n)
            let inflight = args.first { $0.hasPrefix("inflight=") }.flatMap { Int($0.dropFirst(9)) }
            c = try Cluster(ids: voters, preVote: args.contains("pre-vote"), checkQuorum: args.contains("check-quorum")) { cfg in
                if args.contains("lease-read") { cfg.readOnlyOption = .leaseBased }
                if let inflight { cfg.maxInflightMessages = inflight }
            }
            for id in voters { status(id) }
        case "start-node":
            try c!.addPeer(id: nums[0], voters: voters)
            status(nums[0])
        case "campaign":
            try tryEmit { try c![nums[0]].node.campaign() }
        case "tick":
            let n = nums.count > 1 ? Int(nums[1]) : 1
            try tryEmit { try c!.tick(nums[0], n) }
        case "tick-all":
            try tryEmit { try c!.tickAll(nums.first.map(Int.init) ?? 1) }
        case "propose":
            try tryEmit { try c![nums[0]].node.propose(Array(args[1].utf8)) }
        case "propose-conf-change":
            let t: ConfChangeType = args[1] == "add" ? .addNode : args[1] == "remove" ? .removeNode : .addLearnerNode
            try tryEmit { try c![nums[0]].node.proposeConfChange(ConfChange(type: t, nodeID: UInt64(args[2])!)) }
        case "read-index":
            try tryEmit { try c![nums[0]].node.readIndex(Array(args[1].utf8)) }
        case "transfer-leader":
            try tryEmit { try c![nums[0]].node.transferLeader(to: nums[1]) }
        case "process-ready":
            if try !processReady(nums.isEmpty ? c!.ids : nums) { emit("  (nothing)") }
        case "deliver-msgs":
            if try !deliver(nums.isEmpty ? nil : nums) { emit("  (nothing)") }
        case "stabilize":
            for _ in 0..<200 {
                let a = try processReady(c!.ids)
                let b = try deliver(nil)
                if !a && !b { break }
            }
        case "isolate":
            c!.isolate(nums[0])
            emit("  ok")
        case "partition":
            let sides = line.dropFirst("partition".count).split(separator: "/").map {
                $0.split(separator: " ").compactMap { UInt64($0) }
            }
            for a in sides[0] { for b in sides[1] { c!.cut.insert([a, b]); c!.cut.insert([b, a]) } }
            emit("  ok")
        case "heal":
            c!.heal()
            emit("  ok")
        case "compact":
            let p = c![nums[0]]
            try p.storage.createSnapshot(index: p.appliedIndex, confState: p.confState, data: Array("snap@\(p.appliedIndex)".utf8))
            try p.storage.compact(upTo: p.appliedIndex)
            emit("  snapshot at \(p.appliedIndex), first index now \(try p.storage.firstIndex())")
        case "status":
            for id in nums.isEmpty ? c!.ids : nums { status(id) }
        case "log":
            let l = c![nums[0]].raft.log
            if let es = l.slice(from: l.firstIndex, to: l.lastIndex + 1, maxSizeBytes: .max) {
                emit("  " + (es.isEmpty ? "(empty)" : es.map(Self.describe).joined(separator: ", ")))
            }
        default:
            emit("  unknown command \(cmd)")
        }
    }

    /// Runs `script`, returning the transcript (commands plus indented output).
    static func transcript(of script: String) throws -> String {
        let r = ScriptRunner()
        for line in script.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("  ") { continue }  // previous output
            r.out.append(line)
            if line.isEmpty || line.hasPrefix("#") { continue }
            try r.run(line)
        }
        while r.out.last == "" { r.out.removeLast() }
        return r.out.joined(separator: "\n") + "\n"
    }
}

@Suite("Script-driven interaction tests")
struct InteractionTests {
    static let files = ["election.txt", "replication.txt", "prevote_checkquorum.txt", "read_index.txt",
                        "leader_transfer.txt", "membership.txt", "snapshot.txt", "flow_control.txt"]

    @Test("Interaction script", arguments: files)
    func script(_ name: String) throws {
        let url = try #require(Bundle.module.url(forResource: "testdata", withExtension: nil))
        let text = try String(contentsOf: url.appendingPathComponent(name), encoding: .utf8)
        let got = try ScriptRunner.transcript(of: text)
        if ProcessInfo.processInfo.environment["CAIRN_RAFT_REWRITE"] == "1" {
            let src = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("testdata").appendingPathComponent(name)
            try got.write(to: src, atomically: true, encoding: .utf8)
            return
        }
        if got != text {
            let a = text.split(separator: "\n", omittingEmptySubsequences: false)
            let b = got.split(separator: "\n", omittingEmptySubsequences: false)
            let i = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
            Issue.record("""
                \(name) differs at line \(i + 1):
                  expected: \(i < a.count ? String(a[i]) : "<eof>")
                  got:      \(i < b.count ? String(b[i]) : "<eof>")
                Rerun with CAIRN_RAFT_REWRITE=1 and review the diff.
                """)
        }
    }
}
