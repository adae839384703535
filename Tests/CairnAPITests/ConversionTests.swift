import GRPCTestClient
import CairnAPI
import CairnMVCC
import CairnProto
import Foundation
import Testing

@Suite struct ConversionTests {
    let kv = KeyValue(key: [1, 2], createRevision: 3, modRevision: 4, version: 5, value: [6, 7], lease: 8)

    @Test func keyValueEveryField() {
        let p = KVConversion.proto(kv)
        #expect(p.key == Data([1, 2]) && p.createRevision == 3 && p.modRevision == 4)
        #expect(p.version == 5 && p.value == Data([6, 7]) && p.lease == 8)
        #expect(KVConversion.keyValue(p) == kv)
    }

    @Test(arguments: [CairnMVCC.SortOrder.none, .ascend, .descend], [CairnMVCC.SortTarget.key, .version, .create, .mod, .value])
    func rangeRequestEveryField(order: CairnMVCC.SortOrder, target: CairnMVCC.SortTarget) throws {
        let r = RangeRequest(
            key: Array("a".utf8), rangeEnd: [0], limit: 7, revision: 9, sortOrder: order, sortTarget: target,
            keysOnly: true, countOnly: true, minModRevision: 1, maxModRevision: 2, minCreateRevision: 3,
            maxCreateRevision: 4)
        let p = KVConversion.proto(r, serializable: true)
        #expect(p.serializable)
        #expect(p.sortOrder.rawValue == order.rawValue && p.sortTarget.rawValue == target.rawValue)
        #expect(p.limit == 7 && p.revision == 9 && p.rangeEnd == Data([0]) && p.keysOnly && p.countOnly)
        #expect(p.minModRevision == 1 && p.maxModRevision == 2 && p.minCreateRevision == 3 && p.maxCreateRevision == 4)
        // Through the wire too.
        let wire = try Etcdserverpb_RangeRequest(serializedBytes: try p.serializedBytes() as [UInt8])
        #expect(try KVConversion.request(wire) == r)
    }

    @Test func unrecognizedEnumsAreRejected() {
        var p = Etcdserverpb_RangeRequest()
        p.key = Data([1])
        p.sortOrder = .UNRECOGNIZED(9)
        #expect(throws: UnsupportedValue(what: "sort order 9")) { try KVConversion.request(p) }
        var c = Etcdserverpb_Compare()
        c.result = .UNRECOGNIZED(5)
        #expect(throws: UnsupportedValue(what: "compare result 5")) { try KVConversion.compare(c) }
    }

    @Test func rangeResponse() {
        let r = RangeResponse(revision: 12, kvs: [kv], more: true, count: 3)
        var h = Etcdserverpb_ResponseHeader()
        h.revision = 12
        h.clusterID = 1
        let top = KVConversion.proto(r, header: h)
        #expect(top.header.clusterID == 1 && top.header.revision == 12 && top.more && top.count == 3)
        #expect(KVConversion.response(top) == r)
        let sub = KVConversion.proto(r, header: nil)
        #expect(sub.header.revision == 12 && sub.header.clusterID == 0 && sub.header.memberID == 0 && sub.header.raftTerm == 0)
    }

    @Test func putEveryField() {
        let r = PutRequest(key: [1], value: [2], lease: 3, prevKV: true, ignoreValue: true, ignoreLease: true)
        let p = KVConversion.proto(r)
        #expect(p.key == Data([1]) && p.value == Data([2]) && p.lease == 3 && p.prevKv && p.ignoreValue && p.ignoreLease)
        #expect(KVConversion.request(p) == r)
        let withPrev = KVConversion.proto(PutResponse(revision: 4, prevKV: kv), header: nil)
        #expect(withPrev.hasPrevKv && KVConversion.response(withPrev) == PutResponse(revision: 4, prevKV: kv))
        let noPrev = KVConversion.proto(PutResponse(revision: 4, prevKV: nil), header: nil)
        #expect(!noPrev.hasPrevKv)
    }

    @Test func deleteEveryField() {
        let r = DeleteRangeRequest(key: [1], rangeEnd: [5], prevKV: true)
        let p = KVConversion.proto(r)
        #expect(p.key == Data([1]) && p.rangeEnd == Data([5]) && p.prevKv)
        #expect(KVConversion.request(p) == r)
        let resp = DeleteRangeResponse(revision: 6, deleted: 2, prevKVs: [kv, kv])
        let pr = KVConversion.proto(resp, header: nil)
        #expect(pr.deleted == 2 && pr.prevKvs.count == 2 && pr.header.revision == 6)
        #expect(KVConversion.response(pr) == resp)
    }

    @Test(arguments: [
        CompareTarget.version(1), .createRevision(2), .modRevision(3), .value([4, 5]), .lease(6),
    ])
    func compareTargets(target: CompareTarget) throws {
        for result in [CompareResult.equal, .greater, .less, .notEqual] {
            let c = Compare(key: [1], rangeEnd: [2], target: target, result: result)
            let p = KVConversion.proto(c)
            #expect(p.result.rawValue == result.rawValue)
            #expect(p.key == Data([1]) && p.rangeEnd == Data([2]))
            #expect(try KVConversion.compare(p) == c)
        }
    }

    @Test func compareTargetSelectsUnionMember() throws {
        // target says MOD but the union holds a version: etcd reads mod_revision, i.e. 0.
        var p = Etcdserverpb_Compare()
        p.key = Data([1])
        p.target = .mod
        p.version = 9
        #expect(try KVConversion.compare(p).target == .modRevision(0))
    }

    @Test func nestedTxnRoundTrip() throws {
        let inner = TxnRequest(
            compare: [Compare(key: [9], target: .value([1]), result: .notEqual)],
            success: [.put(PutRequest(key: [8], value: [1]))],
            failure: [.range(RangeRequest(key: [8], sortOrder: .descend))])
        let t = TxnRequest(
            compare: [Compare(key: [1], target: .version(0), result: .equal)],
            success: [
                .range(RangeRequest(key: [1], limit: 1)), .put(PutRequest(key: [2], prevKV: true)),
                .deleteRange(DeleteRangeRequest(key: [3], rangeEnd: [4], prevKV: true)), .txn(inner),
            ],
            failure: [.txn(TxnRequest())])
        let p = KVConversion.proto(t)
        let wire = try Etcdserverpb_TxnRequest(serializedBytes: try p.serializedBytes() as [UInt8])
        #expect(try KVConversion.request(wire) == t)

        let resp = TxnResponse(
            revision: 5, succeeded: true,
            responses: [
                .range(RangeResponse(revision: 4, kvs: [kv], more: false, count: 1)),
                .put(PutResponse(revision: 5, prevKV: nil)),
                .deleteRange(DeleteRangeResponse(revision: 5, deleted: 0, prevKVs: [])),
                .txn(TxnResponse(revision: 0, succeeded: false, responses: [.range(RangeResponse(revision: 4, kvs: [], more: false, count: 0))])),
            ])
        let pr = KVConversion.proto(resp, header: KVConversion.header((1, 2, 3), revision: 5))
        #expect(pr.header.clusterID == 1 && pr.header.memberID == 2 && pr.header.raftTerm == 3 && pr.header.revision == 5)
        #expect(pr.responses[3].responseTxn.header.revision == 0)
        #expect(pr.responses[3].responseTxn.header.clusterID == 0)
        #expect(KVConversion.response(pr) == resp)
    }

    @Test func emptyRequestOpIsSkipped() throws {
        var p = Etcdserverpb_TxnRequest()
        p.success = [Etcdserverpb_RequestOp()]
        #expect(try KVConversion.request(p).success.isEmpty)
    }
}
