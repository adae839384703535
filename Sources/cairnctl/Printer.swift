// What etcdctl 3.4 prints for each response, per output format (-w simple|json|fields|table).
import CairnProto
import Foundation

/// The output formats etcdctl knows.
enum OutputFormat: String, CaseIterable, Sendable {
    case simple, json, fields, table, protobuf
}

/// An error etcdctl reports as `Error: <message>` on stderr, exiting with `exitCode`.
struct CtlError: Error, Equatable {
    var exitCode: Int32
    var message: String

    // etcdctl's exit codes.
    static let exitError: Int32 = 1
    static let exitBadConnection: Int32 = 2
    static let exitInvalidInput: Int32 = 3
    static let exitBadFeature: Int32 = 4
    static let exitInterrupted: Int32 = 5
    static let exitBadArgs: Int32 = 128

    static func badArgs(_ message: String) -> CtlError { CtlError(exitCode: exitBadArgs, message: message) }
    static func unsupported(_ format: OutputFormat) -> CtlError {
        CtlError(exitCode: exitBadFeature, message: "\(format.rawValue) not supported as output format")
    }
}

/// Renders responses as etcdctl does; every method returns the whole text to print (with newlines).
struct Printer: Sendable {
    var format: OutputFormat
    var hex = false
    /// `get --print-value-only` (simple format only).
    var valueOnly = false

    // MARK: shared pieces

    func kvSimple(_ kv: Mvccpb_KeyValue, valueOnly: Bool) -> String {
        let key = self.hex ? GoFormat.hexEscaped(kv.key) : String(decoding: kv.key, as: UTF8.self)
        let value = self.hex ? GoFormat.hexEscaped(kv.value) : String(decoding: kv.value, as: UTF8.self)
        return valueOnly ? value + "\n" : key + "\n" + value + "\n"
    }

    static func headerJSON(_ h: Etcdserverpb_ResponseHeader) -> String {
        GoJSON.object(headerJSONFields(h))
    }

    /// The header's fields, for responses where etcdctl's Go type embeds the header (flattened).
    static func headerJSONFields(_ h: Etcdserverpb_ResponseHeader) -> [(String, String?)] {
        [("cluster_id", GoJSON.omit(h.clusterID)), ("member_id", GoJSON.omit(h.memberID)),
         ("revision", GoJSON.omit(h.revision)), ("raft_term", GoJSON.omit(h.raftTerm))]
    }

    static func header(_ hasHeader: Bool, _ h: Etcdserverpb_ResponseHeader) -> String? {
        hasHeader ? headerJSON(h) : nil
    }

    static func kvJSON(_ kv: Mvccpb_KeyValue) -> String {
        GoJSON.object([
            ("key", GoJSON.omitBytes(kv.key)), ("create_revision", GoJSON.omit(kv.createRevision)),
            ("mod_revision", GoJSON.omit(kv.modRevision)), ("version", GoJSON.omit(kv.version)),
            ("value", GoJSON.omitBytes(kv.value)), ("lease", GoJSON.omit(kv.lease)),
        ])
    }

    static func headerFields(_ h: Etcdserverpb_ResponseHeader) -> String {
        "\"ClusterID\" : \(h.clusterID)\n\"MemberID\" : \(h.memberID)\n\"Revision\" : \(h.revision)\n\"RaftTerm\" : \(h.raftTerm)\n"
    }

    static func kvFields(_ kv: Mvccpb_KeyValue, prefix: String = "") -> String {
        "\"\(prefix)Key\" : \(GoFormat.quote(kv.key))\n\"\(prefix)CreateRevision\" : \(kv.createRevision)\n"
            + "\"\(prefix)ModRevision\" : \(kv.modRevision)\n\"\(prefix)Version\" : \(kv.version)\n"
            + "\"\(prefix)Value\" : \(GoFormat.quote(kv.value))\n\"\(prefix)Lease\" : \(kv.lease)\n"
    }

    // MARK: KV

    func range(_ r: Etcdserverpb_RangeResponse) throws(CtlError) -> String {
        switch self.format {
        case .simple: return r.kvs.map { self.kvSimple($0, valueOnly: self.valueOnly) }.joined()
        case .json: return Self.rangeJSON(r) + "\n"
        case .fields:
            return Self.headerFields(r.header) + r.kvs.map { Self.kvFields($0) }.joined()
                + "\"More\" : \(r.more)\n\"Count\" : \(r.count)\n"
        default: throw .unsupported(self.format)
        }
    }

