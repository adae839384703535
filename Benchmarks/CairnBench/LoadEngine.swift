// The unary load generator: every client is a slot that issues its next request from the
// completion of its previous one, on the connection's event loop. No task, thread hop or
// lock per request, so the client stays cheap next to the server it measures.
import CairnClient
import CairnGRPC
import NIOCore

/// One request to send: which recorder it counts in, the method path, the serialized message.
struct BenchRequest {
    var kind: Int
    var path: String
    var body: ByteBuffer
}

/// Makes request number `index` (0-based, global across shards).
typealias RequestFactory = (_ index: Int) -> BenchRequest

/// The clients and connections that run on one event loop.
///
/// Confined to `loop`: every method and property is used only from it (the class is handed
/// to other threads solely to schedule work on the loop), hence `@unchecked Sendable`.
final class LoadShard: @unchecked Sendable {
    let loop: any EventLoop
    let connections: [GRPCClientConnection]
    let clients: Int
    /// Request indexes this shard issues: `firstIndex ..< firstIndex + total`.
    let firstIndex: Int
    let total: Int
    /// Requests per second for this shard; 0 for as fast as possible.
    let rate: Double
    let timeout: Duration?
    let factory: RequestFactory
    var recorders: [Recorder]

    private var started = 0
    private(set) var completed = 0
    private var idleClients = 0
    private var startTime = NIODeadline.now()
    private var done: EventLoopPromise<Void>?

    init(
        loop: any EventLoop, connections: [GRPCClientConnection], clients: Int, firstIndex: Int, total: Int,
        rate: Double, timeout: Duration?, kinds: Int, factory: @escaping RequestFactory
    ) {
        precondition(!connections.isEmpty && connections.allSatisfy { $0.eventLoop === loop })
        self.loop = loop
        self.connections = connections
        self.clients = clients
        self.firstIndex = firstIndex
        self.total = total
        self.rate = rate
        self.timeout = timeout
        self.factory = factory
        self.recorders = Array(repeating: Recorder(), count: kinds)
    }

    /// Starts every client; the future completes when all `total` requests have completed.
    func run() -> EventLoopFuture<Void> {
        self.loop.flatSubmit {
            let promise = self.loop.makePromise(of: Void.self)
            self.done = promise
            self.startTime = .now()
            if self.clients == 0 || self.total == 0 {
                promise.succeed()
            } else {
                for slot in 0..<self.clients { self.issue(slot: slot) }
            }
            return promise.futureResult
        }
    }

    private func issue(slot: Int) {
        guard self.started < self.total else {
            self.idleClients += 1
            if self.idleClients == self.clients { self.done?.succeed() }
            return
        }
        let n = self.started
        self.started += 1
        if self.rate > 0 {
            let due = self.startTime + .nanoseconds(Int64(Double(n) * 1e9 / self.rate))
            if due > .now() {
                self.loop.scheduleTask(deadline: due) { self.send(n, slot: slot) }
                return
            }
        }
        self.send(n, slot: slot)
    }

    private func send(_ n: Int, slot: Int) {
        let request = self.factory(self.firstIndex + n)
        let connection = self.connections[slot % self.connections.count]
        let sent = NIODeadline.now()
        connection.unaryOnEventLoop(path: request.path, request: request.body, timeout: self.timeout) { result in
            let elapsed = NIODeadline.now() - sent
            switch result {
            case .success:
                self.recorders[request.kind].record(nanoseconds: UInt64(max(0, elapsed.nanoseconds)))
            case .failure(let status):
                self.recorders[request.kind].recordError(status)
            }
            self.completed += 1
            if case .failure = result {
                // A failed call may complete at once, inside unaryOnEventLoop (a closed
                // connection): issuing the next one from here would recurse once per remaining
                // request until the stack overflows (seen when the server stopped mid-run).
                self.loop.execute { self.issue(slot: slot) }
            } else {
                self.issue(slot: slot)
            }
        }
    }
}

/// Splits `count` into `parts` near-equal shares, larger ones first.
func share(_ count: Int, parts: Int, index: Int) -> Int {
    count / parts + (index < count % parts ? 1 : 0)
}

/// Runs the factory's requests over the connections, `clients` at a time, with a progress bar;
/// returns the merged recorders (one per kind) and the wall time in nanoseconds.
func runUnaryLoad(
    connections: Connections, options: BenchOptions, kinds: Int, factory: @escaping @Sendable RequestFactory
) async throws -> (recorders: [Recorder], wallNanoseconds: UInt64) {
    let threads = connections.loops.count
    var shards: [LoadShard] = []
    var first = 0
    for t in 0..<threads {
        let mine = connections.all.enumerated().filter { $0.offset % threads == t }.map(\.element)
        let total = share(options.total, parts: threads, index: t)
        shards.append(
            LoadShard(
                loop: connections.loops[t], connections: mine, clients: share(options.clients, parts: threads, index: t),
                firstIndex: first, total: total, rate: options.rate / Double(threads), timeout: options.requestTimeout,
                kinds: kinds, factory: factory))
        first += total
    }
    let start = NIODeadline.now()
    let futures = shards.map { $0.run() }
    let progressTask = Task {
        var progress = Progress(total: options.total)
        while !Task.isCancelled {
            var done = 0
            for s in shards { done += (try? await s.loop.submit { s.completed }.get()) ?? 0 }
            progress.show(done: done)
            try? await Task.sleep(for: .milliseconds(250))
        }
    }
    for f in futures { try await f.get() }
    let wall = NIODeadline.now() - start
    progressTask.cancel()
    _ = await progressTask.value
    var progress = Progress(total: options.total)
    progress.show(done: options.total)
    progress.finish()
    var merged = Array(repeating: Recorder(), count: kinds)
    for s in shards {
        let recorders = try await s.loop.submit { s.recorders }.get()
        for k in 0..<kinds { merged[k].merge(recorders[k]) }
    }
    return (merged, UInt64(max(0, wall.nanoseconds)))
}
