import CairnAPI
import CairnBackend
import CairnGRPC
import CairnMVCC
import CairnProto
import Logging
import NIOCore
import SwiftProtobuf

/// etcd's `etcdserverpb.Watch` service: one `WatchStream` per gRPC stream.
public enum WatchService {
    public static let serviceName = "etcdserverpb.Watch"

    public static func register<B: StorageBackend>(
        on router: inout GRPCRouter, server: RaftServer<B>, maxResponseBytes: Int, logger: Logger
    ) {
        router.register(service: serviceName, method: "Watch", .bidirectional { context, writer in
            WatchStream(server: server, context: context, writer: writer, maxResponseBytes: maxResponseBytes, logger: logger)
        })
    }
}

/// One Watch stream. Requests arrive on the event loop; responses for events are built and
/// encoded on the hub's dispatcher thread and written on the event loop.
///
/// Outbound bytes not yet written to the connection are counted; above
/// `maxOutstandingBytes` the stream reports itself blocked and the hub stops reading history
/// for its watchers until the connection drains, so a client that stops reading costs a
/// bounded amount of memory.
final class WatchStream<B: StorageBackend>: GRPCBidiStreamHandler, WatchSink, @unchecked Sendable {
    static var maxOutstandingBytes: Int { 4 << 20 }

    let server: RaftServer<B>
    let eventLoop: any EventLoop
    let writer: NIOLoopBound<GRPCStreamWriter>
    let maxResponseBytes: Int
    let logger: Logger
    /// Event-loop state.
    private var watchers: [Int64: Watcher] = [:]
    private var nextWatchID: Int64 = 0
    private var closed = false
    /// Shared with the dispatcher thread.
    private let outstanding = LockedValue(0)

    init(server: RaftServer<B>, context: GRPCCallContext, writer: GRPCStreamWriter, maxResponseBytes: Int, logger: Logger) {
        self.server = server
        self.eventLoop = context.eventLoop
        self.writer = NIOLoopBound(writer, eventLoop: context.eventLoop)
        self.maxResponseBytes = maxResponseBytes
        self.logger = logger
        server.watchHub.countStream(1)
    }

    // MARK: Inbound (event loop)

    func receive(_ message: ByteBuffer) {
        let request: Etcdserverpb_WatchRequest
        do {
            request = try KVService.decode(Etcdserverpb_WatchRequest.self, message)
        } catch {
            end(error)
            return
        }
        switch request.requestUnion {
        case .createRequest(let c): create(c)
        case .cancelRequest(let c): cancel(c.watchID)
        case .progressRequest:
            var r = Etcdserverpb_WatchResponse()
            r.header = header(revision: server.keyspace.revision)
            r.watchID = -1
            send(r)
        case nil:
            break
        }
    }

    func endOfInput() {
        end(nil)
    }

    func cancelled() {
        guard !closed else { return }
        closed = true
        removeAll()
        server.watchHub.countStream(-1)
    }

    private func end(_ status: GRPCStatus?) {
        guard !closed else { return }
        closed = true
        removeAll()
        server.watchHub.countStream(-1)
        writer.value.finish(status ?? .ok)
    }

    private func removeAll() {
        for w in watchers.values { server.watchHub.remove(w) }
        watchers.removeAll()
    }

    private func create(_ c: Etcdserverpb_WatchCreateRequest) {
        var id = c.watchID
        var failure = false
        if id != 0 {
            if watchers[id] != nil { failure = true }
        } else {
            while watchers[nextWatchID] != nil { nextWatchID += 1 }
            id = nextWatchID
            nextWatchID += 1
        }
        let key = [UInt8](c.key)
        let end = [UInt8](c.rangeEnd)
        if !end.isEmpty && end != [0] && compareBytes(key, end) >= 0 { failure = true }
        let revision = server.keyspace.revision
        var r = Etcdserverpb_WatchResponse()
        r.header = header(revision: revision)
        r.created = true
        if failure {
            r.watchID = -1
            r.canceled = true
            send(r)
            return
        }
        r.watchID = id
        // From the revision after the one the created response reports, so nothing between
        // the two is missed.
        let w = Watcher(
            id: id, key: key, rangeEnd: end, startRevision: c.startRevision > 0 ? c.startRevision : revision + 1, prevKV: c.prevKv,
            noPut: c.filters.contains(.noput), noDelete: c.filters.contains(.nodelete),
            progressNotify: c.progressNotify, fragment: c.fragment, sink: self)
        watchers[id] = w
        // The created response goes out before anything the hub delivers for this watcher:
        // deliveries are written on this event loop, after this call returns.
        send(r)
        server.watchHub.add(w)
    }

