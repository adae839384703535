import CairnAPI
import CairnMVCC
import CairnProto
import NIOCore
import SwiftProtobuf

/// A change that goes through Raft: what one log entry asks the state machine to do.
public enum ServerRequest: Sendable {
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
    case compact(revision: Int64, physical: Bool)
    case leaseGrant(id: Int64, ttlSeconds: Int64)
    case leaseRevoke(id: Int64)
    case alarm(AlarmChange)
}

/// Raising or clearing an alarm through Raft (so every member agrees on it).
public struct AlarmChange: Sendable, Equatable {
    public enum Action: UInt8, Sendable { case activate = 1, deactivate = 2 }
    public var action: Action
    public var memberID: UInt64
    /// etcd's `AlarmType` number: 1 = NOSPACE, 2 = CORRUPT.
    public var alarm: Int

    public init(action: Action, memberID: UInt64, alarm: Int) {
        self.action = action
        self.memberID = memberID
        self.alarm = alarm
    }
}

/// What applying one request produced.
public enum ApplyResult: Sendable {
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
    case compact(revision: Int64)
    case leaseGrant(id: Int64, ttlSeconds: Int64, revision: Int64)
    case leaseRevoke(revision: Int64)
    case alarm(revision: Int64)
    /// The request failed with one of etcd's request errors; nothing changed.
    case failed(KeyspaceError)
}

/// The data of a Raft entry: `[kind: u8][request id: u64 little-endian][etcd protobuf message]`.
///
/// The payload is the etcd request message itself (`etcdserverpb.PutRequest`, …), so the log
/// is readable with etcd's own definitions. An empty entry is the leader's no-op for its term.
enum EntryCodec {
    enum Kind: UInt8 {
        case put = 1, deleteRange = 2, txn = 3, compact = 4, leaseGrant = 5, leaseRevoke = 6, alarm = 7

        /// The kind of the KV writes, whose entries may carry the request's bytes as received.
        init?(_ request: ServerRequest) {
            switch request {
            case .put: self = .put
            case .deleteRange: self = .deleteRange
            case .txn: self = .txn
            case .compact, .leaseGrant, .leaseRevoke, .alarm: return nil
            }
        }
    }

    static let headerBytes = 9

    /// An entry from a request's etcd message as received (no decode-encode round trip).
    /// Applying it decodes `payload` exactly as a request arriving in the log from elsewhere.
    static func entry(id: UInt64, kind: Kind, payload: ByteBuffer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: headerBytes + payload.readableBytes) { out, count in
            out[0] = kind.rawValue
            for i in 0..<8 { out[1 + i] = UInt8(truncatingIfNeeded: id >> (8 * UInt64(i))) }
            let copied = payload.withUnsafeReadableBytes { raw in
                UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(out)[headerBytes...]).copyBytes(from: raw)
                return raw.count
            }
            count = headerBytes + copied
        }
    }

    static func encode(id: UInt64, _ request: ServerRequest) throws -> [UInt8] {
        var out: [UInt8] = []
        let kind: Kind
        let body: [UInt8]
        switch request {
        case .put(let r):
            kind = .put
            body = try KVConversion.proto(r).serializedBytes()
        case .deleteRange(let r):
            kind = .deleteRange
            body = try KVConversion.proto(r).serializedBytes()
        case .txn(let t):
            kind = .txn
            body = try KVConversion.proto(t).serializedBytes()
        case .compact(let rev, let physical):
            kind = .compact
            var p = Etcdserverpb_CompactionRequest()
            p.revision = rev
            p.physical = physical
            body = try p.serializedBytes()
        case .leaseGrant(let id, let ttl):
            kind = .leaseGrant
            var p = Etcdserverpb_LeaseGrantRequest()
            p.id = id
            p.ttl = ttl
            body = try p.serializedBytes()
        case .leaseRevoke(let id):
            kind = .leaseRevoke
            var p = Etcdserverpb_LeaseRevokeRequest()
            p.id = id
            body = try p.serializedBytes()
        case .alarm(let a):
            kind = .alarm
            var p = Etcdserverpb_AlarmRequest()
            p.action = a.action == .activate ? .activate : .deactivate
            p.memberID = a.memberID
            p.alarm = Etcdserverpb_AlarmType(rawValue: a.alarm) ?? .none
            body = try p.serializedBytes()
        }
        out.reserveCapacity(headerBytes + body.count)
        out.append(kind.rawValue)
        var le = id.littleEndian
        withUnsafeBytes(of: &le) { out.append(contentsOf: $0) }
        out.append(contentsOf: body)
        return out
    }

    /// The request id of an entry, or nil for the no-op entry or an undecodable header.
    static func requestID(_ data: [UInt8]) -> UInt64? {
        guard data.count >= headerBytes else { return nil }
        var id: UInt64 = 0
        for i in 0..<8 { id |= UInt64(data[1 + i]) << (8 * UInt64(i)) }
        return id
    }

    enum DecodeError: Error, CustomStringConvertible {
        case malformed(String)
        var description: String {
            switch self { case .malformed(let s): return "malformed log entry: \(s)" }
        }
    }

    static func decode(_ data: [UInt8]) throws -> ServerRequest {
        guard data.count >= headerBytes, let kind = Kind(rawValue: data[0]) else {
            throw DecodeError.malformed("unknown kind or short header (\(data.count) bytes)")
        }
        let body = data[headerBytes...]
        do {
            switch kind {
            case .put:
                return .put(KVConversion.request(try Etcdserverpb_PutRequest(serializedBytes: Array(body))))
            case .deleteRange:
                return .deleteRange(
                    KVConversion.request(try Etcdserverpb_DeleteRangeRequest(serializedBytes: Array(body))))
            case .txn:
                return .txn(try KVConversion.request(try Etcdserverpb_TxnRequest(serializedBytes: Array(body))))
            case .compact:
                let p = try Etcdserverpb_CompactionRequest(serializedBytes: Array(body))
                return .compact(revision: p.revision, physical: p.physical)
            case .leaseGrant:
                let p = try Etcdserverpb_LeaseGrantRequest(serializedBytes: Array(body))
                return .leaseGrant(id: p.id, ttlSeconds: p.ttl)
            case .leaseRevoke:
                return .leaseRevoke(id: try Etcdserverpb_LeaseRevokeRequest(serializedBytes: Array(body)).id)
            case .alarm:
                let p = try Etcdserverpb_AlarmRequest(serializedBytes: Array(body))
                return .alarm(
                    AlarmChange(
                        action: p.action == .activate ? .activate : .deactivate, memberID: p.memberID,
                        alarm: p.alarm.rawValue))
            }
        } catch let e as DecodeError {
            throw e
        } catch {
            throw DecodeError.malformed("\(kind): \(error)")
        }
    }
}
