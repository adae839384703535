import CairnMVCC
import CairnProto
import Foundation

/// A protobuf field value with no CairnMVCC counterpart (an enum number unknown to etcd 3.4).
public struct UnsupportedValue: Error, Equatable, Sendable {
    /// What was unsupported, e.g. `compare result 7`.
    public var what: String

    public init(what: String) { self.what = what }
}

/// Field-by-field mapping between etcd's protobuf messages and CairnMVCC's types.
///
/// Requests go protobuf → CairnMVCC, responses CairnMVCC → protobuf; the reverse
/// directions exist too so that tests (and a future client) can round-trip.
public enum KVConversion {
    // MARK: KeyValue

    /// `mvccpb.KeyValue` from a keyspace `KeyValue`.
    public static func proto(_ kv: KeyValue) -> Mvccpb_KeyValue {
        var p = Mvccpb_KeyValue()
        p.key = Data(kv.key)
        p.createRevision = kv.createRevision
        p.modRevision = kv.modRevision
        p.version = kv.version
        p.value = Data(kv.value)
        p.lease = kv.lease
        return p
    }

    /// A keyspace `KeyValue` from `mvccpb.KeyValue`.
    public static func keyValue(_ p: Mvccpb_KeyValue) -> KeyValue {
        KeyValue(
            key: [UInt8](p.key), createRevision: p.createRevision, modRevision: p.modRevision, version: p.version,
            value: [UInt8](p.value), lease: p.lease)
    }

    // MARK: Range

    /// A keyspace range request from etcd's; `serializable` is returned separately.
    public static func request(_ p: Etcdserverpb_RangeRequest) throws(UnsupportedValue) -> RangeRequest {
        let order: CairnMVCC.SortOrder
        switch p.sortOrder {
        case .none: order = .none
        case .ascend: order = .ascend
        case .descend: order = .descend
        case .UNRECOGNIZED(let n): throw UnsupportedValue(what: "sort order \(n)")
        }
        let target: CairnMVCC.SortTarget
        switch p.sortTarget {
        case .key: target = .key
        case .version: target = .version
        case .create: target = .create
        case .mod: target = .mod
        case .value: target = .value
        case .UNRECOGNIZED(let n): throw UnsupportedValue(what: "sort target \(n)")
        }
        return RangeRequest(
            key: [UInt8](p.key), rangeEnd: [UInt8](p.rangeEnd), limit: p.limit, revision: p.revision,
            sortOrder: order, sortTarget: target, keysOnly: p.keysOnly, countOnly: p.countOnly,
            minModRevision: p.minModRevision, maxModRevision: p.maxModRevision,
            minCreateRevision: p.minCreateRevision, maxCreateRevision: p.maxCreateRevision)
    }

    /// etcd's range request from a keyspace one.
    public static func proto(_ r: RangeRequest, serializable: Bool = false) -> Etcdserverpb_RangeRequest {
        var p = Etcdserverpb_RangeRequest()
        p.key = Data(r.key)
        p.rangeEnd = Data(r.rangeEnd)
        p.limit = r.limit
        p.revision = r.revision
        switch r.sortOrder {
        case .none: p.sortOrder = .none
        case .ascend: p.sortOrder = .ascend
        case .descend: p.sortOrder = .descend
        }
        switch r.sortTarget {
        case .key: p.sortTarget = .key
        case .version: p.sortTarget = .version
        case .create: p.sortTarget = .create
        case .mod: p.sortTarget = .mod
        case .value: p.sortTarget = .value
        }
        p.serializable = serializable
        p.keysOnly = r.keysOnly
        p.countOnly = r.countOnly
        p.minModRevision = r.minModRevision
        p.maxModRevision = r.maxModRevision
        p.minCreateRevision = r.minCreateRevision
        p.maxCreateRevision = r.maxCreateRevision
        return p
    }

    /// etcd's range response; `header` is nil inside a txn (only the revision is set there).
    public static func proto(_ r: RangeResponse, header: Etcdserverpb_ResponseHeader?) -> Etcdserverpb_RangeResponse {
        var p = Etcdserverpb_RangeResponse()
        p.header = header ?? subHeader(r.revision)
        p.kvs = r.kvs.map { proto($0) }
        p.more = r.more
        p.count = r.count
        return p
    }

    /// A keyspace range response from etcd's (revision from the header).
    public static func response(_ p: Etcdserverpb_RangeResponse) -> RangeResponse {
        RangeResponse(revision: p.header.revision, kvs: p.kvs.map { keyValue($0) }, more: p.more, count: p.count)
    }

    // MARK: Put