    private func cancel(_ id: Int64) {
        guard let w = watchers.removeValue(forKey: id) else { return }
        server.watchHub.remove(w)
        var r = Etcdserverpb_WatchResponse()
        r.header = header(revision: server.keyspace.revision)
        r.watchID = id
        r.canceled = true
        send(r)
    }

    private func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        KVConversion.header(server.header, revision: revision)
    }

    /// Encodes and writes on the event loop.
    private func send(_ r: Etcdserverpb_WatchResponse) {
        guard !closed, let bytes = try? KVService.encode(r) else { return }
        write(bytes)
    }

    private func write(_ bytes: ByteBuffer) {
        let count = bytes.readableBytes
        outstanding.withLock { $0 += count }
        let promise = eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { [self] _ in release(count) }
        writer.value.send(bytes, promise: promise)
    }

    /// Forgets `count` outstanding bytes; wakes the hub if that unblocks the stream.
    private func release(_ count: Int) {
        let unblocked = outstanding.withLock { n -> Bool in
            let was = n > Self.maxOutstandingBytes
            n -= count
            return was && n <= Self.maxOutstandingBytes
        }
        if unblocked { server.watchHub.notify() }
    }

    // MARK: WatchSink (dispatcher thread)

    var isBlocked: Bool { outstanding.withLock { $0 > Self.maxOutstandingBytes } }

    func deliver(watcher: Watcher, events: [WatchEvent], revision: Int64) {
        var protoEvents: [Mvccpb_Event] = []
        protoEvents.reserveCapacity(events.count)
        for e in events {
            var pe = Mvccpb_Event()
            pe.type = e.event.kind == .put ? .put : .delete
            pe.kv = KVConversion.proto(e.event.kv)
            if let p = e.prevKV { pe.prevKv = KVConversion.proto(p) }
            protoEvents.append(pe)
        }
        var r = Etcdserverpb_WatchResponse()
        r.header = header(revision: revision)
        r.watchID = watcher.id
        var buffers: [ByteBuffer] = []
        if watcher.fragment, protoEvents.count > 1,
            Self.size(of: r) + protoEvents.reduce(0, { $0 + Self.size(of: $1) + 6 }) > maxResponseBytes
        {
            // Split into responses that each fit; every part but the last says `fragment`.
            var part: [Mvccpb_Event] = []
            var partBytes = 0
            var parts: [[Mvccpb_Event]] = []
            for e in protoEvents {
                let n = Self.size(of: e) + 6
                if !part.isEmpty && partBytes + n > maxResponseBytes {
                    parts.append(part)
                    part = []
                    partBytes = 0
                }
                part.append(e)
                partBytes += n
            }
            if !part.isEmpty { parts.append(part) }
            for (i, p) in parts.enumerated() {
                var f = r
                f.events = p
                f.fragment = i < parts.count - 1
                if let b = try? KVService.encode(f) { buffers.append(b) }
            }
        } else {
            r.events = protoEvents
            if let b = try? KVService.encode(r) { buffers.append(b) }
        }
        writeFromDispatcher(buffers, for: watcher)
    }

    static func size(of m: some SwiftProtobuf.Message) -> Int {
        let bytes: [UInt8] = (try? m.serializedBytes()) ?? []
        return bytes.count
    }

    func compacted(watcher: Watcher, compactRevision: Int64) {
        var r = Etcdserverpb_WatchResponse()
        r.header = header(revision: 0)  // etcd's compaction cancel carries no revision
        r.watchID = watcher.id
        r.compactRevision = compactRevision
        r.canceled = true
        guard let b = try? KVService.encode(r) else { return }
        eventLoop.execute { [self] in
            guard watchers[watcher.id] === watcher else { return }
            watchers.removeValue(forKey: watcher.id)
            if !closed { write(b) }
        }
    }

    func progress(watcher: Watcher, revision: Int64) {
        var r = Etcdserverpb_WatchResponse()
        r.header = header(revision: revision)
        r.watchID = watcher.id
        guard let b = try? KVService.encode(r) else { return }
        writeFromDispatcher([b], for: watcher)
    }

    private func writeFromDispatcher(_ buffers: [ByteBuffer], for watcher: Watcher) {
        guard !buffers.isEmpty else { return }
        // Counted now, so that `isBlocked` sees them before the event loop writes them.
        let total = buffers.reduce(0) { $0 + $1.readableBytes }
        outstanding.withLock { $0 += total }
        eventLoop.execute { [self] in
            release(total)
            guard !closed, watchers[watcher.id] === watcher else { return }
            for b in buffers { write(b) }
        }
    }
}
