import CairnBackend
import CairnMVCC
import CairnSync
import Logging
import Metrics

/// Where a watcher's responses go: a Watch stream. Called on the hub's dispatcher thread.
public protocol WatchSink: AnyObject, Sendable {
    /// Whether the stream has too many bytes not yet written to its connection; the hub then
    /// skips its watchers (they fall behind and catch up from history once it drains).
    var isBlocked: Bool { get }
    /// Events for one watcher, through `revision`, all revisions up to it delivered.
    func deliver(watcher: Watcher, events: [WatchEvent], revision: Int64)
    /// The watcher's next revision was compacted away; it is removed from the hub.
    func compacted(watcher: Watcher, compactRevision: Int64)
    /// A progress notification: nothing for the watcher up to `revision`.
    func progress(watcher: Watcher, revision: Int64)
}

/// One event as a watcher sees it.
public struct WatchEvent: Sendable {
    public var event: Event
    public var prevKV: KeyValue?
}

/// One watch: a key or range, from a revision, with filters. Its position (`nextRevision`) is
/// guarded by the hub's lock.
public final class Watcher: @unchecked Sendable {
    public let id: Int64
    public let key: [UInt8]
    /// Empty: the single key. `[0]`: every key from `key`. Otherwise the exclusive end.
    public let rangeEnd: [UInt8]
    public let prevKV: Bool
    public let noPut: Bool
    public let noDelete: Bool
    public let progressNotify: Bool
    public let fragment: Bool
    weak var sink: (any WatchSink)?
    var nextRevision: Int64
    var lastSent: UInt64 = 0

    public init(
        id: Int64, key: [UInt8], rangeEnd: [UInt8], startRevision: Int64, prevKV: Bool, noPut: Bool,
        noDelete: Bool, progressNotify: Bool, fragment: Bool, sink: any WatchSink
    ) {
        self.id = id
        self.key = key
        self.rangeEnd = rangeEnd
        self.prevKV = prevKV
        self.noPut = noPut
        self.noDelete = noDelete
        self.progressNotify = progressNotify
        self.fragment = fragment
        self.sink = sink
        self.nextRevision = startRevision
    }

    func matches(_ k: [UInt8]) -> Bool {
        if rangeEnd.isEmpty { return k == key }
        if compareBytes(k, key) < 0 { return false }
        if rangeEnd == [0] { return true }
        return compareBytes(k, rangeEnd) < 0
    }
}

/// Delivers keyspace changes to watchers, always from the keyspace's own history.
///
/// Every watcher has a next revision. The dispatcher thread groups watchers by it, reads the
/// events from there to the current revision once per group (bounded), and hands each watcher
/// its matching events. Watchers that are caught up share one group, so a committed batch
/// costs one history read however many watchers there are; a watcher that fell behind (a slow
/// stream, a start revision in the past) simply sits in an older group until it catches up.
/// A watcher whose next revision was compacted gets `compacted` and is removed.
public final class WatchHub<Backend: StorageBackend>: @unchecked Sendable {
    struct State {
        var watchers: [ObjectIdentifier: Watcher] = [:]
        var streams = 0
        var dirty = false
        var stopping = false
    }

    /// etcd's gauges of open watchers and Watch streams (a leak shows as a count that stays up).
    let watcherGauge = Gauge(label: "etcd_debugging_mvcc_watcher_total")
    let streamGauge = Gauge(label: "etcd_debugging_mvcc_watch_stream_total")

    let keyspace: Keyspace<Backend>
    let logger: Logger
    let state = LockedCondition(State())
    private let thread = LockedValue<OSThread?>(nil)
    /// Events read per history read, at most.
    public var maxEventsPerRead = 1000
    /// How often watchers that asked for progress notifications get one (etcd: 10 minutes).
    public let progressIntervalNanoseconds: UInt64

    init(keyspace: Keyspace<Backend>, logger: Logger, progressIntervalSeconds: UInt64 = 600) {
        self.keyspace = keyspace
        self.logger = logger
        self.progressIntervalNanoseconds = progressIntervalSeconds * 1_000_000_000
    }

    func start() {
        let t = OSThread.start(name: "cairn-watch") { [self] in self.run() }
        thread.withLock { $0 = t }
    }

    func stop() {
        state.withLock { $0.stopping = true }
        state.broadcast()
        if let t = thread.withLock({ s -> OSThread? in
            let t = s
            s = nil
            return t
        }) {
            t.join()
        }
    }

    /// The number of registered watchers.
    public var count: Int { state.withLock { $0.watchers.count } }

    /// Registers a watcher; a start revision of 0 means "from the next revision".
    public func add(_ w: Watcher) {
        if w.nextRevision <= 0 { w.nextRevision = keyspace.revision + 1 }
        let n = state.withLock {
            $0.watchers[ObjectIdentifier(w)] = w
            $0.dirty = true
            return $0.watchers.count
        }
        state.broadcast()
        watcherGauge.record(n)
    }

