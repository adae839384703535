import CCRC32C
import CairnAPI
import CairnBackend
import CairnBolt
import CairnFS
import CairnGRPC
import CairnMVCC
import CairnProto
import CairnSnapshot
import CairnSync
import Foundation
import Logging
import NIOCore
import SwiftProtobuf

/// Every etcd v3 service this member serves, registered on one router.
public enum EtcdServices {
    /// Registers KV, Watch, Lease, Cluster and Maintenance.
    public static func register<B: StorageBackend>(
        on router: inout GRPCRouter, server: RaftServer<B>, maxRequestBytes: Int, maxTxnOps: Int, logger: Logger
    ) {
        KVService.register(on: &router, server: server, maxRequestBytes: maxRequestBytes, maxTxnOps: maxTxnOps, logger: logger)
        WatchService.register(on: &router, server: server, maxResponseBytes: maxRequestBytes, logger: logger)
        LeaseService.register(on: &router, server: server, logger: logger)
        ClusterService.register(on: &router, server: server)
        MaintenanceService.register(on: &router, server: server, logger: logger)
    }
}

/// Shared plumbing of the unary handlers below.
enum Unary {
    static func run<B: StorageBackend, Req: SwiftProtobuf.Message, Resp: SwiftProtobuf.Message>(
        _ server: RaftServer<B>, _: Req.Type,
        _ body: @escaping @Sendable (Req, Etcdserverpb_ResponseHeader) async throws -> Resp
    ) -> GRPCMethodHandler {
        .unaryAsync { buffer, _ in
            let request = try KVService.decode(Req.self, buffer)
            let header = KVConversion.header(server.header, revision: server.keyspace.revision)
            do {
                return try KVService.encode(try await body(request, header))
            } catch let e as ServerError {
                throw e.status
            } catch let e as KeyspaceError {
                throw KVStatus.from(e)
            }
        }
    }
}

// MARK: Lease

public enum LeaseService {
    public static let serviceName = "etcdserverpb.Lease"

    public static func register<B: StorageBackend>(on router: inout GRPCRouter, server: RaftServer<B>, logger: Logger) {
        router.register(service: serviceName, method: "LeaseGrant", Unary.run(server, Etcdserverpb_LeaseGrantRequest.self) { req, header in
            if req.ttl > Lessor.maxTTLSeconds { throw ServerError.leaseTTLTooLarge }
            var id = req.id
            if id == 0 {
                repeat { id = Int64.random(in: 1...Int64.max) } while server.lessor.exists(id)
            }
            let ttl = server.lessor.effectiveTTL(req.ttl)
            switch try await server.propose(.leaseGrant(id: id, ttlSeconds: ttl)) {
            case .leaseGrant(let id, let ttl, let rev):
                var resp = Etcdserverpb_LeaseGrantResponse()
                resp.header = KVConversion.header(server.header, revision: rev)
                resp.id = id
                resp.ttl = ttl
                return resp
            case .failed(let e): throw e
            default: throw GRPCStatus(.internal, "cairn: unexpected lease grant result")
            }
        })
        router.register(service: serviceName, method: "LeaseRevoke", Unary.run(server, Etcdserverpb_LeaseRevokeRequest.self) { req, _ in
            switch try await server.propose(.leaseRevoke(id: req.id)) {
            case .leaseRevoke(let rev):
                var resp = Etcdserverpb_LeaseRevokeResponse()
                resp.header = KVConversion.header(server.header, revision: rev)
                return resp
            case .failed(let e): throw e
            default: throw GRPCStatus(.internal, "cairn: unexpected lease revoke result")
            }
        })
        router.register(service: serviceName, method: "LeaseTimeToLive", Unary.run(server, Etcdserverpb_LeaseTimeToLiveRequest.self) { req, header in
            var resp = Etcdserverpb_LeaseTimeToLiveResponse()
            resp.header = header
            resp.id = req.id
            guard let lease = server.keyspace.lease(req.id), let ttl = server.lessor.timeToLive(req.id) else {
                resp.ttl = -1  // etcd answers an unknown lease with TTL -1, not an error
                return resp
            }
            resp.ttl = ttl.remaining
            resp.grantedTtl = ttl.granted
            if req.keys { resp.keys = lease.keys.map { Data($0) } }
            return resp
        })
        router.register(service: serviceName, method: "LeaseLeases", Unary.run(server, Etcdserverpb_LeaseLeasesRequest.self) { _, header in
            var resp = Etcdserverpb_LeaseLeasesResponse()
            resp.header = header
            resp.leases = server.keyspace.allLeases().map {
                var s = Etcdserverpb_LeaseStatus()
                s.id = $0.id
                return s
            }
            return resp
        })
        router.register(service: serviceName, method: "LeaseKeepAlive", .bidirectional { context, writer in
            KeepAliveStream(server: server, writer: writer)
        })
    }
}