    /// A keyspace put request from etcd's.
    public static func request(_ p: Etcdserverpb_PutRequest) -> PutRequest {
        PutRequest(
            key: [UInt8](p.key), value: [UInt8](p.value), lease: p.lease, prevKV: p.prevKv,
            ignoreValue: p.ignoreValue, ignoreLease: p.ignoreLease)
    }

    /// etcd's put request from a keyspace one.
    public static func proto(_ r: PutRequest) -> Etcdserverpb_PutRequest {
        var p = Etcdserverpb_PutRequest()
        p.key = Data(r.key)
        p.value = Data(r.value)
        p.lease = r.lease
        p.prevKv = r.prevKV
        p.ignoreValue = r.ignoreValue
        p.ignoreLease = r.ignoreLease
        return p
    }

    /// etcd's put response; `prev_kv` is present only when the keyspace returned one.
    public static func proto(_ r: PutResponse, header: Etcdserverpb_ResponseHeader?) -> Etcdserverpb_PutResponse {
        var p = Etcdserverpb_PutResponse()
        p.header = header ?? subHeader(r.revision)
        if let prev = r.prevKV { p.prevKv = proto(prev) }
        return p
    }

    /// A keyspace put response from etcd's.
    public static func response(_ p: Etcdserverpb_PutResponse) -> PutResponse {
        PutResponse(revision: p.header.revision, prevKV: p.hasPrevKv ? keyValue(p.prevKv) : nil)
    }

    // MARK: DeleteRange

    /// A keyspace delete request from etcd's.
    public static func request(_ p: Etcdserverpb_DeleteRangeRequest) -> DeleteRangeRequest {
        DeleteRangeRequest(key: [UInt8](p.key), rangeEnd: [UInt8](p.rangeEnd), prevKV: p.prevKv)
    }

    /// etcd's delete request from a keyspace one.
    public static func proto(_ r: DeleteRangeRequest) -> Etcdserverpb_DeleteRangeRequest {
        var p = Etcdserverpb_DeleteRangeRequest()
        p.key = Data(r.key)
        p.rangeEnd = Data(r.rangeEnd)
        p.prevKv = r.prevKV
        return p
    }

    /// etcd's delete response.
    public static func proto(_ r: DeleteRangeResponse, header: Etcdserverpb_ResponseHeader?)
        -> Etcdserverpb_DeleteRangeResponse
    {
        var p = Etcdserverpb_DeleteRangeResponse()
        p.header = header ?? subHeader(r.revision)
        p.deleted = r.deleted
        p.prevKvs = r.prevKVs.map { proto($0) }
        return p
    }

    /// A keyspace delete response from etcd's.
    public static func response(_ p: Etcdserverpb_DeleteRangeResponse) -> DeleteRangeResponse {
        DeleteRangeResponse(revision: p.header.revision, deleted: p.deleted, prevKVs: p.prevKvs.map { keyValue($0) })
    }

    // MARK: Compare

    /// A keyspace compare from etcd's: `target` chooses which member of the
    /// target union is read (a missing or different member reads as zero/empty,
    /// as etcd's generated getters do).
    public static func compare(_ p: Etcdserverpb_Compare) throws(UnsupportedValue) -> Compare {
        let result: CompareResult
        switch p.result {
        case .equal: result = .equal
        case .greater: result = .greater
        case .less: result = .less
        case .notEqual: result = .notEqual
        case .UNRECOGNIZED(let n): throw UnsupportedValue(what: "compare result \(n)")
        }
        let target: CompareTarget
        switch p.target {
        case .version: target = .version(p.version)
        case .create: target = .createRevision(p.createRevision)
        case .mod: target = .modRevision(p.modRevision)
        case .value: target = .value([UInt8](p.value))
        case .lease: target = .lease(p.lease)
        case .UNRECOGNIZED(let n): throw UnsupportedValue(what: "compare target \(n)")
        }
        return Compare(key: [UInt8](p.key), rangeEnd: [UInt8](p.rangeEnd), target: target, result: result)
    }

    /// etcd's compare from a keyspace one: sets both `target` and the union member.
    public static func proto(_ c: Compare) -> Etcdserverpb_Compare {
        var p = Etcdserverpb_Compare()
        switch c.result {
        case .equal: p.result = .equal
        case .greater: p.result = .greater
        case .less: p.result = .less
        case .notEqual: p.result = .notEqual
        }
        switch c.target {
        case .version(let v): p.target = .version; p.version = v
        case .createRevision(let v): p.target = .create; p.createRevision = v
        case .modRevision(let v): p.target = .mod; p.modRevision = v
        case .value(let v): p.target = .value; p.value = Data(v)
        case .lease(let v): p.target = .lease; p.lease = v
        }
        p.key = Data(c.key)
        p.rangeEnd = Data(c.rangeEnd)
        return p
    }

