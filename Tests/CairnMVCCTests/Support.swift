import CairnBackend
import CairnLMDB
import Foundation
import Testing

@testable import CairnMVCC

/// The backends every keyspace test runs against.
enum BackendKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, lmdb
    var testDescription: String { rawValue }
}

/// One request to apply, for tests that drive the keyspace generically.
enum Op {
    case put(PutRequest)
    case delete(DeleteRangeRequest)
    case txn(TxnRequest)
    case compact(Int64)
    case leaseGrant(LeaseRecord)
    case leaseRevoke(Int64)
    case applied(UInt64)
}

enum OpResult: Equatable {
    case put(PutResponse)
    case delete(DeleteRangeResponse)
    case txn(TxnResponse)
    case revision(Int64)
    case none
}

/// A keyspace over either backend behind non-generic calls, able to close
/// and reopen its store.
final class TestKeyspace {
    let kind: BackendKind
    let directory: String
    private var impl: AnyImpl!

    init(_ kind: BackendKind, quotaBytes: Int64 = BackendConfiguration.defaultQuotaBytes, maxTxnOps: Int = 128) throws {
        self.kind = kind
        self.directory = NSTemporaryDirectory() + "cairn-mvcc-\(UUID().uuidString)"
        self.quota = quotaBytes
        self.maxTxnOps = maxTxnOps
        try open()
    }

    private let quota: Int64
    private let maxTxnOps: Int
    private var memory: MemoryBackend?