/// The LeaseKeepAlive stream: each request renews one lease on the leader and is answered
/// with its TTL (0 when the lease does not exist, as etcd does).
final class KeepAliveStream<B: StorageBackend>: GRPCBidiStreamHandler {
    let server: RaftServer<B>
    let writer: GRPCStreamWriter
    var done = false

    init(server: RaftServer<B>, writer: GRPCStreamWriter) {
        self.server = server
        self.writer = writer
    }

    func receive(_ message: ByteBuffer) {
        guard !done else { return }
        let req: Etcdserverpb_LeaseKeepAliveRequest
        do { req = try KVService.decode(Etcdserverpb_LeaseKeepAliveRequest.self, message) } catch {
            done = true
            writer.finish(error)
            return
        }
        if !server.status.isLeader {
            done = true
            writer.finish(ServerError.noLeader.status)
            return
        }
        var resp = Etcdserverpb_LeaseKeepAliveResponse()
        resp.header = KVConversion.header(server.header, revision: server.keyspace.revision)
        resp.id = req.id
        resp.ttl = server.keyspace.lease(req.id) != nil ? server.lessor.renew(req.id) ?? 0 : 0
        if let bytes = try? KVService.encode(resp) { writer.send(bytes) }
    }

    func endOfInput() {
        guard !done else { return }
        done = true
        writer.finish()
    }

    func cancelled() { done = true }
}

// MARK: Cluster

public enum ClusterService {
    public static let serviceName = "etcdserverpb.Cluster"

    public static func register<B: StorageBackend>(on router: inout GRPCRouter, server: RaftServer<B>) {
        router.register(service: serviceName, method: "MemberList", Unary.run(server, Etcdserverpb_MemberListRequest.self) { _, header in
            var resp = Etcdserverpb_MemberListResponse()
            resp.header = header
            resp.header.revision = 0  // etcd's cluster responses carry no revision
            var m = Etcdserverpb_Member()
            m.id = server.identity.memberID
            m.name = server.identity.name
            m.peerUrls = server.identity.peerURLs
            m.clientUrls = server.identity.clientURLs
            resp.members = [m]
            return resp
        })
        // Membership changes need the peer transport (the cluster issue); until then they are
        // refused with a clear status rather than half-done.
        for method in ["MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote"] {
            router.register(service: serviceName, method: method, .unaryAsync { _, _ in
                throw GRPCStatus(.unimplemented, "cairn: \(method) needs multi-member support, which this build does not have yet")
            })
        }
    }
}

// MARK: Maintenance

public enum MaintenanceService {
    public static let serviceName = "etcdserverpb.Maintenance"
    /// Bytes per Snapshot stream message.
    static let snapshotChunkBytes = 32 * 1024

