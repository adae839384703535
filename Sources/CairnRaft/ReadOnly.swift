/// How the leader confirms a read index.
public enum ReadOnlyOption: Sendable {
    /// ReadIndex (thesis §6.4): confirm leadership with one heartbeat round to a quorum. Safe.
    case safe
    /// Lease-based (thesis §6.4.1): answer from the leader's lease without a round trip. Only safe
    /// if clock drift between nodes is bounded (a deposed leader may otherwise still answer within
    /// what it believes is its lease). Even then a partitioned leader answers stale reads for up
    /// to about two election timeouts, and a leadership transfer's election overrides the lease.
    /// Requires `checkQuorum`.
    case leaseBased
}

/// Pending ReadIndex requests on the leader, in arrival order. An acknowledgement of a request's
/// heartbeat also confirms every request queued before it, so many reads share one round.
struct ReadOnlyQueue {
    struct Pending {
        var index: UInt64
        var request: Message
        var acks: Set<UInt64>
    }
    private(set) var status: [[UInt8]: Pending] = [:]
    private(set) var queue: [[UInt8]] = []
    let maxPending: Int

    init(maxPending: Int) { self.maxPending = maxPending }

    var count: Int { queue.count }
    var lastContext: [UInt8]? { queue.last }

    /// Returns false if the queue is full (the read is dropped). A context already queued is
    /// folded into the existing request (callers must use unique contexts).
    mutating func add(index: UInt64, request: Message, context: [UInt8]) -> Bool {
        if status[context] != nil { return true }
        if queue.count >= maxPending { return false }
        status[context] = Pending(index: index, request: request, acks: [])
        queue.append(context)
        return true
    }

    /// Records that `from` acknowledged `context`; returns the acks so far (nil if unknown).
    mutating func ack(from: UInt64, context: [UInt8]) -> Set<UInt64>? {
        guard var p = status[context] else { return nil }
        p.acks.insert(from)
        status[context] = p
        return p.acks
    }

    /// Removes and returns every request up to and including `context`.
    mutating func release(through context: [UInt8]) -> [Pending] {
        guard let pos = queue.firstIndex(of: context) else { return [] }
        var out: [Pending] = []
        for c in queue[...pos] {
            if let p = status.removeValue(forKey: c) { out.append(p) }
        }
        queue.removeFirst(pos + 1)
        return out
    }

    mutating func reset() {
        status = [:]
        queue = []
    }
}
