import CairnBackend

/// A keyspace revision: `main` counts atomic changes (a put, a delete, a txn),
/// `sub` orders the changes within one. etcd's `revision{main, sub}`.
public struct Revision: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var main: Int64
    public var sub: Int64

    public init(main: Int64, sub: Int64 = 0) {
        self.main = main
        self.sub = sub
    }

    public static func < (l: Revision, r: Revision) -> Bool {
        l.main != r.main ? l.main < r.main : l.sub < r.sub
    }

    public var description: String { "\(main)_\(sub)" }
}

/// A key's state at one revision: etcd's `mvccpb.KeyValue`.
public struct KeyValue: Equatable, Hashable, Sendable {
    public var key: [UInt8]
    /// The revision of the put that created the key's current generation.
    public var createRevision: Int64
    /// The revision of the last change to the key.
    public var modRevision: Int64
    /// Puts since creation (1 after creation); a delete resets it.
    public var version: Int64
    public var value: [UInt8]
    /// The attached lease, 0 for none.
    public var lease: Int64

    public init(
        key: [UInt8], createRevision: Int64 = 0, modRevision: Int64 = 0, version: Int64 = 0,
        value: [UInt8] = [], lease: Int64 = 0
    ) {
        self.key = key
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.value = value
        self.lease = lease
    }
}

/// etcd's `RangeRequest.SortOrder`.
public enum SortOrder: Int, Sendable { case none = 0, ascend = 1, descend = 2 }

/// etcd's `RangeRequest.SortTarget`.
public enum SortTarget: Int, Sendable { case key = 0, version = 1, create = 2, mod = 3, value = 4 }

/// etcd's `RangeRequest`, less the fields that only concern the server
/// (`serializable`).
public struct RangeRequest: Sendable, Equatable {
    /// The first key; must not be empty.
    public var key: [UInt8]
    /// Empty: the single `key`. `[0]`: every key >= `key`. Otherwise `[key, rangeEnd)`.
    public var rangeEnd: [UInt8]
    /// At most this many kvs (0: no limit); `more` tells whether some were left.
    public var limit: Int64
    /// Read at this revision (<= 0: the current one).
    public var revision: Int64
    public var sortOrder: SortOrder
    public var sortTarget: SortTarget
    public var keysOnly: Bool
    public var countOnly: Bool
    public var minModRevision: Int64
    public var maxModRevision: Int64
    public var minCreateRevision: Int64
    public var maxCreateRevision: Int64

    public init(
        key: [UInt8], rangeEnd: [UInt8] = [], limit: Int64 = 0, revision: Int64 = 0,
        sortOrder: SortOrder = .none, sortTarget: SortTarget = .key, keysOnly: Bool = false,
        countOnly: Bool = false, minModRevision: Int64 = 0, maxModRevision: Int64 = 0,
        minCreateRevision: Int64 = 0, maxCreateRevision: Int64 = 0
    ) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.limit = limit
        self.revision = revision
        self.sortOrder = sortOrder
        self.sortTarget = sortTarget
        self.keysOnly = keysOnly
        self.countOnly = countOnly
        self.minModRevision = minModRevision
        self.maxModRevision = maxModRevision
        self.minCreateRevision = minCreateRevision
        self.maxCreateRevision = maxCreateRevision
    }
}

public struct RangeResponse: Sendable, Equatable {
    /// The keyspace's revision when the range was served (the header revision).
    public var revision: Int64
    public var kvs: [KeyValue]
    /// Whether `limit` left matching keys out.
    public var more: Bool
    /// How many keys are in the range at the requested revision.
    public var count: Int64

    public init(revision: Int64, kvs: [KeyValue], more: Bool, count: Int64) {
        self.revision = revision
        self.kvs = kvs
        self.more = more
        self.count = count
    }
}

/// etcd's `PutRequest`.
public struct PutRequest: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var lease: Int64
    public var prevKV: Bool
    /// Keep the current value (the key must exist; `value` must be empty).
    public var ignoreValue: Bool
    /// Keep the current lease (the key must exist; `lease` must be 0).
    public var ignoreLease: Bool

    public init(
        key: [UInt8], value: [UInt8] = [], lease: Int64 = 0, prevKV: Bool = false, ignoreValue: Bool = false,
        ignoreLease: Bool = false
    ) {
        self.key = key
        self.value = value
        self.lease = lease
        self.prevKV = prevKV
        self.ignoreValue = ignoreValue
        self.ignoreLease = ignoreLease
    }
}

public struct PutResponse: Sendable, Equatable {
    public var revision: Int64
    public var prevKV: KeyValue?

    public init(revision: Int64, prevKV: KeyValue?) {
        self.revision = revision
        self.prevKV = prevKV
    }
}

/// etcd's `DeleteRangeRequest`; `rangeEnd` as in `RangeRequest`.
public struct DeleteRangeRequest: Sendable, Equatable {
    public var key: [UInt8]
    public var rangeEnd: [UInt8]
    public var prevKV: Bool