    static func rangeJSON(_ r: Etcdserverpb_RangeResponse) -> String {
        GoJSON.object([
            ("header", header(r.hasHeader, r.header)), ("kvs", GoJSON.omitArray(r.kvs.map(kvJSON))),
            ("more", GoJSON.omit(r.more)), ("count", GoJSON.omit(r.count)),
        ])
    }

    func put(_ r: Etcdserverpb_PutResponse) throws(CtlError) -> String {
        switch self.format {
        case .simple: return "OK\n" + (r.hasPrevKv ? self.kvSimple(r.prevKv, valueOnly: false) : "")
        case .json: return Self.putJSON(r) + "\n"
        case .fields: return Self.headerFields(r.header) + (r.hasPrevKv ? Self.kvFields(r.prevKv, prefix: "Prev") : "")
        default: throw .unsupported(self.format)
        }
    }

    static func putJSON(_ r: Etcdserverpb_PutResponse) -> String {
        GoJSON.object([("header", header(r.hasHeader, r.header)), ("prev_kv", r.hasPrevKv ? kvJSON(r.prevKv) : nil)])
    }

    func delete(_ r: Etcdserverpb_DeleteRangeResponse) throws(CtlError) -> String {
        switch self.format {
        case .simple: return "\(r.deleted)\n" + r.prevKvs.map { self.kvSimple($0, valueOnly: false) }.joined()
        case .json: return Self.deleteJSON(r) + "\n"
        case .fields:
            return Self.headerFields(r.header) + "\"Deleted\" : \(r.deleted)\n"
                + r.prevKvs.map { Self.kvFields($0, prefix: "Prev") }.joined()
        default: throw .unsupported(self.format)
        }
    }

    static func deleteJSON(_ r: Etcdserverpb_DeleteRangeResponse) -> String {
        GoJSON.object([
            ("header", header(r.hasHeader, r.header)), ("deleted", GoJSON.omit(r.deleted)),
            ("prev_kvs", GoJSON.omitArray(r.prevKvs.map(kvJSON))),
        ])
    }

    func txn(_ r: Etcdserverpb_TxnResponse) throws(CtlError) -> String {
        switch self.format {
        case .simple:
            var out = r.succeeded ? "SUCCESS\n" : "FAILURE\n"
            for op in r.responses {
                out += "\n"
                switch op.response {
                case .responsePut(let p): out += try self.put(p)
                case .responseRange(let g): out += try Printer(format: .simple, hex: self.hex).range(g)
                case .responseDeleteRange(let d): out += try self.delete(d)
                case .responseTxn(let t): out += try self.txn(t)
                case nil: out += "unexpected response {Response:<nil>}\n"
                }
            }
            return out
        case .json: return Self.txnJSON(r) + "\n"
        case .fields:
            var out = Self.headerFields(r.header) + "\"Succeeded\" : \(r.succeeded)\n"
            for op in r.responses {
                switch op.response {
                case .responsePut(let p): out += try self.put(p)
                case .responseRange(let g): out += try self.range(g)
                case .responseDeleteRange(let d): out += try self.delete(d)
                case .responseTxn(let t): out += try self.txn(t)
                case nil: break
                }
            }
            return out
        default: throw .unsupported(self.format)
        }
    }

    static func txnJSON(_ r: Etcdserverpb_TxnResponse) -> String {
        let ops = r.responses.map { op -> String in
            let inner: String
            switch op.response {
            case .responsePut(let p): inner = GoJSON.object([("ResponsePut", putJSON(p))])
            case .responseRange(let g): inner = GoJSON.object([("ResponseRange", rangeJSON(g))])
            case .responseDeleteRange(let d): inner = GoJSON.object([("ResponseDeleteRange", deleteJSON(d))])
            case .responseTxn(let t): inner = GoJSON.object([("ResponseTxn", txnJSON(t))])
            case nil: inner = "null"
            }
            return GoJSON.object([("Response", inner)])
        }
        return GoJSON.object([
            ("header", header(r.hasHeader, r.header)), ("succeeded", GoJSON.omit(r.succeeded)),
            ("responses", GoJSON.omitArray(ops)),
        ])
    }

    /// etcdctl 3.4 prints this line itself, whatever the output format.
    func compaction(revision: Int64, _ r: Etcdserverpb_CompactionResponse) -> String {
        "compacted revision \(revision)\n"
    }

    // MARK: Watch