    public static func register<B: StorageBackend>(on router: inout GRPCRouter, server: RaftServer<B>, logger: Logger) {
        router.register(service: serviceName, method: "Status", Unary.run(server, Etcdserverpb_StatusRequest.self) { _, header in
            let st = server.status
            let stats = try? server.keyspace.backend.stats()
            var resp = Etcdserverpb_StatusResponse()
            resp.header = header
            resp.version = server.options.etcdVersion
            resp.dbSize = stats?.sizeBytes ?? 0
            resp.dbSizeInUse = stats?.sizeInUseBytes ?? 0
            resp.leader = st.leader
            resp.raftIndex = st.committedIndex
            resp.raftTerm = st.term
            resp.raftAppliedIndex = st.appliedIndex
            resp.errors = server.activeAlarms.map { "memberID:\($0.memberID) alarm:\(alarmName($0.alarm)) " }
            if let halted = st.halted { resp.errors.append(halted) }
            return resp
        })
        router.register(service: serviceName, method: "Alarm", Unary.run(server, Etcdserverpb_AlarmRequest.self) { req, _ in
            // etcd 3.4 answers Alarm without a response header.
            var resp = Etcdserverpb_AlarmResponse()
            func members(_ keys: [RaftServer<B>.AlarmKey]) -> [Etcdserverpb_AlarmMember] {
                keys.map {
                    var m = Etcdserverpb_AlarmMember()
                    m.memberID = $0.memberID
                    m.alarm = Etcdserverpb_AlarmType(rawValue: $0.alarm) ?? .none
                    return m
                }
            }
            let wanted = req.alarm.rawValue
            let matching = server.activeAlarms.filter {
                (wanted == 0 || $0.alarm == wanted) && (req.memberID == 0 || $0.memberID == req.memberID)
            }
            switch req.action {
            case .get:
                resp.alarms = members(matching)
            case .activate, .deactivate:
                let action: AlarmChange.Action = req.action == .activate ? .activate : .deactivate
                if action == .deactivate && matching.isEmpty { return resp }
                let targets = action == .deactivate
                    ? matching : [RaftServer<B>.AlarmKey(memberID: req.memberID, alarm: wanted)]
                for t in targets {
                    _ = try await server.propose(.alarm(AlarmChange(action: action, memberID: t.memberID, alarm: t.alarm)))
                }
                resp.alarms = members(targets)
            case .UNRECOGNIZED(let v):
                throw GRPCStatus(.invalidArgument, "cairn: unknown alarm action \(v)")
            }
            return resp
        })
        router.register(service: serviceName, method: "Hash", Unary.run(server, Etcdserverpb_HashRequest.self) { _, header in
            var resp = Etcdserverpb_HashResponse()
            resp.header = header
            resp.hash = try hashTables(server.keyspace, tables: Keyspace<B>.tableNames, maxRevision: nil)
            return resp
        })
        router.register(service: serviceName, method: "HashKV", Unary.run(server, Etcdserverpb_HashKVRequest.self) { req, header in
            let current = server.keyspace.revision
            let rev = req.revision == 0 ? current : req.revision
            if rev > current { throw KeyspaceError.futureRevision }
            let compacted = server.keyspace.compactedRevision
            if rev < compacted { throw KeyspaceError.compacted }
            var resp = Etcdserverpb_HashKVResponse()
            resp.header = header
            resp.hash = try hashTables(server.keyspace, tables: ["key"], maxRevision: rev)
            resp.compactRevision = compacted
            return resp
        })
        router.register(service: serviceName, method: "Defragment", Unary.run(server, Etcdserverpb_DefragmentRequest.self) { _, header in
            // The backend is rewritten without its free pages and swapped in; reads and writes
            // wait meanwhile, as with etcd.
            _ = try await server.defragment()
            var resp = Etcdserverpb_DefragmentResponse()
            resp.header = header
            return resp
        })
        router.register(service: serviceName, method: "MoveLeader", Unary.run(server, Etcdserverpb_MoveLeaderRequest.self) { req, header in
            try server.moveLeader(to: req.targetID)
            var resp = Etcdserverpb_MoveLeaderResponse()
            resp.header = header
            return resp
        })
        router.register(service: serviceName, method: "Snapshot", .bidirectional { context, writer in
            SnapshotStream(server: server, context: context, writer: writer, logger: logger)
        })
    }

    static func alarmName(_ v: Int) -> String {
        switch v {
        case 1: return "NOSPACE"
        case 2: return "CORRUPT"
        default: return "NONE"
        }
    }

    /// CRC-32C over every key and value of `tables` in one read transaction (for `key`, up to
    /// `maxRevision`). Members of one cluster agree on it when their keyspaces agree.
    static func hashTables<B: StorageBackend>(_ ks: Keyspace<B>, tables: [String], maxRevision: Int64?) throws -> UInt32 {
        let tx = try ks.backend.beginRead()
        defer { tx.close() }
        var crc: UInt32 = 0
        for name in tables {
            let table = try ks.backend.table(named: name)
            crc = name.utf8CString.withUnsafeBytes { cairn_crc32c_update(crc, $0.baseAddress, $0.count) }
            var end: [UInt8]? = nil
            if let maxRevision, name == "key" {
                var e: [UInt8] = []
                withUnsafeBytes(of: (maxRevision + 1).bigEndian) { e.append(contentsOf: $0) }
                end = e
            }
            try tx.scan(table, from: [], to: end, reverse: false) { k, v in
                crc = cairn_crc32c_update(crc, k.baseAddress, k.count)
                crc = cairn_crc32c_update(crc, v.baseAddress, v.count)
                return true
            }
        }
        return crc
    }
}

/// Maintenance.Snapshot: writes a snapshot of the keyspace (one read transaction, so
/// consistent) to a temporary file off the event loop, then streams it in chunks, each
/// written only after the previous one left, so a slow client holds one chunk in memory.
///
/// The snapshot is in etcd 3.4's format (a bbolt database, `EtcdSnapshotExport`) followed by
/// the SHA-256 of the database as a last message, as etcd sends it. A request with the
/// metadata `cairn-snapshot-format: cairn` gets Cairn's own zstd snapshot file instead
/// (`cairnctl snapshot save --format cairn`).
final class SnapshotStream<B: StorageBackend>: GRPCBidiStreamHandler, @unchecked Sendable {
    /// The request metadata that selects the snapshot format: `etcd` (default) or `cairn`.
    static var formatHeader: String { "cairn-snapshot-format" }

    let server: RaftServer<B>
    let eventLoop: any EventLoop
    let writer: NIOLoopBound<GRPCStreamWriter>
    let logger: Logger
    let etcdFormat: Bool
    var started = false
    var finished = false
    var file: FileHandle?
    var remaining = 0
    var path = ""
    /// The SHA-256 of the etcd-format database sent so far; updated by one chunk read at a time.
    var hasher = SHA256()
    var trailerSent = false

