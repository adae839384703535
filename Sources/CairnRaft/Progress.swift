/// A bounded window of in-flight append messages to one follower: at most `capacity` messages
/// and (if `maxBytes > 0`) about `maxBytes` bytes. Each slot records the last index the message
/// carried and its size; acknowledgements free slots from the front.
struct Inflights {
    let capacity: Int
    let maxBytes: UInt64
    private var buffer: [(index: UInt64, bytes: UInt64)] = []
    private var head = 0
    private(set) var count = 0
    private(set) var bytes: UInt64 = 0

    init(capacity: Int, maxBytes: UInt64) {
        self.capacity = max(1, capacity)
        self.maxBytes = maxBytes
    }

    var isFull: Bool { count == capacity || (maxBytes > 0 && bytes >= maxBytes) }

    mutating func add(index: UInt64, bytes b: UInt64) {
        precondition(!isFull, "inflights overflow")
        if buffer.count < capacity { buffer.reserveCapacity(capacity) }
        let slot = (head + count) % capacity
        if slot == buffer.count { buffer.append((index, b)) } else { buffer[slot] = (index, b) }
        count += 1
        bytes += b
    }

    /// Frees every message whose last index is <= `index`.
    mutating func freeLE(_ index: UInt64) {
        while count > 0 && buffer[head].index <= index {
            bytes -= buffer[head].bytes
            head = (head + 1) % capacity
            count -= 1
        }
        if count == 0 { head = 0 }
    }

    mutating func freeFirstOne() {
        if count > 0 { freeLE(buffer[head].index) }
    }

    mutating func reset() {
        head = 0
        count = 0
        bytes = 0
    }
}

/// Replication state of one follower, as seen by the leader.
enum ProgressState: String, Sendable {
    /// Unknown match: send one append at a time and wait for the answer.
    case probe
    /// Known match: stream appends optimistically, up to the inflight window.
    case replicate
    /// A snapshot is on its way; send nothing until it is acknowledged or reported.
    case snapshot
}

struct Progress {
    var match: UInt64 = 0
    var next: UInt64
    var state: ProgressState = .probe
    var pendingSnapshot: UInt64 = 0
    /// Heard from in the current check-quorum period.
    var recentActive = false
    /// In probe state: an append is outstanding, wait for a response or heartbeat.
    var probeSent = false
    var inflights: Inflights
    var isLearner: Bool

    init(next: UInt64, inflights: Inflights, isLearner: Bool) {
        self.next = next
        self.inflights = inflights
        self.isLearner = isLearner
    }

    var isPaused: Bool {
        switch state {
        case .probe: return probeSent
        case .replicate: return inflights.isFull
        case .snapshot: return true
        }
    }

    mutating func becomeProbe() {
        if state == .snapshot {
            let p = pendingSnapshot
            state = .probe
            next = max(match + 1, p + 1)
        } else {
            state = .probe
            next = match + 1
        }
        pendingSnapshot = 0
        probeSent = false
        inflights.reset()
    }

    mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        pendingSnapshot = 0
        probeSent = false
        inflights.reset()
    }

    mutating func becomeSnapshot(_ index: UInt64) {
        state = .snapshot
        pendingSnapshot = index
        probeSent = false
        inflights.reset()
    }

    /// Records an acknowledgement of `n`; returns whether `match` advanced.
    mutating func maybeUpdate(_ n: UInt64) -> Bool {
        var updated = false
        if match < n {
            match = n
            updated = true
            probeSent = false
        }
        next = max(next, n + 1)
        return updated
    }

    /// Handles a rejection of the append whose previous index was `rejected`; `hint` is the
    /// follower's (already term-adjusted) guess of the last matching index. Returns false for stale
    /// rejections.
    mutating func maybeDecrTo(rejected: UInt64, hint: UInt64) -> Bool {
        if state == .replicate {
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        if next == 0 || next - 1 != rejected { return false }
        next = max(min(rejected, hint + 1), match + 1)
        probeSent = false
        return true
    }
}