    /// One watch response as the client library delivers it (created notifications are not shown).
    func watch(_ r: Etcdserverpb_WatchResponse) throws(CtlError) -> String {
        switch self.format {
        case .simple:
            return r.events.map { e in
                (e.type == .put ? "PUT\n" : "DELETE\n")
                    + (e.hasPrevKv ? self.kvSimple(e.prevKv, valueOnly: self.valueOnly) : "")
                    + self.kvSimple(e.kv, valueOnly: self.valueOnly)
            }.joined()
        case .json:
            let events = r.events.map { e in
                GoJSON.object([
                    ("type", GoJSON.omit(e.type.rawValue)), ("kv", e.hasKv ? Self.kvJSON(e.kv) : nil),
                    ("prev_kv", e.hasPrevKv ? Self.kvJSON(e.prevKv) : nil),
                ])
            }
            return GoJSON.object([
                ("Header", Self.headerJSON(r.header)), ("Events", GoJSON.array(events)),
                ("CompactRevision", "\(r.compactRevision)"), ("Canceled", "\(r.canceled)"), ("Created", "\(r.created)"),
            ]) + "\n"
        case .fields:
            return Self.headerFields(r.header) + r.events.map { e in
                "\"Type\" : \(e.type == .put ? "PUT" : "DELETE")\n"
                    + (e.hasPrevKv ? Self.kvFields(e.prevKv, prefix: "Prev") : "") + Self.kvFields(e.kv)
            }.joined()
        default: throw .unsupported(self.format)
        }
    }

    // MARK: Lease

    func leaseGrant(_ r: Etcdserverpb_LeaseGrantResponse) throws(CtlError) -> String {
        switch self.format {
        case .simple: return "lease \(GoFormat.hex016(UInt64(bitPattern: r.id))) granted with TTL(\(r.ttl)s)\n"
        case .json:
            return GoJSON.object(Self.headerJSONFields(r.header) + [("ID", "\(r.id)"), ("TTL", "\(r.ttl)"), ("Error", GoJSON.string(r.error))]) + "\n"
        case .fields: return Self.headerFields(r.header) + "\"ID\" : \(r.id)\n\"TTL\" : \(r.ttl)\n"
        default: throw .unsupported(self.format)
        }
    }

    func leaseRevoke(id: Int64, _ r: Etcdserverpb_LeaseRevokeResponse) throws(CtlError) -> String {
        switch self.format {
        case .simple: return "lease \(GoFormat.hex016(UInt64(bitPattern: id))) revoked\n"
        case .json: return GoJSON.object([("header", Self.header(r.hasHeader, r.header))]) + "\n"
        case .fields: return Self.headerFields(r.header)
        default: throw .unsupported(self.format)
        }
    }