    deinit {
        impl = nil
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func open() throws {
        let config = BackendConfiguration(tables: Keyspace<MemoryBackend>.tableNames, quotaBytes: quota)
        switch kind {
        case .memory:
            let backend = memory ?? MemoryBackend(configuration: config)
            memory = backend
            impl = Impl(try Keyspace(backend: backend, maxTxnOps: maxTxnOps, compactionBatchSize: 7))
        case .lmdb:
            var options = LMDBBackend.Options()
            options.initialMapSizeBytes = 1 << 20  // small, to exercise growth
            let backend = try LMDBBackend(path: directory, configuration: config, options: options)
            impl = Impl(try Keyspace(backend: backend, maxTxnOps: maxTxnOps, compactionBatchSize: 7))
        }
    }

    /// Closes the store and opens it again from what the backend holds.
    func reopen() throws {
        impl = nil
        try open()
    }

    var revision: Int64 { impl.revision }
    var compactedRevision: Int64 { impl.compactedRevision }
    var appliedIndex: UInt64 { impl.appliedIndex }

    func range(_ r: RangeRequest) throws -> RangeResponse { try impl.range(r) }
    func events(from: Int64, to: Int64? = nil) throws -> [Event] { try impl.events(from, to) }
    func lease(_ id: Int64) -> (record: LeaseRecord, keys: [[UInt8]])? { impl.lease(id) }
    func stats() throws -> BackendStats { try impl.stats() }

    /// Applies `ops` in one batch; each op's outcome separately.
    func batch(_ ops: [Op]) throws -> [Result<OpResult, KeyspaceError>] { try impl.batch(ops) }

    /// Applies one op in a batch of its own.
    @discardableResult
    func apply(_ op: Op) throws -> OpResult {
        try batch([op])[0].get()
    }

    @discardableResult
    func put(_ key: String, _ value: String, lease: Int64 = 0, prevKV: Bool = false) throws -> PutResponse {
        guard case .put(let r) = try apply(.put(PutRequest(key: b(key), value: b(value), lease: lease, prevKV: prevKV))) else {
            fatalError()
        }
        return r
    }

    @discardableResult
    func delete(_ key: String, _ end: String = "", prevKV: Bool = false) throws -> DeleteRangeResponse {
        guard case .delete(let r) = try apply(.delete(DeleteRangeRequest(key: b(key), rangeEnd: b(end), prevKV: prevKV))) else {
            fatalError()
        }
        return r
    }

    func txn(_ t: TxnRequest) throws -> TxnResponse {
        guard case .txn(let r) = try apply(.txn(t)) else { fatalError() }
        return r
    }

    func get(_ key: String, rev: Int64 = 0) throws -> KeyValue? {
        try range(RangeRequest(key: b(key), revision: rev)).kvs.first
    }

    func compact(_ rev: Int64) throws { try apply(.compact(rev)) }

    /// Applies `ops` in one batch and, before it commits, reads `read` the
    /// way another thread would (the last committed state).
    func readDuringBatch(_ ops: [Op], _ read: RangeRequest) throws -> Result<RangeResponse, KeyspaceError> {
        try impl.readDuringBatch(ops, read)
    }

    /// Records a lease checkpoint in a batch of its own.
    func checkpoint(_ id: Int64, _ remaining: Int64) throws { try impl.checkpoint(id, remaining) }

    func events(from: Int64, maxEvents: Int) throws -> [Event] { try impl.events(from, maxEvents) }

    /// Corrupts the backend's next commit (memory backend only): used to
    /// check that a failed batch leaves nothing behind.
    func withFailingBatch(_ ops: [Op]) throws -> (any Error)? { try impl.failingBatch(ops) }
}

/// Converts a string to bytes.
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The string of some bytes.
func s(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

private protocol AnyImplProtocol {}

private class AnyImpl {
    var revision: Int64 { fatalError() }
    var compactedRevision: Int64 { fatalError() }
    var appliedIndex: UInt64 { fatalError() }
    func range(_ r: RangeRequest) throws -> RangeResponse { fatalError() }
    func events(_ from: Int64, _ to: Int64?) throws -> [Event] { fatalError() }
    func lease(_ id: Int64) -> (record: LeaseRecord, keys: [[UInt8]])? { fatalError() }
    func batch(_ ops: [Op]) throws -> [Result<OpResult, KeyspaceError>] { fatalError() }
    func failingBatch(_ ops: [Op]) throws -> (any Error)? { fatalError() }
    func stats() throws -> BackendStats { fatalError() }
    func readDuringBatch(_ ops: [Op], _ read: RangeRequest) throws -> Result<RangeResponse, KeyspaceError> { fatalError() }
    func checkpoint(_ id: Int64, _ remaining: Int64) throws { fatalError() }
    func events(_ from: Int64, _ maxEvents: Int) throws -> [Event] { fatalError() }
}

private struct InjectedFailure: Error {}

private final class Impl<B: StorageBackend>: AnyImpl {
    let ks: Keyspace<B>
    init(_ ks: Keyspace<B>) { self.ks = ks }

    override var revision: Int64 { ks.revision }
    override var compactedRevision: Int64 { ks.compactedRevision }
    override var appliedIndex: UInt64 { ks.appliedIndex }
    override func range(_ r: RangeRequest) throws -> RangeResponse { try ks.range(r) }
    override func events(_ from: Int64, _ to: Int64?) throws -> [Event] { try ks.events(from: from, to: to).events }
    override func lease(_ id: Int64) -> (record: LeaseRecord, keys: [[UInt8]])? { ks.lease(id) }
    override func stats() throws -> BackendStats { try ks.backend.stats() }
    override func readDuringBatch(_ ops: [Op], _ read: RangeRequest) throws -> Result<RangeResponse, KeyspaceError> {
        try ks.apply { w in
            for op in ops { _ = try Self.run(w, op) }
            return typed { try ks.range(read) }
        }
    }
    override func checkpoint(_ id: Int64, _ remaining: Int64) throws {
        try ks.apply { w in try w.leaseCheckpoint(id: id, remainingTTLSeconds: remaining) }
    }
    override func events(_ from: Int64, _ maxEvents: Int) throws -> [Event] {
        try ks.events(from: from, maxEvents: maxEvents).events
    }

    static func run(_ w: KeyspaceWriter<B>, _ op: Op) throws(KeyspaceError) -> OpResult {
        switch op {
        case .put(let r): return .put(try w.put(r))
        case .delete(let r): return .delete(try w.deleteRange(r))
        case .txn(let r): return .txn(try w.txn(r))
        case .compact(let rev): return .revision(try w.compact(rev))
        case .leaseGrant(let l):
            try w.leaseGrant(l)
            return .none
        case .leaseRevoke(let id): return .revision(try w.leaseRevoke(id))
        case .applied(let i):
            w.setAppliedIndex(i)
            return .none
        }
    }

    override func batch(_ ops: [Op]) throws -> [Result<OpResult, KeyspaceError>] {
        try ks.apply { w in
            ops.map { op in
                do throws(KeyspaceError) { return .success(try Self.run(w, op)) } catch { return .failure(error) }
            }
        }
    }

    override func failingBatch(_ ops: [Op]) throws -> (any Error)? {
        do {
            try ks.apply { w in
                for op in ops { _ = try? Self.run(w, op) }
                throw InjectedFailure()
            }
            return nil
        } catch {
            return error
        }
    }
}