    public init(key: [UInt8], rangeEnd: [UInt8] = [], prevKV: Bool = false) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.prevKV = prevKV
    }
}

public struct DeleteRangeResponse: Sendable, Equatable {
    public var revision: Int64
    public var deleted: Int64
    public var prevKVs: [KeyValue]

    public init(revision: Int64, deleted: Int64, prevKVs: [KeyValue]) {
        self.revision = revision
        self.deleted = deleted
        self.prevKVs = prevKVs
    }
}

/// etcd's `Compare.CompareResult`.
public enum CompareResult: Int, Sendable { case equal = 0, greater = 1, less = 2, notEqual = 3 }

/// etcd's `Compare`: a target and the value it is compared with.
public enum CompareTarget: Sendable, Equatable {
    case version(Int64)
    case createRevision(Int64)
    case modRevision(Int64)
    case value([UInt8])
    case lease(Int64)
}

public struct Compare: Sendable, Equatable {
    public var result: CompareResult
    public var target: CompareTarget
    public var key: [UInt8]
    /// As in `RangeRequest`: the compare must hold for every key in the range.
    public var rangeEnd: [UInt8]

    public init(key: [UInt8], rangeEnd: [UInt8] = [], target: CompareTarget, result: CompareResult) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.target = target
        self.result = result
    }
}

/// One operation of a txn branch.
public indirect enum RequestOp: Sendable, Equatable {
    case range(RangeRequest)
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
}

public indirect enum ResponseOp: Sendable, Equatable {
    case range(RangeResponse)
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
}

/// etcd's `TxnRequest`.
public struct TxnRequest: Sendable, Equatable {
    public var compare: [Compare]
    public var success: [RequestOp]
    public var failure: [RequestOp]

    public init(compare: [Compare] = [], success: [RequestOp] = [], failure: [RequestOp] = []) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }
}

public struct TxnResponse: Sendable, Equatable {
    public var revision: Int64
    public var succeeded: Bool
    public var responses: [ResponseOp]

    public init(revision: Int64, succeeded: Bool, responses: [ResponseOp]) {
        self.revision = revision
        self.succeeded = succeeded
        self.responses = responses
    }
}

/// A change to the keyspace, as watchers see it.
public struct Event: Sendable, Equatable {
    public enum Kind: Int, Sendable { case put = 0, delete = 1 }
    public var kind: Kind
    /// For deletes: the key and the deleting revision (`modRevision`) only, as etcd sends.
    public var kv: KeyValue
}

/// A lease as the keyspace stores it: etcd's `leasepb.Lease`.
public struct LeaseRecord: Sendable, Equatable {
    public var id: Int64
    public var ttlSeconds: Int64
    /// The remaining TTL saved by a checkpoint (0: none saved).
    public var remainingTTLSeconds: Int64

    public init(id: Int64, ttlSeconds: Int64, remainingTTLSeconds: Int64 = 0) {
        self.id = id
        self.ttlSeconds = ttlSeconds
        self.remainingTTLSeconds = remainingTTLSeconds
    }
}

/// A keyspace failure. `message` is etcd's text for the same condition, so
/// the API layer can pass it to clients unchanged.
public enum KeyspaceError: Error, Equatable, CustomStringConvertible {
    case emptyKey
    case compacted
    case futureRevision
    case keyNotFound
    case leaseNotFound
    case leaseExists
    case valueProvided
    case leaseProvided
    case duplicateKey
    case tooManyOps
    /// The store's content contradicts itself (a bad record, a broken index).
    case corrupt(String)
    /// The backend failed; nothing of the failed batch was applied.
    case backend(BackendError)

    public var message: String {
        switch self {
        case .emptyKey: return "etcdserver: key is not provided"
        case .compacted: return "mvcc: required revision has been compacted"
        case .futureRevision: return "mvcc: required revision is a future revision"
        case .keyNotFound: return "etcdserver: key not found"
        case .leaseNotFound: return "etcdserver: requested lease not found"
        case .leaseExists: return "etcdserver: lease already exists"
        case .valueProvided: return "etcdserver: value is provided"
        case .leaseProvided: return "etcdserver: lease is provided"
        case .duplicateKey: return "etcdserver: duplicate key given in txn request"
        case .tooManyOps: return "etcdserver: too many operations in txn request"
        case .corrupt(let what): return "mvcc: corrupt keyspace: \(what)"
        case .backend(let error): return error.description
        }
    }

    /// The text etcd's gRPC API sends for this error: the keyspace's own
    /// `mvcc:` errors reach clients with etcd's `etcdserver: ` prefix.
    public var grpcMessage: String {
        switch self {
        case .compacted, .futureRevision: return "etcdserver: " + message
        default: return message
        }
    }

    public var description: String { message }
}
