import CairnAPI
import CairnMVCC
import CairnProto
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

@testable import CairnServer

/// The leader applies its own writes from the request it decoded on arrival, while a replay (or
/// a follower) decodes the log entry, which carries the client's bytes as received. Both must
/// see the same request.
@Suite("Log entries carry requests as received")
struct EntryCodecTests {
    static func roundTrip(_ kind: EntryCodec.Kind, _ message: some SwiftProtobuf.Message) throws -> (ServerRequest, [UInt8]) {
        let bytes: [UInt8] = try message.serializedBytes()
        let entry = EntryCodec.entry(id: 0x0102_0304_0506_0708, kind: kind, payload: ByteBuffer(bytes: bytes))
        #expect(entry.count == EntryCodec.headerBytes + bytes.count)
        #expect(Array(entry[EntryCodec.headerBytes...]) == bytes)
        #expect(EntryCodec.requestID(entry) == 0x0102_0304_0506_0708)
        return (try EntryCodec.decode(entry), entry)
    }

    @Test func putDecodesToWhatTheLeaderApplies() throws {
        var p = Etcdserverpb_PutRequest()
        p.key = Data("k".utf8)
        p.value = Data([0, 1, 2, 255])
        p.lease = 77
        p.prevKv = true
        p.ignoreLease = false
        let (decoded, _) = try Self.roundTrip(.put, p)
        guard case .put(let r) = decoded else { Issue.record("not a put: \(decoded)"); return }
        #expect(r == KVConversion.request(p))
        #expect(r.lease == 77 && r.prevKV)
    }

    @Test func deleteRangeAndTxnDecodeToWhatTheLeaderApplies() throws {
        var d = Etcdserverpb_DeleteRangeRequest()
        d.key = Data("a".utf8)
        d.rangeEnd = Data("b".utf8)
        d.prevKv = true
        let (dd, _) = try Self.roundTrip(.deleteRange, d)
        guard case .deleteRange(let dr) = dd else { Issue.record("not a delete: \(dd)"); return }
        #expect(dr == KVConversion.request(d))

        var t = Etcdserverpb_TxnRequest()
        var c = Etcdserverpb_Compare()
        c.key = Data("k".utf8)
        c.target = .version
        c.result = .greater
        c.version = 3
        t.compare = [c]
        var put = Etcdserverpb_RequestOp()
        var pr = Etcdserverpb_PutRequest()
        pr.key = Data("x".utf8)
        pr.value = Data("y".utf8)
        put.requestPut = pr
        var get = Etcdserverpb_RequestOp()
        var rr = Etcdserverpb_RangeRequest()
        rr.key = Data("x".utf8)
        get.requestRange = rr
        t.success = [put, get]
        t.failure = [get]
        let (td, _) = try Self.roundTrip(.txn, t)
        guard case .txn(let tr) = td else { Issue.record("not a txn: \(td)"); return }
        #expect(tr == (try KVConversion.request(t)))
        #expect(tr.success.count == 2 && tr.failure.count == 1)
    }

    @Test func anEntryWithBrokenBytesIsRefusedNotMisread() throws {
        let entry = EntryCodec.entry(id: 1, kind: .put, payload: ByteBuffer(bytes: [0x0a, 0x05, 0x61]))  // field 1, length 5, 1 byte
        #expect(throws: EntryCodec.DecodeError.self) { try EntryCodec.decode(entry) }
    }
}