    init(server: RaftServer<B>, context: GRPCCallContext, writer: GRPCStreamWriter, logger: Logger) {
        self.server = server
        self.eventLoop = context.eventLoop
        self.writer = NIOLoopBound(writer, eventLoop: context.eventLoop)
        self.logger = logger
        self.etcdFormat = context.headers.first(name: Self.formatHeader) != "cairn"
    }

    func receive(_ message: ByteBuffer) {
        guard !started else { return }
        started = true
        let server = self.server
        let logger = self.logger
        let etcdFormat = self.etcdFormat
        let dir = server.options.memberDirectory + "/snapshot-stream-\(UInt64.random(in: 0...UInt64.max))"
        Task.detached { [self] in
            let result: Result<String, any Error>
            do {
                if etcdFormat {
                    try FileSystem.live.createDirectory(dir)
                    let p = dir + "/db"
                    let started = monotonicNanoseconds()
                    let (size, revision) = try EtcdSnapshotExport.write(
                        backend: server.keyspace.backend, identity: server.identity,
                        clusterVersion: EtcdSnapshotExport.clusterVersion(serverVersion: server.options.etcdVersion), to: p)
                    logger.info(
                        "etcd-format snapshot written",
                        metadata: [
                            "size-bytes": "\(size)", "revision": "\(revision)",
                            "took-ms": "\((monotonicNanoseconds() - started) / 1_000_000)",
                        ])
                    result = .success(p)
                } else {
                    let (p, _) = try Snapshotter.write(
                        backend: server.keyspace.backend, tables: Keyspace<B>.tableNames, term: server.status.term,
                        index: server.status.appliedIndex, membership: [], directory: dir, logger: logger)
                    result = .success(p)
                }
            } catch {
                result = .failure(error)
            }
            eventLoop.execute { self.begin(result, dir: dir) }
        }
    }

    private func begin(_ result: Result<String, any Error>, dir: String) {
        switch result {
        case .failure(let e):
            cleanup(dir)
            finish(GRPCStatus(.internal, "cairn: snapshot failed: \(e)"))
        case .success(let p):
            path = p
            guard !finished, let fh = FileHandle(forReadingAtPath: p) else {
                cleanup(dir)
                return finish(GRPCStatus(.internal, "cairn: cannot read the snapshot"))
            }
            file = fh
            remaining = Int((try? FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? 0)
            sendNext(dir: dir)
        }
    }

    /// Reads the next chunk off the event loop (file reads block), then sends it.
    private func sendNext(dir: String) {
        guard !finished, let fh = file else { return cleanup(dir) }
        let size = MaintenanceService.snapshotChunkBytes
        let etcdFormat = self.etcdFormat
        let remaining = self.remaining
        Task.detached { [self] in
            let chunk = fh.readData(ofLength: size)
            let isLast = chunk.isEmpty || remaining - chunk.count <= 0
            guard etcdFormat else {
                eventLoop.execute { self.send(chunk, dir: dir, last: isLast) }
                return
            }
            // One read is in flight at a time, so the hasher has one user at a time.
            hasher.update(chunk)
            if !chunk.isEmpty { eventLoop.execute { self.send(chunk, dir: dir, last: false) } }
            if isLast {
                // The database is out: its SHA-256 follows as the last message, as etcd sends it.
                let trailer = Data(hasher.finalize())
                eventLoop.execute { self.send(trailer, dir: dir, last: true) }
            }
        }
    }

    private func send(_ chunk: Data, dir: String, last: Bool) {
        guard !finished else { return cleanup(dir) }
        if !(etcdFormat && last) { remaining -= chunk.count }
        var resp = Etcdserverpb_SnapshotResponse()
        resp.header = KVConversion.header(server.header, revision: server.keyspace.revision)
        resp.remainingBytes = UInt64(max(remaining, 0))
        resp.blob = chunk
        guard let bytes = try? KVService.encode(resp) else { return finish(GRPCStatus(.internal, "encode")) }
        let promise = eventLoop.makePromise(of: Void.self)
        writer.value.send(bytes, promise: promise)
        promise.futureResult.whenComplete { [self] result in
            switch result {
            case .success where !last && remaining > 0 && !chunk.isEmpty: sendNext(dir: dir)
            case .success where !last: break  // the etcd trailer is on its way
            case .success:
                cleanup(dir)
                finish(nil)
            case .failure:
                cleanup(dir)
                finished = true
            }
        }
    }

    private func cleanup(_ dir: String) {
        try? file?.close()
        file = nil
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func finish(_ status: GRPCStatus?) {
        guard !finished else { return }
        finished = true
        writer.value.finish(status ?? .ok)
    }

    func endOfInput() {}
    func cancelled() { finished = true }
}