    func leaseTimeToLive(_ r: Etcdserverpb_LeaseTimeToLiveResponse, keysRequested: Bool) throws(CtlError) -> String {
        switch self.format {
        case .simple:
            let id = GoFormat.hex016(UInt64(bitPattern: r.id))
            if r.grantedTtl == 0 && r.ttl == -1 { return "lease \(id) already expired\n" }
            var out = "lease \(id) granted with TTL(\(r.grantedTtl)s), remaining(\(r.ttl)s)"
            if keysRequested {
                out += ", attached keys([" + r.keys.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ") + "])"
            }
            return out + "\n"
        case .json:
            let keys = r.keys.isEmpty ? "null" : GoJSON.array(r.keys.map(GoJSON.bytes))
            return GoJSON.object(Self.headerJSONFields(r.header) + [
                ("id", "\(r.id)"), ("ttl", "\(r.ttl)"), ("granted-ttl", "\(r.grantedTtl)"), ("keys", keys),
            ]) + "\n"
        case .fields:
            return Self.headerFields(r.header) + "\"ID\" : \(r.id)\n\"TTL\" : \(r.ttl)\n\"GrantedTTL\" : \(r.grantedTtl)\n"
                + r.keys.map { "\"Key\" : \(GoFormat.quote($0))\n" }.joined()
        default: throw .unsupported(self.format)
        }
    }

    func leaseList(_ r: Etcdserverpb_LeaseLeasesResponse) throws(CtlError) -> String {
        switch self.format {
        case .simple:
            return "found \(r.leases.count) leases\n" + r.leases.map { GoFormat.hex016(UInt64(bitPattern: $0.id)) + "\n" }.joined()
        case .json:
            let leases = GoJSON.array(r.leases.map { GoJSON.object([("id", "\($0.id)")]) })
            return GoJSON.object(Self.headerJSONFields(r.header) + [("leases", leases)]) + "\n"
        case .fields: return Self.headerFields(r.header) + r.leases.map { "\"ID\" : \($0.id)\n" }.joined()
        default: throw .unsupported(self.format)
        }
    }

    func leaseKeepAlive(_ r: Etcdserverpb_LeaseKeepAliveResponse) throws(CtlError) -> String {
        switch self.format {
        case .simple: return "lease \(GoFormat.hex016(UInt64(bitPattern: r.id))) keepalived with TTL(\(r.ttl))\n"
        case .json: return GoJSON.object(Self.headerJSONFields(r.header) + [("ID", "\(r.id)"), ("TTL", "\(r.ttl)")]) + "\n"
        case .fields: return Self.headerFields(r.header) + "\"ID\" : \(r.id)\n\"TTL\" : \(r.ttl)\n"
        default: throw .unsupported(self.format)
        }
    }

    // MARK: Cluster

    static func memberJSON(_ m: Etcdserverpb_Member) -> String {
        GoJSON.object([
            ("ID", GoJSON.omit(m.id)), ("name", GoJSON.omit(m.name)),
            ("peerURLs", GoJSON.omitArray(m.peerUrls.map(GoJSON.string))),
            ("clientURLs", GoJSON.omitArray(m.clientUrls.map(GoJSON.string))), ("isLearner", GoJSON.omit(m.isLearner)),
        ])
    }

    static func memberRow(_ m: Etcdserverpb_Member) -> [String] {
        [String(m.id, radix: 16), m.name.isEmpty ? "unstarted" : "started", m.name,
         m.peerUrls.joined(separator: ","), m.clientUrls.joined(separator: ","), "\(m.isLearner)"]
    }

    static func membersFields(_ members: [Etcdserverpb_Member]) -> String {
        members.map { m in
            "\"ID\" : \(m.id)\n\"Name\" : \(GoFormat.quote(m.name))\n"
                + m.peerUrls.map { "\"PeerURL\" : \(GoFormat.quote($0))\n" }.joined()
                + m.clientUrls.map { "\"ClientURL\" : \(GoFormat.quote($0))\n" }.joined()
                + "\"IsLearner\" : \(m.isLearner)\n\n"
        }.joined()
    }

    func memberList(_ r: Etcdserverpb_MemberListResponse) throws(CtlError) -> String {
        let header = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]
        switch self.format {
        case .simple: return r.members.map { Self.memberRow($0).joined(separator: ", ") + "\n" }.joined()
        case .json: return Self.membersResponseJSON(r.hasHeader, r.header, member: nil, r.members) + "\n"
        case .fields: return Self.headerFields(r.header) + Self.membersFields(r.members)
        case .table: return Table.render(header: header, rows: r.members.map(Self.memberRow))
        case .protobuf: throw .unsupported(self.format)
        }
    }

    static func membersResponseJSON(
        _ hasHeader: Bool, _ h: Etcdserverpb_ResponseHeader, member: Etcdserverpb_Member?, _ members: [Etcdserverpb_Member]
    ) -> String {
        GoJSON.object([
            ("header", header(hasHeader, h)), ("member", member.map(memberJSON)),
            ("members", GoJSON.omitArray(members.map(memberJSON))),
        ])
    }

    /// member add/remove/update/promote: `verb` is "added", "removed", "updated" or "promoted".
    func memberChange(
        verb: String, id: UInt64, isLearner: Bool = false, hasHeader: Bool, header: Etcdserverpb_ResponseHeader,
        member: Etcdserverpb_Member?, members: [Etcdserverpb_Member]
    ) throws(CtlError) -> String {
        switch self.format {
        case .simple:
            let preposition = verb == "added" ? (isLearner ? " as learner to" : " to") : verb == "removed" ? " from" : " in"
            return "Member \(GoFormat.hex16Padded(id)) \(verb)\(preposition) cluster \(GoFormat.hex16Padded(header.clusterID))\n"
        case .json: return Self.membersResponseJSON(hasHeader, header, member: member, members) + "\n"
        case .fields: return Self.headerFields(header) + Self.membersFields(members)
        default: throw .unsupported(self.format)
        }
    }

    // MARK: Maintenance

    func alarms(_ r: Etcdserverpb_AlarmResponse) throws(CtlError) -> String {
        func name(_ a: Etcdserverpb_AlarmType) -> String {
            switch a {
            case .none: return "NONE"
            case .nospace: return "NOSPACE"
            case .corrupt: return "CORRUPT"
            case .UNRECOGNIZED(let n): return "\(n)"
            }
        }
        switch self.format {
        case .simple: return r.alarms.map { "memberID:\($0.memberID) alarm:\(name($0.alarm))\n" }.joined()
        case .json:
            let alarms = r.alarms.map { GoJSON.object([("memberID", GoJSON.omit($0.memberID)), ("alarm", GoJSON.omit($0.alarm.rawValue))]) }
            return GoJSON.object([("header", Self.header(r.hasHeader, r.header)), ("alarms", GoJSON.omitArray(alarms))]) + "\n"
        case .fields:
            return Self.headerFields(r.header) + r.alarms.map { "\"MemberID\" : \($0.memberID)\n\"AlarmType\" : \(name($0.alarm))\n" }.joined()
        default: throw .unsupported(self.format)
        }
    }

    /// One endpoint's health check.
    struct Health: Sendable {
        var endpoint: String
        var healthy: Bool
        var took: Duration
        var error: String
    }

    func health(_ hs: [Health]) throws(CtlError) -> (stdout: String, stderr: String) {
        switch self.format {
        case .simple:  // etcdctl 3.4 prints both on stderr
            var err = ""
            for h in hs {
                if h.error.isEmpty {
                    err += "\(h.endpoint) is healthy: successfully committed proposal: took = \(GoFormat.duration(h.took))\n"
                } else {
                    err += "\(h.endpoint) is unhealthy: failed to commit proposal: \(h.error)\n"
                }
            }
            return ("", err)
        case .json:
            let items = hs.map {
                GoJSON.object([
                    ("endpoint", GoJSON.string($0.endpoint)), ("health", "\($0.healthy)"),
                    ("took", GoJSON.string(GoFormat.duration($0.took))), ("error", GoJSON.omit($0.error)),
                ])
            }
            return (GoJSON.array(items) + "\n", "")
        case .fields:
            let text = hs.map {
                "\"Endpoint\" : \(GoFormat.quote($0.endpoint))\n\"Health\" : \($0.healthy)\n\"Took\" : \(GoFormat.duration($0.took))\n\"Error\" : \($0.error)\n\n"
            }.joined()
            return (text, "")
        case .table:
            let rows = hs.map { [$0.endpoint, "\($0.healthy)", GoFormat.duration($0.took), $0.error] }
            return (Table.render(header: ["ENDPOINT", "HEALTH", "TOOK", "ERROR"], rows: rows), "")
        case .protobuf: throw .unsupported(self.format)
        }
    }

    static func statusRow(_ endpoint: String, _ s: Etcdserverpb_StatusResponse) -> [String] {
        [endpoint, String(s.header.memberID, radix: 16), s.version, GoFormat.humanBytes(UInt64(max(0, s.dbSize))),
         "\(s.leader == s.header.memberID)", "\(s.isLearner)", "\(s.raftTerm)", "\(s.raftIndex)",
         "\(s.raftAppliedIndex)", s.errors.joined(separator: ", ")]
    }

    func status(_ ss: [(String, Etcdserverpb_StatusResponse)]) throws(CtlError) -> String {
        switch self.format {
        case .simple: return ss.map { Self.statusRow($0.0, $0.1).joined(separator: ", ") + "\n" }.joined()
        case .json:
            let items = ss.map { ep, s in
                GoJSON.object([
                    ("Endpoint", GoJSON.string(ep)),
                    ("Status", GoJSON.object([
                        ("header", Self.header(s.hasHeader, s.header)), ("version", GoJSON.omit(s.version)),
                        ("dbSize", GoJSON.omit(s.dbSize)), ("leader", GoJSON.omit(s.leader)),
                        ("raftIndex", GoJSON.omit(s.raftIndex)), ("raftTerm", GoJSON.omit(s.raftTerm)),
                        ("raftAppliedIndex", GoJSON.omit(s.raftAppliedIndex)),
                        ("errors", GoJSON.omitArray(s.errors.map(GoJSON.string))),
                        ("dbSizeInUse", GoJSON.omit(s.dbSizeInUse)), ("isLearner", GoJSON.omit(s.isLearner)),
                    ])),
                ])
            }
            return GoJSON.array(items) + "\n"
        case .fields:
            return ss.map { ep, s in
                Self.headerFields(s.header) + "\"Version\" : \(GoFormat.quote(s.version))\n\"DBSize\" : \(s.dbSize)\n"
                    + "\"Leader\" : \(s.leader)\n\"IsLearner\" : \(s.isLearner)\n\"RaftIndex\" : \(s.raftIndex)\n"
                    + "\"RaftTerm\" : \(s.raftTerm)\n\"RaftAppliedIndex\" : \(s.raftAppliedIndex)\n"
                    + "\"Errors\" : [\(s.errors.joined(separator: " "))]\n\"Endpoint\" : \(GoFormat.quote(ep))\n\n"
            }.joined()
        case .table:
            let header = ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"]
            return Table.render(header: header, rows: ss.map { Self.statusRow($0.0, $0.1) })
        case .protobuf: throw .unsupported(self.format)
        }
    }
}
