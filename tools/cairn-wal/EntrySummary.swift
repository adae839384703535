import CairnWAL

/// A minimal protobuf wire-format reader: enough to summarize etcd requests.
/// Field numbers come from etcd's raft_internal.proto, rpc.proto and raft.proto.
struct ProtoReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    let data: ArraySlice<UInt8>

    /// All (field, value) pairs, or nil when the bytes are not a valid message.
    func fields() -> [(Int, Value)]? {
        var out: [(Int, Value)] = []
        var i = data.startIndex
        func varint() -> UInt64? {
            var v: UInt64 = 0
            var shift: UInt64 = 0
            while i < data.endIndex && shift < 64 {
                let b = data[i]
                i += 1
                v |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while i < data.endIndex {
            guard let key = varint() else { return nil }
            let field = Int(key >> 3)
            guard field > 0 else { return nil }
            switch key & 7 {
            case 0:
                guard let v = varint() else { return nil }
                out.append((field, .varint(v)))
            case 1:
                guard data.endIndex - i >= 8 else { return nil }
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(data[i + k]) << (8 * UInt64(k)) }
                i += 8
                out.append((field, .fixed64(v)))
            case 2:
                guard let n = varint(), n <= UInt64(data.endIndex - i) else { return nil }
                out.append((field, .bytes(data[i..<(i + Int(n))])))
                i += Int(n)
            case 5:
                guard data.endIndex - i >= 4 else { return nil }
                var v: UInt32 = 0
                for k in 0..<4 { v |= UInt32(data[i + k]) << (8 * UInt32(k)) }
                i += 4
                out.append((field, .fixed32(v)))
            default:
                return nil
            }
        }
        return out
    }
}

extension Array where Element == (Int, ProtoReader.Value) {
    func bytes(_ field: Int) -> ArraySlice<UInt8>? {
        for (f, v) in self where f == field { if case .bytes(let b) = v { return b } }
        return nil
    }
    func varint(_ field: Int) -> UInt64? {
        for (f, v) in self where f == field { if case .varint(let x) = v { return x } }
        return nil
    }
    func count(_ field: Int) -> Int { self.filter { $0.0 == field }.count }
}

/// Renders a key: quoted when printable ASCII, hex otherwise.
func renderKey(_ b: ArraySlice<UInt8>) -> String {
    if b.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) {
        return "\"" + String(decoding: b, as: UTF8.self) + "\""
    }
    return "0x" + b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

/// The decoded summary of an entry's data.
func summarize(_ entry: WALEntry) -> String {
    let data = entry.data[...]
    switch entry.type {
    case .normal:
        if data.isEmpty { return "empty (leader no-op)" }
        return summarizeRequest(data) ?? "unknown (\(data.count) bytes)"
    case .confChange:
        return summarizeConfChange(data) ?? "unknown (\(data.count) bytes)"
    case .confChangeV2:
        return "conf-change-v2 (\(data.count) bytes)"
    default:
        return "unknown (\(data.count) bytes)"
    }
}

/// etcdserverpb.InternalRaftRequest.
func summarizeRequest(_ data: ArraySlice<UInt8>) -> String? {
    guard let top = ProtoReader(data: data).fields() else { return nil }
    for (field, value) in top {
        guard case .bytes(let body) = value, let f = ProtoReader(data: body).fields() else { continue }
        switch field {
        case 3:  // RangeRequest
            var s = "range key=" + renderKey(f.bytes(1) ?? [])
            if let end = f.bytes(2) { s += " range_end=" + renderKey(end) }
            return s
        case 4:  // PutRequest: key 1, value 2, lease 3
            var s = "put key=" + renderKey(f.bytes(1) ?? []) + " value=\(f.bytes(2)?.count ?? 0) bytes"
            if let lease = f.varint(3), lease != 0 { s += " lease=\(lease)" }
            return s
        case 5:  // DeleteRangeRequest: key 1, range_end 2
            var s = "delete_range key=" + renderKey(f.bytes(1) ?? [])
            if let end = f.bytes(2) { s += " range_end=" + renderKey(end) }
            return s
        case 6:  // TxnRequest: compare 1, success 2, failure 3
            return "txn with \(f.count(1)) compares / \(f.count(2)) success / \(f.count(3)) failure ops"
        case 7:  // CompactionRequest: revision 1, physical 2
            return "compaction rev=\(Int64(bitPattern: f.varint(1) ?? 0))" + ((f.varint(2) ?? 0) != 0 ? " physical" : "")
        case 8:  // LeaseGrantRequest: TTL 1, ID 2
            return "lease_grant id=\(Int64(bitPattern: f.varint(2) ?? 0)) ttl=\(Int64(bitPattern: f.varint(1) ?? 0))"
        case 9:  // LeaseRevokeRequest: ID 1
            return "lease_revoke id=\(Int64(bitPattern: f.varint(1) ?? 0))"
        case 10: return "alarm"
        case 11: return "lease_checkpoint"
        case 1000...1299: return "auth request (field \(field))"
        default: continue
        }
    }
    return nil
}

/// raftpb.ConfChange: ID 1, Type 2, NodeID 3, Context 4.
func summarizeConfChange(_ data: ArraySlice<UInt8>) -> String? {
    guard let f = ProtoReader(data: data).fields(), let type = f.varint(2) ?? (f.varint(3) != nil ? 0 : nil) else { return nil }
    let node = hexID(f.varint(3) ?? 0)
    switch type {
    case 0: return "member add node=\(node)"
    case 1: return "member remove node=\(node)"
    case 2: return "member update node=\(node)"
    case 3: return "member add-learner node=\(node)"
    default: return "conf-change type \(type) node=\(node)"
    }
}