    // MARK: Txn

    /// A keyspace txn from etcd's, nested txns included. A `RequestOp` with no
    /// member set is skipped, as etcd's apply skips it.
    public static func request(_ p: Etcdserverpb_TxnRequest) throws(UnsupportedValue) -> TxnRequest {
        var t = TxnRequest()
        t.compare = try p.compare.map { (c) throws(UnsupportedValue) in try compare(c) }
        t.success = try ops(p.success)
        t.failure = try ops(p.failure)
        return t
    }

    private static func ops(_ ops: [Etcdserverpb_RequestOp]) throws(UnsupportedValue) -> [RequestOp] {
        var out: [RequestOp] = []
        out.reserveCapacity(ops.count)
        for op in ops {
            switch op.request {
            case .requestRange(let r): out.append(.range(try request(r)))
            case .requestPut(let r): out.append(.put(request(r)))
            case .requestDeleteRange(let r): out.append(.deleteRange(request(r)))
            case .requestTxn(let r): out.append(.txn(try request(r)))
            case nil: continue
            }
        }
        return out
    }

    /// etcd's txn request from a keyspace one.
    public static func proto(_ t: TxnRequest) -> Etcdserverpb_TxnRequest {
        var p = Etcdserverpb_TxnRequest()
        p.compare = t.compare.map { proto($0) }
        p.success = t.success.map { proto($0) }
        p.failure = t.failure.map { proto($0) }
        return p
    }

    /// etcd's `RequestOp` from a keyspace one.
    public static func proto(_ op: RequestOp) -> Etcdserverpb_RequestOp {
        var p = Etcdserverpb_RequestOp()
        switch op {
        case .range(let r): p.requestRange = proto(r)
        case .put(let r): p.requestPut = proto(r)
        case .deleteRange(let r): p.requestDeleteRange = proto(r)
        case .txn(let r): p.requestTxn = proto(r)
        }
        return p
    }

    /// etcd's txn response; sub-responses carry only the revision the keyspace gave them.
    public static func proto(_ r: TxnResponse, header: Etcdserverpb_ResponseHeader?) -> Etcdserverpb_TxnResponse {
        var p = Etcdserverpb_TxnResponse()
        p.header = header ?? subHeader(r.revision)
        p.succeeded = r.succeeded
        p.responses = r.responses.map { proto($0) }
        return p
    }

    /// etcd's `ResponseOp` from a keyspace one.
    public static func proto(_ op: ResponseOp) -> Etcdserverpb_ResponseOp {
        var p = Etcdserverpb_ResponseOp()
        switch op {
        case .range(let r): p.responseRange = proto(r, header: nil)
        case .put(let r): p.responsePut = proto(r, header: nil)
        case .deleteRange(let r): p.responseDeleteRange = proto(r, header: nil)
        case .txn(let r): p.responseTxn = proto(r, header: nil)
        }
        return p
    }

    /// A keyspace txn response from etcd's (empty `ResponseOp`s are dropped).
    public static func response(_ p: Etcdserverpb_TxnResponse) -> TxnResponse {
        TxnResponse(revision: p.header.revision, succeeded: p.succeeded, responses: p.responses.compactMap { response($0) })
    }

    /// A keyspace `ResponseOp` from etcd's.
    public static func response(_ p: Etcdserverpb_ResponseOp) -> ResponseOp? {
        switch p.response {
        case .responseRange(let r): return .range(response(r))
        case .responsePut(let r): return .put(response(r))
        case .responseDeleteRange(let r): return .deleteRange(response(r))
        case .responseTxn(let r): return .txn(response(r))
        case nil: return nil
        }
    }

    // MARK: Compaction

    /// etcd's compaction response.
    public static func compactionResponse(header: Etcdserverpb_ResponseHeader) -> Etcdserverpb_CompactionResponse {
        var p = Etcdserverpb_CompactionResponse()
        p.header = header
        return p
    }

    // MARK: Headers

    /// A top-level response header: identity plus `revision`.
    public static func header(
        _ id: (clusterID: UInt64, memberID: UInt64, raftTerm: UInt64), revision: Int64
    ) -> Etcdserverpb_ResponseHeader {
        var h = Etcdserverpb_ResponseHeader()
        h.clusterID = id.clusterID
        h.memberID = id.memberID
        h.revision = revision
        h.raftTerm = id.raftTerm
        return h
    }

    /// A header inside a txn: only the revision, as etcd's txn apply sets it.
    static func subHeader(_ revision: Int64) -> Etcdserverpb_ResponseHeader {
        var h = Etcdserverpb_ResponseHeader()
        h.revision = revision
        return h
    }
}
