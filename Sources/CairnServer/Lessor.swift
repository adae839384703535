import CairnBackend
import CairnSync
import Logging

/// Lease clocks. The keyspace holds which leases exist and their keys (through Raft); the
/// lessor holds when each expires, which only the leader tracks: on becoming leader every
/// lease gets a full TTL again (plus the election timeout), as in etcd, so that a change of
/// leader never expires a lease its client was keeping alive.
public final class Lessor: Sendable {
    /// etcd's largest TTL (`MaxLeaseTTL`).
    public static let maxTTLSeconds: Int64 = 9_000_000_000

    struct Lease {
        var ttlSeconds: Int64
        /// Monotonic nanoseconds; `UInt64.max` while this member is not the leader.
        var expiry: UInt64
    }

    struct State {
        var leases: [Int64: Lease] = [:]
        var primary = false
    }

    public let minTTLSeconds: Int64
    let state = LockedValue(State())
    let logger: Logger

    init(minTTLSeconds: Int64, logger: Logger) {
        self.minTTLSeconds = minTTLSeconds
        self.logger = logger
    }

    /// The TTL a grant of `requested` seconds gets.
    public func effectiveTTL(_ requested: Int64) -> Int64 { max(requested, minTTLSeconds) }

    func restore(id: Int64, ttlSeconds: Int64) {
        state.withLock { $0.leases[id] = Lease(ttlSeconds: ttlSeconds, expiry: .max) }
    }

    func grant(id: Int64, ttlSeconds: Int64) {
        let now = monotonicNanoseconds()
        state.withLock { s in
            s.leases[id] = Lease(ttlSeconds: ttlSeconds, expiry: s.primary ? Self.deadline(now, ttlSeconds) : .max)
        }
    }

    func remove(id: Int64) {
        _ = state.withLock { $0.leases.removeValue(forKey: id) }
    }

    public func exists(_ id: Int64) -> Bool { state.withLock { $0.leases[id] != nil } }

    func promote(extendNanoseconds: UInt64) {
        let now = monotonicNanoseconds()
        state.withLock { s in
            s.primary = true
            for (id, l) in s.leases { s.leases[id]!.expiry = Self.deadline(now, l.ttlSeconds) &+ extendNanoseconds }
        }
    }

    func demote() {
        state.withLock { s in
            s.primary = false
            for id in s.leases.keys { s.leases[id]!.expiry = .max }
        }
    }

    /// Restarts a lease's clock (a keep-alive); returns its TTL, or nil if it does not exist.
    /// Only the leader renews; elsewhere it returns nil.
    public func renew(_ id: Int64) -> Int64? {
        let now = monotonicNanoseconds()
        return state.withLock { s -> Int64? in
            // An expired lease is being revoked: it cannot be kept alive any more.
            guard s.primary, let l = s.leases[id], l.expiry > now else { return nil }
            s.leases[id]!.expiry = Self.deadline(now, l.ttlSeconds)
            return l.ttlSeconds
        }
    }

    /// `(granted TTL, remaining seconds)` of a lease, or nil.
    public func timeToLive(_ id: Int64) -> (granted: Int64, remaining: Int64)? {
        let now = monotonicNanoseconds()
        return state.withLock { s -> (Int64, Int64)? in
            guard let l = s.leases[id] else { return nil }
            if l.expiry == .max { return (l.ttlSeconds, l.ttlSeconds) }
            let left = l.expiry > now ? l.expiry - now : 0
            return (l.ttlSeconds, Int64((left + 999_999_999) / 1_000_000_000))
        }
    }

    /// Leases past their expiry (leader only), oldest first, at most `limit`.
    func expired(now: UInt64, limit: Int, excluding: Set<Int64>) -> [Int64] {
        state.withLock { s -> [Int64] in
            guard s.primary else { return [] }
            let due = s.leases.filter { $0.value.expiry <= now && !excluding.contains($0.key) }
            return due.sorted { $0.value.expiry < $1.value.expiry }.prefix(limit).map(\.key)
        }
    }

    static func deadline(_ now: UInt64, _ ttlSeconds: Int64) -> UInt64 {
        let ns = UInt64(clamping: ttlSeconds).multipliedReportingOverflow(by: 1_000_000_000)
        return ns.overflow ? .max : now.addingReportingOverflow(ns.partialValue).overflow ? .max : now + ns.partialValue
    }
}
