import CairnBackend
import CairnBolt
import CairnMVCC
import CairnProto

/// The keyspace as an etcd 3.4 snapshot database: a bbolt file with etcd's buckets.
///
/// The keyspace's backend already holds etcd's encodings (`key`, `meta`, `lease`; see
/// CairnMVCC's `Codec`), so those tables are copied entry by entry, in order, from one read
/// transaction — a consistent revision with all history kept since the last compaction. The
/// buckets Cairn does not store are written as etcd 3.4 writes them for a one-member cluster
/// without auth: `members` (this member, JSON), `cluster` (`clusterVersion`), `auth`
/// (`authRevision` 1), and empty `authRoles`, `authUsers`, `members_removed`. Raised alarms,
/// which Cairn keeps in `meta` under `alarm/`, go to etcd's `alarm` bucket (keyed by the
/// encoded `AlarmMember`, empty values) instead.
public enum EtcdSnapshotExport {
    /// Writes the database (no SHA-256 trailer) to `path`; returns its size and revision.
    public static func write<B: StorageBackend>(
        backend: B, identity: ServerIdentity, clusterVersion: String, to path: String
    ) throws -> (sizeBytes: Int, revision: Int64) {
        let tables = [
            "key": try backend.table(named: "key"), "meta": try backend.table(named: "meta"),
            "lease": try backend.table(named: "lease"),
        ]
        let fixed = fixedBuckets(identity: identity, clusterVersion: clusterVersion)
        let tx = try backend.beginRead()
        defer { tx.close() }
        var alarms: [([UInt8], [UInt8])] = []
        try tx.scan(tables["meta"]!, from: AlarmKeys.prefix, to: AlarmKeys.end, reverse: false) { k, _ in
            guard let (memberID, type) = AlarmKeys.parse(k) else { return true }
            var member = Etcdserverpb_AlarmMember()
            member.memberID = memberID
            member.alarm = Etcdserverpb_AlarmType(rawValue: type) ?? .none
            alarms.append((try member.serializedBytes(), []))
            return true
        }
        alarms.sort { $0.0.lexicographicallyPrecedes($1.0) }
        let writer = try BoltWriter(path: path)
        var revision: Int64 = 0
        for name in EtcdSnapshot.bucketNames {
            try writer.beginBucket(Array(name.utf8))
            if name == "alarm" {
                for (k, v) in alarms { try writer.put(k, v) }
            } else if let table = tables[name] {
                try tx.scan(table, from: [], to: nil, reverse: false) { k, v in
                    if name == "meta", k.starts(with: AlarmKeys.prefix) { return true }
                    try writer.put(k, v)
                    if name == "key", k.count >= 8 {
                        revision = Int64(bitPattern: k.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
                    }
                    return true
                }
            } else {
                for (k, v) in fixed[name] ?? [] { try writer.put(k, v) }
            }
            try writer.endBucket()
        }
        return (try writer.finish(), revision)
    }

    /// The buckets etcd keeps for membership, auth and the cluster version.
    static func fixedBuckets(identity: ServerIdentity, clusterVersion: String) -> [String: [([UInt8], [UInt8])]] {
        let member =
            "{\"id\":\(identity.memberID),\"peerURLs\":\(jsonArray(identity.peerURLs)),\"name\":\(jsonString(identity.name)),"
            + "\"clientURLs\":\(jsonArray(identity.clientURLs))}"
        var one = [UInt8](repeating: 0, count: 8)
        one[7] = 1
        return [
            "members": [(Array(String(identity.memberID, radix: 16).utf8), Array(member.utf8))],
            "cluster": [(Array("clusterVersion".utf8), Array(clusterVersion.utf8))],
            "auth": [(Array("authRevision".utf8), one)],
        ]
    }

    /// A JSON string as Go's encoding/json writes it (HTML characters escaped).
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                guard u.value < 0x20 || u == "<" || u == ">" || u == "&" else {
                    out.unicodeScalars.append(u)
                    continue
                }
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            }
        }
        return out + "\""
    }

    static func jsonArray(_ items: [String]) -> String { "[" + items.map(jsonString).joined(separator: ",") + "]" }

    /// etcd's cluster version for a server version: major.minor.0.
    public static func clusterVersion(serverVersion: String) -> String {
        let parts = serverVersion.split(separator: ".")
        return parts.count >= 2 ? "\(parts[0]).\(parts[1]).0" : serverVersion
    }
}
