import CairnAPI
import CairnGRPC
import CairnMVCC

/// Why the server could not serve a request, with etcd's texts.
public enum ServerError: Error, Equatable, Sendable, CustomStringConvertible {
    case noLeader
    case stopped
    case tooManyRequests
    case timeout
    case spaceExceeded
    case leaseTTLTooLarge
    case leaseNotFound
    case badLeaderTransferee
    case keyspace(KeyspaceError)
    /// The member stopped serving writes after a storage failure; the reason.
    case halted(String)

    public var description: String {
        switch self {
        case .noLeader: return "etcdserver: no leader"
        case .stopped: return "etcdserver: server stopped"
        case .tooManyRequests: return "etcdserver: too many requests"
        case .timeout: return "etcdserver: request timed out"
        case .spaceExceeded: return "etcdserver: mvcc: database space exceeded"
        case .leaseTTLTooLarge: return "etcdserver: too large lease TTL"
        case .leaseNotFound: return "etcdserver: requested lease not found"
        case .badLeaderTransferee: return "etcdserver: bad leader transferee"
        case .keyspace(let e): return e.grpcMessage
        case .halted(let why): return "cairn: member halted: \(why)"
        }
    }

    /// etcd's gRPC status for the error.
    public var status: GRPCStatus {
        switch self {
        case .noLeader, .stopped, .timeout, .halted: return GRPCStatus(.unavailable, description)
        case .tooManyRequests, .spaceExceeded: return GRPCStatus(.resourceExhausted, description)
        case .leaseTTLTooLarge: return GRPCStatus(.outOfRange, description)
        case .leaseNotFound: return GRPCStatus(.notFound, description)
        case .badLeaderTransferee: return GRPCStatus(.failedPrecondition, description)
        case .keyspace(let e): return KVStatus.from(e)
        }
    }

    var kvError: KVServerError {
        switch self {
        case .keyspace(let e): return .keyspace(e)
        case .noLeader, .stopped, .timeout, .halted: return .unavailable(description)
        case .tooManyRequests, .spaceExceeded: return .resourceExhausted(description)
        default: return .internal(description)
        }
    }
}
