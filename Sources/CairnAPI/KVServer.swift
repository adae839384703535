import CairnBackend
import CairnMVCC
import NIOCore

/// Why a `KVServer` could not serve a request.
public enum KVServerError: Error, Equatable, Sendable {
    /// The keyspace refused or failed the request (etcd's texts in `grpcMessage`).
    case keyspace(KeyspaceError)
    /// The server cannot serve now (no leader, stopping, …).
    case unavailable(String)
    /// The server is overloaded or out of space ("too many requests", "database space exceeded").
    case resourceExhausted(String)
    /// An unexpected failure.
    case `internal`(String)
}

/// The one narrow interface the KV handlers see.
///
/// Requests reaching it have been validated as etcd's v3rpc layer does
/// (`KVValidation`). `LocalKVServer` implements it over a bare keyspace; the
/// Raft-backed server will implement it by proposing writes.
public protocol KVServer: Sendable {
    /// Serves a range; `serializable` allows a member-local (possibly stale) read.
    func range(_ r: RangeRequest, serializable: Bool) async throws(KVServerError) -> RangeResponse
    /// Applies a put as its own revision.
    func put(_ r: PutRequest) async throws(KVServerError) -> PutResponse
    /// Deletes a key or a range.
    func deleteRange(_ r: DeleteRangeRequest) async throws(KVServerError) -> DeleteRangeResponse
    /// Applies a txn as one revision.
    func txn(_ r: TxnRequest) async throws(KVServerError) -> TxnResponse
    /// Compacts at `revision`; returns the header revision. With `physical`, returns only
    /// once the compacted revisions are removed from the backend.
    func compact(revision: Int64, physical: Bool) async throws(KVServerError) -> Int64
    /// The identity put into every top-level response header.
    var header: (clusterID: UInt64, memberID: UInt64, raftTerm: UInt64) { get }
    /// Starts a write and calls `complete` exactly once, on any thread, with its result.
    ///
    /// The KV service serves Put, DeleteRange and Txn through this callback form so that a
    /// write costs no task and no thread hop of its own. `encodedRequest` is the etcd protobuf
    /// message the write was decoded from: a server that logs requests may store these bytes
    /// instead of encoding the request again. The default runs the async method in a task.
    func startWrite(
        _ write: KVWrite, encodedRequest: ByteBuffer,
        complete: @escaping @Sendable (Result<KVWriteResult, KVServerError>) -> Void)
}

/// A write the KV service serves (Put, DeleteRange, Txn).
public enum KVWrite: Sendable {
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
}

/// The result of a `KVWrite`, of the same kind.
public enum KVWriteResult: Sendable {
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
}

extension KVServer {
    public func startWrite(
        _ write: KVWrite, encodedRequest: ByteBuffer,
        complete: @escaping @Sendable (Result<KVWriteResult, KVServerError>) -> Void
    ) {
        Task {
            do throws(KVServerError) {
                switch write {
                case .put(let r): complete(.success(.put(try await self.put(r))))
                case .deleteRange(let r): complete(.success(.deleteRange(try await self.deleteRange(r))))
                case .txn(let r): complete(.success(.txn(try await self.txn(r))))
                }
            } catch {
                complete(.failure(error))
            }
        }
    }
}

/// A single-member `KVServer` straight over a `Keyspace`: each write is its own `apply` batch.
///
/// **No durability beyond the backend's own commit: there is no WAL and no Raft.**
/// Writes are not logged, not replicated, and `serializable` is meaningless (every
/// read is local). It exists for tests and local tools until the Raft apply loop
/// exists; do not serve real clients with it.
///
/// Keyspace calls are synchronous and may block on the backend; callers run it
/// off the event loop (the KV service uses `unaryAsync`).
public struct LocalKVServer<B: StorageBackend>: KVServer {
    /// The keyspace served.
    public let keyspace: Keyspace<B>
    public let header: (clusterID: UInt64, memberID: UInt64, raftTerm: UInt64)

    /// Serves `keyspace` with a fixed header identity (raft term defaults to 1, no Raft behind it).
    public init(keyspace: Keyspace<B>, clusterID: UInt64 = 1, memberID: UInt64 = 1, raftTerm: UInt64 = 1) {
        self.keyspace = keyspace
        self.header = (clusterID, memberID, raftTerm)
    }

    public func range(_ r: RangeRequest, serializable: Bool) async throws(KVServerError) -> RangeResponse {
        do { return try keyspace.range(r) } catch { throw .keyspace(error) }
    }

    public func put(_ r: PutRequest) async throws(KVServerError) -> PutResponse {
        try write { w in try w.put(r) }
    }

    public func deleteRange(_ r: DeleteRangeRequest) async throws(KVServerError) -> DeleteRangeResponse {
        try write { w in try w.deleteRange(r) }
    }

    public func txn(_ r: TxnRequest) async throws(KVServerError) -> TxnResponse {
        try write { w in try w.txn(r) }
    }

    /// `Keyspace.apply` removes the compacted revisions before returning, so every
    /// compaction here is already physical when it returns.
    public func compact(revision: Int64, physical: Bool) async throws(KVServerError) -> Int64 {
        try write { w in try w.compact(revision) }
    }

    private func write<R>(_ body: (KeyspaceWriter<B>) throws -> R) throws(KVServerError) -> R {
        do {
            return try keyspace.apply(body)
        } catch let e as KeyspaceError {
            throw .keyspace(e)
        } catch {
            throw .internal("\(error)")
        }
    }
}
