import CairnAPI
import CairnBackend
import CairnMVCC
import NIOCore

/// The KV service's narrow interface, served through Raft.
extension RaftServer: KVServer {
    public func range(_ r: RangeRequest, serializable: Bool) async throws(KVServerError) -> RangeResponse {
        if !serializable {
            do { try await linearizableBarrier() } catch { throw error.kvError }
        }
        do { return try keyspace.range(r) } catch { throw .keyspace(error) }
    }

    public func put(_ r: PutRequest) async throws(KVServerError) -> PutResponse {
        switch try await write(.put(r)) {
        case .put(let resp): return resp
        case let other: throw Self.unexpected(other)
        }
    }

    public func deleteRange(_ r: DeleteRangeRequest) async throws(KVServerError) -> DeleteRangeResponse {
        switch try await write(.deleteRange(r)) {
        case .deleteRange(let resp): return resp
        case let other: throw Self.unexpected(other)
        }
    }

    public func txn(_ t: TxnRequest) async throws(KVServerError) -> TxnResponse {
        switch try await write(.txn(t)) {
        case .txn(let resp): return resp
        case let other: throw Self.unexpected(other)
        }
    }

    public func compact(revision: Int64, physical: Bool) async throws(KVServerError) -> Int64 {
        // The applier removes the compacted revisions before it completes the request, so the
        // answer always comes after the physical compaction.
        switch try await write(.compact(revision: revision, physical: physical)) {
        case .compact(let rev): return rev
        case let other: throw Self.unexpected(other)
        }
    }

    public func startWrite(
        _ write: KVWrite, encodedRequest: ByteBuffer,
        complete: @escaping @Sendable (Result<KVWriteResult, KVServerError>) -> Void
    ) {
        let request: ServerRequest
        switch write {
        case .put(let r): request = .put(r)
        case .deleteRange(let r): request = .deleteRange(r)
        case .txn(let r): request = .txn(r)
        }
        submit(request, encoded: encodedRequest) { result in
            switch result {
            case .success(.put(let r)): complete(.success(.put(r)))
            case .success(.deleteRange(let r)): complete(.success(.deleteRange(r)))
            case .success(.txn(let r)): complete(.success(.txn(r)))
            case .success(.failed(let e)): complete(.failure(.keyspace(e)))
            case .success(let other): complete(.failure(Self.unexpected(other)))
            case .failure(let e): complete(.failure(e.kvError))
            }
        }
    }

    private func write(_ request: ServerRequest) async throws(KVServerError) -> ApplyResult {
        let result: ApplyResult
        do { result = try await propose(request) } catch { throw error.kvError }
        if case .failed(let e) = result { throw .keyspace(e) }
        return result
    }

    private static func unexpected(_ r: ApplyResult) -> KVServerError {
        .internal("cairn: unexpected apply result \(r)")
    }
}