    public func remove(_ w: Watcher) {
        let n = state.withLock {
            $0.watchers.removeValue(forKey: ObjectIdentifier(w))
            return $0.watchers.count
        }
        watcherGauge.record(n)
    }

    /// A Watch stream opened (+1) or ended (-1).
    func countStream(_ delta: Int) {
        let n = state.withLock {
            $0.streams += delta
            return $0.streams
        }
        streamGauge.record(n)
    }

    /// New revisions were committed (or a blocked stream drained): look again.
    public func notify() {
        // With no watcher there is nothing to look at, and waking the hub's thread after every
        // applied batch would cost two context switches for nothing; `add` wakes it.
        let anyWatcher = state.withLock { s -> Bool in
            s.dirty = true
            return !s.watchers.isEmpty
        }
        if anyWatcher { state.broadcast() }
    }

    private func run() {
        var nextProgress = monotonicNanoseconds() + progressIntervalNanoseconds
        while true {
            let (stop, watchers) = state.withLock(waitingUntil: { $0.dirty || $0.stopping }, deadline: nextProgress) {
                s -> (Bool, [Watcher]) in
                s.dirty = false
                return (s.stopping, Array(s.watchers.values))
            }
            if stop { return }
            let current = keyspace.revision
            let more = dispatch(watchers, current: current)
            let now = monotonicNanoseconds()
            if now >= nextProgress {
                sendProgress(watchers, current: current)
                nextProgress = now + progressIntervalNanoseconds
            }
            if more { notify() }
        }
    }

    /// One pass over the watchers behind `current`; returns whether some still are.
    private func dispatch(_ watchers: [Watcher], current: Int64) -> Bool {
        var groups: [Int64: [Watcher]] = [:]
        state.withLock { _ in
            for w in watchers where w.nextRevision <= current {
                guard let sink = w.sink, !sink.isBlocked else { continue }
                groups[w.nextRevision, default: []].append(w)
            }
        }
        var more = false
        for (from, group) in groups.sorted(by: { $0.key < $1.key }) {
            let read: (events: [Event], throughRevision: Int64)
            do {
                read = try keyspace.events(from: from, to: current, maxEvents: maxEventsPerRead)
            } catch KeyspaceError.compacted {
                let compactRev = keyspace.compactedRevision
                for w in group {
                    remove(w)
                    w.sink?.compacted(watcher: w, compactRevision: compactRev)
                }
                continue
            } catch {
                logger.error("watch: reading history failed", metadata: ["from": "\(from)", "error": "\(error)"])
                continue
            }
            if read.throughRevision < current { more = true }
            deliver(read.events, through: read.throughRevision, to: group)
        }
        return more
    }

    private func deliver(_ events: [Event], through: Int64, to group: [Watcher]) {
        var exact: [[UInt8]: [Watcher]] = [:]
        var ranges: [Watcher] = []
        for w in group {
            if w.rangeEnd.isEmpty { exact[w.key, default: []].append(w) } else { ranges.append(w) }
        }
        var perWatcher: [ObjectIdentifier: [WatchEvent]] = [:]
        var prevCache: [Int: KeyValue?] = [:]
        for (i, e) in events.enumerated() {
            let candidates = (exact[e.kv.key] ?? []) + ranges.filter { $0.matches(e.kv.key) }
            for w in candidates {
                if e.kind == .put && w.noPut { continue }
                if e.kind == .delete && w.noDelete { continue }
                var we = WatchEvent(event: e, prevKV: nil)
                if w.prevKV {
                    if let cached = prevCache[i] {
                        we.prevKV = cached
                    } else {
                        let prev = try? keyspace.get(e.kv.key, at: e.kv.modRevision - 1)
                        prevCache[i] = prev
                        we.prevKV = prev
                    }
                }
                perWatcher[ObjectIdentifier(w), default: []].append(we)
            }
        }
        let now = monotonicNanoseconds()
        for w in group {
            // A stream that filled up during this pass keeps its watchers where they are.
            if w.sink?.isBlocked ?? true { continue }
            let live = state.withLock { s -> Bool in
                guard s.watchers[ObjectIdentifier(w)] != nil else { return false }
                w.nextRevision = through + 1
                return true
            }
            guard live else { continue }
            if let evs = perWatcher[ObjectIdentifier(w)], !evs.isEmpty {
                w.lastSent = now
                w.sink?.deliver(watcher: w, events: evs, revision: through)
            }
        }
    }

    private func sendProgress(_ watchers: [Watcher], current: Int64) {
        for w in watchers where w.progressNotify {
            let synced = state.withLock { _ in w.nextRevision > current }
            if synced { w.sink?.progress(watcher: w, revision: current) }
        }
    }
}
