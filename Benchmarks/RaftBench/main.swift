// cairn-raft-bench: a 3-node Raft cluster in one process over an in-memory network, with
// MemoryStorage, batched proposals. Prints committed entries per second (median of several runs)
// and heap allocations per proposal (counted by the CMallocCounter allocator interposition).
//
// Usage: cairn-raft-bench [entries-per-run] [batch-size] [payload-bytes] [runs]
import CMallocCounter
import CairnRaft

struct Bench {
    let entries: Int
    let batch: Int
    let payload: Int

    /// Returns (seconds, committed entries, allocations).
    func run() throws -> (Double, Int, UInt64) {
        let ids: [UInt64] = [1, 2, 3]
        var nodes: [RawNode] = []
        var storages: [MemoryStorage] = []
        for id in ids {
            var c = Config(id: id)
            c.randomSeed = id
            c.maxInflightMessages = 256
            c.maxSizePerMessageBytes = 1 << 20
            let s = MemoryStorage(voters: ids)
            storages.append(s)
            nodes.append(try RawNode(config: c, storage: s))
        }
        var inbox: [[Message]] = [[], [], []]
        var appliedOnLeader = 0

        func pump() throws {
            for k in 0..<3 {
                let n = nodes[k]
                if !inbox[k].isEmpty {
                    let ms = inbox[k]
                    inbox[k].removeAll(keepingCapacity: true)
                    for m in ms { try n.step(m) }
                }
                guard n.hasReady() else { continue }
                let rd = try n.ready()
                // The leader's appends may leave in parallel with its own log write.
                for m in rd.messagesBeforePersist { inbox[Int(m.to - 1)].append(m) }
                if let s = rd.snapshot { try storages[k].applySnapshot(s) }
                try storages[k].append(rd.entries)
                if let hs = rd.hardState { storages[k].setHardState(hs) }
                for m in rd.messagesAfterPersist { inbox[Int(m.to - 1)].append(m) }
                if k == 0 {
                    for e in rd.committedEntries where !e.data.isEmpty { appliedOnLeader += 1 }
                }
                try n.advance()
                // Keep memory flat: compact what everyone applied.
                let applied = n.status.applied
                let first = try storages[k].firstIndex()
                if applied > first + 50_000 { try storages[k].compact(upTo: applied - 10_000) }
            }
        }

        try nodes[0].campaign()
        for _ in 0..<50 { try pump() }
        precondition(nodes[0].status.softState.role == .leader, "node 1 did not become leader")

        let data = [UInt8](repeating: 0xAB, count: payload)
        let proposal = [[UInt8]](repeating: data, count: batch)
        let clock = ContinuousClock()
        let allocs0 = CMallocCounter_count()
        let start = clock.now
        var proposed = 0
        while appliedOnLeader < entries {
            if proposed - appliedOnLeader < 64 * batch && proposed < entries {
                try nodes[0].propose(batch: proposal)
                proposed += batch
            }
            try pump()
        }
        let elapsed = clock.now - start
        let allocs = CMallocCounter_count() - allocs0
        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return (secs, appliedOnLeader, allocs)
    }
}

let args = CommandLine.arguments
let entries = args.count > 1 ? Int(args[1]) ?? 1_000_000 : 1_000_000
let batch = args.count > 2 ? Int(args[2]) ?? 256 : 256
let payload = args.count > 3 ? Int(args[3]) ?? 16 : 16
let runs = args.count > 4 ? Int(args[4]) ?? 5 : 5

print("cairn-raft-bench: 3 nodes, in-memory network, MemoryStorage")
print("entries/run=\(entries) batch=\(batch) payload=\(payload)B runs=\(runs)")
var rates: [Double] = []
var allocsPer: [Double] = []
for r in 1...runs {
    let (secs, n, allocs) = try Bench(entries: entries, batch: batch, payload: payload).run()
    let rate = Double(n) / secs
    rates.append(rate)
    allocsPer.append(Double(allocs) / Double(n))
    print("run \(r): \(n) entries committed in \(String(format3(secs)))s = \(Int(rate)) entries/s, \(String(format3(Double(allocs) / Double(n)))) allocs/proposal")
}
rates.sort()
allocsPer.sort()
print("median: \(Int(rates[rates.count / 2])) committed entries/s, \(format3(allocsPer[allocsPer.count / 2])) allocations per proposed entry (whole cluster)")

func format3(_ x: Double) -> String {
    let milli = Int(x * 1000 + 0.5)
    let frac = String(milli % 1000)
    return "\(milli / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
}
