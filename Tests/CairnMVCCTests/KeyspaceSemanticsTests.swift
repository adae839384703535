import CairnBackend
import Testing

@testable import CairnMVCC

/// etcd v3 keyspace semantics, each behaviour a named test, on both backends.
@Suite struct RevisionTests {
    @Test(arguments: BackendKind.allCases)
    func emptyKeyspaceStartsAtRevisionOne(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(ks.revision == 1)
        let r = try ks.range(RangeRequest(key: b("a")))
        #expect(r.revision == 1 && r.kvs.isEmpty && r.count == 0)
    }

    @Test(arguments: BackendKind.allCases)
    func putSetsCreateModAndVersion(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(try ks.put("foo", "1").revision == 2)
        #expect(try ks.put("foo", "2").revision == 3)
        let kv = try #require(try ks.get("foo"))
        #expect(kv.createRevision == 2 && kv.modRevision == 3 && kv.version == 2 && s(kv.value) == "2")
    }

    @Test(arguments: BackendKind.allCases)
    func deleteThenPutStartsANewGeneration(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("k", "a")  // 2
        try ks.put("k", "b")  // 3
        try ks.delete("k")  // 4
        try ks.put("k", "c")  // 5
        let kv = try #require(try ks.get("k"))
        #expect(kv.createRevision == 5 && kv.version == 1 && kv.modRevision == 5)
        #expect(try ks.get("k", rev: 4) == nil)
        #expect(try ks.get("k", rev: 3)?.version == 2)
    }

    @Test(arguments: BackendKind.allCases)
    func historicalReadsSeeOldValues(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        for i in 1...5 { try ks.put("h", "v\(i)") }
        for rev in Int64(2)...6 {
            let r = try ks.range(RangeRequest(key: b("h"), revision: rev))
            #expect(s(r.kvs[0].value) == "v\(rev - 1)")
            #expect(r.revision == 6, "the header carries the current revision")
        }
        #expect(try ks.get("h", rev: 1) == nil)
    }

    @Test(arguments: BackendKind.allCases)
    func futureRevisionIsRefused(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "1")
        #expect(throws: KeyspaceError.futureRevision) { try ks.range(RangeRequest(key: b("a"), revision: 3)) }
        #expect(KeyspaceError.futureRevision.message == "mvcc: required revision is a future revision")
    }
}

@Suite struct RangeTests {
    func populated(_ kind: BackendKind) throws -> TestKeyspace {
        let ks = try TestKeyspace(kind)
        for k in ["a", "b", "ba", "bb", "c", "d"] { try ks.put(k, "v-" + k) }
        return ks
    }

    @Test(arguments: BackendKind.allCases)
    func emptyKeyIsRefused(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(throws: KeyspaceError.emptyKey) { try ks.range(RangeRequest(key: [])) }
        #expect(KeyspaceError.emptyKey.message == "etcdserver: key is not provided")
    }

    @Test(arguments: BackendKind.allCases)
    func singleKey(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        let r = try ks.range(RangeRequest(key: b("b")))
        #expect(r.kvs.map { s($0.key) } == ["b"] && r.count == 1 && !r.more)
        #expect(try ks.range(RangeRequest(key: b("zz"))).kvs.isEmpty)
    }

    @Test(arguments: BackendKind.allCases)
    func halfOpenInterval(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        let r = try ks.range(RangeRequest(key: b("b"), rangeEnd: b("c")))
        #expect(r.kvs.map { s($0.key) } == ["b", "ba", "bb"] && r.count == 3)
    }

    @Test(arguments: BackendKind.allCases)
    func rangeEndZeroMeansEveryKeyFromKey(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        #expect(try ks.range(RangeRequest(key: b("bb"), rangeEnd: [0])).kvs.map { s($0.key) } == ["bb", "c", "d"])
        #expect(try ks.range(RangeRequest(key: [0], rangeEnd: [0])).count == 6)
    }

    @Test(arguments: BackendKind.allCases)
    func prefixViaRangeEnd(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        // etcd's prefix end of "b" is "c".
        #expect(try ks.range(RangeRequest(key: b("b"), rangeEnd: b("c"))).count == 3)
    }

    @Test(arguments: BackendKind.allCases)
    func rangeEndBelowKeyReturnsNothing(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        let r = try ks.range(RangeRequest(key: b("c"), rangeEnd: b("a")))
        #expect(r.kvs.isEmpty && r.count == 0)
        #expect(try ks.range(RangeRequest(key: b("c"), rangeEnd: b("c"))).kvs.isEmpty)
    }

    @Test(arguments: BackendKind.allCases)
    func limitWithMoreAndCount(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        let r = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], limit: 2))
        #expect(r.kvs.map { s($0.key) } == ["a", "b"] && r.more && r.count == 6)
        let all = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], limit: 6))
        #expect(all.kvs.count == 6 && !all.more)
    }

    @Test(arguments: BackendKind.allCases)
    func limitZeroMeansNoLimit(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        let r = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], limit: 0))
        #expect(r.kvs.count == 6 && !r.more)
    }

    @Test(arguments: BackendKind.allCases)
    func countOnlyReturnsNoKVs(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        let r = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], countOnly: true))
        #expect(r.kvs.isEmpty && r.count == 6)
    }

    @Test(arguments: BackendKind.allCases)
    func keysOnlyOmitsValues(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        let r = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], keysOnly: true))
        #expect(r.kvs.count == 6 && r.kvs.allSatisfy { $0.value.isEmpty && $0.version == 1 })
    }

    @Test(arguments: BackendKind.allCases)
    func sortByEachTarget(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("x", "3")  // 2
        try ks.put("y", "1")  // 3
        try ks.put("z", "2")  // 4
        try ks.put("x", "0")  // 5: x has version 2, mod 5
        func keys(_ target: SortTarget, _ order: SortOrder) throws -> [String] {
            try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], sortOrder: order, sortTarget: target)).kvs.map {
                s($0.key)
            }
        }
        #expect(try keys(.key, .descend) == ["z", "y", "x"])
        #expect(try keys(.key, .ascend) == ["x", "y", "z"])
        #expect(try keys(.value, .ascend) == ["x", "y", "z"])
        #expect(try keys(.value, .descend) == ["z", "y", "x"])
        #expect(try keys(.mod, .descend) == ["x", "z", "y"])
        #expect(try keys(.create, .ascend) == ["x", "y", "z"])
        #expect(try keys(.version, .descend).first == "x")
        // A target other than key with order NONE sorts ascending.
        #expect(try keys(.mod, .none) == ["y", "z", "x"])
    }

    @Test(arguments: BackendKind.allCases)
    func sortThenLimit(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        let r = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], limit: 2, sortOrder: .descend))
        #expect(r.kvs.map { s($0.key) } == ["d", "c"] && r.more && r.count == 6)
    }

    @Test(arguments: BackendKind.allCases)
    func modAndCreateRevisionFilters(_ kind: BackendKind) throws {
        let ks = try populated(kind)  // a=2 b=3 ba=4 bb=5 c=6 d=7
        try ks.put("a", "again")  // a: create 2, mod 8
        func keys(_ r: RangeRequest) throws -> [String] { try ks.range(r).kvs.map { s($0.key) } }
        #expect(try keys(RangeRequest(key: b("a"), rangeEnd: [0], minModRevision: 6)) == ["a", "c", "d"])
        #expect(try keys(RangeRequest(key: b("a"), rangeEnd: [0], maxModRevision: 4)) == ["b", "ba"])
        #expect(try keys(RangeRequest(key: b("a"), rangeEnd: [0], minCreateRevision: 6)) == ["c", "d"])
        #expect(try keys(RangeRequest(key: b("a"), rangeEnd: [0], maxCreateRevision: 3)) == ["a", "b"])
        // count is the number of keys in the range, before filters.
        #expect(try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], maxCreateRevision: 3)).count == 6)
    }

    @Test(arguments: BackendKind.allCases)
    func deletedKeysAreNotCounted(_ kind: BackendKind) throws {
        let ks = try populated(kind)
        try ks.delete("b", "c")
        let r = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0]))
        #expect(r.kvs.map { s($0.key) } == ["a", "c", "d"] && r.count == 3)
    }

    @Test(arguments: BackendKind.allCases)
    func binaryKeysOrderBytewise(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        for k: [UInt8] in [[0xff], [0x00, 0x01], [0x7f], [0x80, 0x00]] {
            try ks.apply(.put(PutRequest(key: k, value: [1])))
        }
        let r = try ks.range(RangeRequest(key: [0], rangeEnd: [0]))
        #expect(r.kvs.map(\.key) == [[0x00, 0x01], [0x7f], [0x80, 0x00], [0xff]])
    }
}

@Suite struct PutTests {
    @Test(arguments: BackendKind.allCases)
    func prevKVReturnsThePreviousValue(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(try ks.put("p", "1", prevKV: true).prevKV == nil)
        let r = try ks.put("p", "2", prevKV: true)
        #expect(s(r.prevKV!.value) == "1" && r.prevKV!.modRevision == 2)
    }

    @Test(arguments: BackendKind.allCases)
    func emptyKeyIsRefused(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(throws: KeyspaceError.emptyKey) { try ks.apply(.put(PutRequest(key: [], value: b("v")))) }
        #expect(ks.revision == 1)
    }

    @Test(arguments: BackendKind.allCases)
    func ignoreValueKeepsTheValue(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("iv", "keep")
        try ks.apply(.put(PutRequest(key: b("iv"), ignoreValue: true)))
        let kv = try #require(try ks.get("iv"))
        #expect(s(kv.value) == "keep" && kv.version == 2)
    }

    @Test(arguments: BackendKind.allCases)
    func ignoreValueOnAMissingKeyFails(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(throws: KeyspaceError.keyNotFound) { try ks.apply(.put(PutRequest(key: b("nope"), ignoreValue: true))) }
        #expect(ks.revision == 1)
    }

    @Test(arguments: BackendKind.allCases)
    func ignoreValueWithAValueFails(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("iv", "x")
        #expect(throws: KeyspaceError.valueProvided) {
            try ks.apply(.put(PutRequest(key: b("iv"), value: b("y"), ignoreValue: true)))
        }
    }

    @Test(arguments: BackendKind.allCases)
    func leaseAttachmentAndIgnoreLease(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.apply(.leaseGrant(LeaseRecord(id: 7, ttlSeconds: 60)))
        try ks.put("l", "1", lease: 7)
        #expect(try ks.get("l")?.lease == 7)
        try ks.apply(.put(PutRequest(key: b("l"), value: b("2"), ignoreLease: true)))
        #expect(try ks.get("l")?.lease == 7)
        #expect(ks.lease(7)?.keys == [b("l")])
        try ks.put("l", "3")  // no lease: detached
        #expect(try ks.get("l")?.lease == 0)
        #expect(ks.lease(7)?.keys == [])
    }

    @Test(arguments: BackendKind.allCases)
    func unknownLeaseIsRefused(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(throws: KeyspaceError.leaseNotFound) { try ks.put("k", "v", lease: 42) }
        #expect(KeyspaceError.leaseNotFound.message == "etcdserver: requested lease not found")
    }

    @Test(arguments: BackendKind.allCases)
    func ignoreLeaseWithALeaseFails(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("k", "v")
        #expect(throws: KeyspaceError.leaseProvided) {
            try ks.apply(.put(PutRequest(key: b("k"), value: b("w"), lease: 1, ignoreLease: true)))
        }
    }
}

@Suite struct DeleteRangeTests {
    @Test(arguments: BackendKind.allCases)
    func deleteCountsAndReturnsPrevKVs(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        for k in ["a", "b", "c"] { try ks.put(k, k) }
        let r = try ks.delete("a", "c", prevKV: true)
        #expect(r.deleted == 2 && r.prevKVs.map { s($0.value) } == ["a", "b"] && r.revision == 5)
    }

    @Test(arguments: BackendKind.allCases)
    func oneRevisionForTheWholeDelete(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        for k in ["a", "b", "c"] { try ks.put(k, k) }
        try ks.delete("a", "\u{7f}")
        #expect(ks.revision == 5)
        let ev = try ks.events(from: 5)
        #expect(ev.count == 3 && ev.allSatisfy { $0.kind == .delete && $0.kv.modRevision == 5 })
    }

    @Test(arguments: BackendKind.allCases)
    func deletingADeletedKeyChangesNothing(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "1")
        try ks.delete("a")
        let r = try ks.delete("a")
        #expect(r.deleted == 0 && r.revision == 3 && ks.revision == 3)
    }

    @Test(arguments: BackendKind.allCases)
    func deleteOfAMissingKeyDoesNotBumpTheRevision(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let r = try ks.delete("ghost")
        #expect(r.deleted == 0 && r.revision == 1)
    }

    @Test(arguments: BackendKind.allCases)
    func emptyKeyIsRefused(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(throws: KeyspaceError.emptyKey) { try ks.apply(.delete(DeleteRangeRequest(key: []))) }
    }
}

@Suite struct TxnTests {
    func cmp(_ key: String, _ target: CompareTarget, _ result: CompareResult, end: String = "") -> Compare {
        Compare(key: b(key), rangeEnd: b(end), target: target, result: result)
    }

    @Test(arguments: BackendKind.allCases)
    func successBranchIsOneRevision(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("k", "v")
        let r = try ks.txn(
            TxnRequest(
                compare: [cmp("k", .value(b("v")), .equal)],
                success: [.put(PutRequest(key: b("a"), value: b("1"))), .put(PutRequest(key: b("b"), value: b("2")))],
                failure: []))
        #expect(r.succeeded && r.revision == 3)
        #expect(try ks.get("a")?.modRevision == 3 && ks.get("b")?.modRevision == 3)
        let ev = try ks.events(from: 3)
        #expect(ev.map { s($0.kv.key) } == ["a", "b"])
    }

    @Test(arguments: BackendKind.allCases)
    func failureBranchRuns(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let r = try ks.txn(
            TxnRequest(
                compare: [cmp("missing", .version(0), .greater)], success: [],
                failure: [.put(PutRequest(key: b("f"), value: b("x")))]))
        #expect(!r.succeeded && r.revision == 2)
        #expect(try ks.get("f") != nil)
    }

    @Test(arguments: BackendKind.allCases)
    func compareOperatorsOnEachTarget(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.apply(.leaseGrant(LeaseRecord(id: 5, ttlSeconds: 10)))
        try ks.put("k", "m", lease: 5)  // rev 2
        try ks.put("k", "m")  // rev 3, version 2, no lease
        let cases: [(CompareTarget, CompareResult, Bool)] = [
            (.version(2), .equal, true), (.version(1), .greater, true), (.version(3), .less, true),
            (.version(2), .notEqual, false),
            (.createRevision(2), .equal, true), (.createRevision(3), .less, true),
            (.modRevision(3), .equal, true), (.modRevision(2), .greater, true), (.modRevision(3), .notEqual, false),
            (.value(b("m")), .equal, true), (.value(b("a")), .greater, true), (.value(b("z")), .less, true),
            (.value(b("m")), .notEqual, false),
            (.lease(0), .equal, true), (.lease(5), .less, true),
        ]
        for (target, result, expected) in cases {
            let r = try ks.txn(TxnRequest(compare: [cmp("k", target, result)]))
            #expect(r.succeeded == expected, "\(target) \(result)")
        }
        #expect(ks.revision == 3, "txns without writes do not change the revision")
    }

    @Test(arguments: BackendKind.allCases)
    func compareOnAMissingKey(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(try ks.txn(TxnRequest(compare: [cmp("none", .version(0), .equal)])).succeeded)
        #expect(try ks.txn(TxnRequest(compare: [cmp("none", .createRevision(0), .equal)])).succeeded)
        #expect(try ks.txn(TxnRequest(compare: [cmp("none", .modRevision(1), .less)])).succeeded)
        // A value compare on a missing key always fails, even "not equal".
        #expect(!(try ks.txn(TxnRequest(compare: [cmp("none", .value(b("x")), .notEqual)])).succeeded))
        #expect(!(try ks.txn(TxnRequest(compare: [cmp("none", .value([]), .equal)])).succeeded))
    }

    @Test(arguments: BackendKind.allCases)
    func compareOverARangeMustHoldForEveryKey(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("r1", "a")
        try ks.put("r2", "a")
        #expect(try ks.txn(TxnRequest(compare: [cmp("r", .value(b("a")), .equal, end: "s")])).succeeded)
        try ks.put("r3", "b")
        #expect(!(try ks.txn(TxnRequest(compare: [cmp("r", .value(b("a")), .equal, end: "s")])).succeeded))
        #expect(try ks.txn(TxnRequest(compare: [cmp("r", .version(1), .equal, end: "s")])).succeeded)
    }

    @Test(arguments: BackendKind.allCases)
    func readsInsideATxnSeeItsWrites(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("x", "old")
        let r = try ks.txn(
            TxnRequest(success: [
                .range(RangeRequest(key: b("x"))),
                .put(PutRequest(key: b("x"), value: b("new"), prevKV: true)),
                .range(RangeRequest(key: b("x"))),
            ]))
        guard case .range(let before) = r.responses[0], case .put(let put) = r.responses[1],
            case .range(let after) = r.responses[2]
        else {
            Issue.record("unexpected responses \(r.responses)")
            return
        }
        #expect(s(before.kvs[0].value) == "old" && before.revision == 2)
        #expect(s(put.prevKV!.value) == "old" && put.revision == 3)
        #expect(s(after.kvs[0].value) == "new" && after.revision == 3)
    }

    @Test(arguments: BackendKind.allCases)
    func samePutTwiceIsRejected(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let t = TxnRequest(success: [
            .put(PutRequest(key: b("d"), value: b("1"))), .put(PutRequest(key: b("d"), value: b("2"))),
        ])
        #expect(throws: KeyspaceError.duplicateKey) { try ks.txn(t) }
        #expect(KeyspaceError.duplicateKey.message == "etcdserver: duplicate key given in txn request")
        #expect(try ks.revision == 1 && (ks.get("d")) == nil)
    }

    @Test(arguments: BackendKind.allCases)
    func putInsideADeletedRangeIsRejected(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let t = TxnRequest(success: [
            .deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: b("m"))), .put(PutRequest(key: b("c"), value: b("1"))),
        ])
        #expect(throws: KeyspaceError.duplicateKey) { try ks.txn(t) }
    }

    @Test(arguments: BackendKind.allCases)
    func putsInBothBranchesOfANestedTxnAreAllowed(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let inner = TxnRequest(
            compare: [cmp("q", .version(0), .equal)], success: [.put(PutRequest(key: b("q"), value: b("s")))],
            failure: [.put(PutRequest(key: b("q"), value: b("f")))])
        let r = try ks.txn(TxnRequest(success: [.txn(inner)]))
        #expect(try r.succeeded && (ks.get("q")).map { s($0.value) } == "s")
        // But a nested put colliding with the parent's put is a duplicate.
        let clash = TxnRequest(success: [.txn(inner), .put(PutRequest(key: b("q"), value: b("p")))])
        #expect(throws: KeyspaceError.duplicateKey) { try ks.txn(clash) }
    }

    @Test(arguments: BackendKind.allCases)
    func nestedTxnComparesSeeTheStateBeforeTheTxn(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let inner = TxnRequest(
            compare: [cmp("n", .version(0), .equal)], success: [.put(PutRequest(key: b("inner"), value: b("ran")))])
        let r = try ks.txn(TxnRequest(success: [.put(PutRequest(key: b("n"), value: b("1"))), .txn(inner)]))
        guard case .txn(let nested) = r.responses[1] else {
            Issue.record("no nested response")
            return
        }
        // "n" did not exist when the txn began, so the nested compare held.
        #expect(nested.succeeded && nested.revision == 0)
        #expect(try ks.get("inner") != nil && ks.revision == 2)
    }

    @Test(arguments: BackendKind.allCases)
    func tooManyOpsIsRejected(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind, maxTxnOps: 4)
        let ops = (0..<5).map { RequestOp.put(PutRequest(key: b("k\($0)"), value: b("v"))) }
        #expect(throws: KeyspaceError.tooManyOps) { try ks.txn(TxnRequest(success: ops)) }
        #expect(KeyspaceError.tooManyOps.message == "etcdserver: too many operations in txn request")
        #expect(try ks.txn(TxnRequest(success: Array(ops.prefix(4)))).succeeded)
    }

    @Test(arguments: BackendKind.allCases)
    func aFailingRequestInATxnAppliesNothing(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let t = TxnRequest(success: [
            .put(PutRequest(key: b("ok"), value: b("1"))), .put(PutRequest(key: b("bad"), value: b("2"), lease: 99)),
        ])
        #expect(throws: KeyspaceError.leaseNotFound) { try ks.txn(t) }
        #expect(try ks.revision == 1 && (ks.get("ok")) == nil)
        let t2 = TxnRequest(success: [.range(RangeRequest(key: b("x"), revision: 50)), .put(PutRequest(key: b("ok"), value: b("1")))])
        #expect(throws: KeyspaceError.futureRevision) { try ks.txn(t2) }
        #expect(ks.revision == 1)
    }

    @Test(arguments: BackendKind.allCases)
    func deleteInsideATxn(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "1")
        try ks.put("b", "2")
        let r = try ks.txn(TxnRequest(success: [
            .deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: b("c"), prevKV: true)),
            .deleteRange(DeleteRangeRequest(key: b("a"))),
        ]))
        guard case .deleteRange(let d1) = r.responses[0], case .deleteRange(let d2) = r.responses[1] else {
            Issue.record("unexpected responses")
            return
        }
        #expect(d1.deleted == 2 && d1.prevKVs.count == 2 && d2.deleted == 0 && r.revision == 4)
    }
}

@Suite struct CompactionTests {
    @Test(arguments: BackendKind.allCases)
    func readsBelowTheCompactedRevisionFail(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        for i in 1...4 { try ks.put("c", "\(i)") }  // revs 2...5
        try ks.compact(4)
        #expect(throws: KeyspaceError.compacted) { try ks.get("c", rev: 3) }
        #expect(KeyspaceError.compacted.message == "mvcc: required revision has been compacted")
        #expect(try ks.get("c", rev: 4).map { s($0.value) } == "3")
        #expect(try ks.get("c").map { s($0.value) } == "4")
    }

    @Test(arguments: BackendKind.allCases)
    func compactionKeepsEachKeysLatestRevision(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "1")  // 2
        try ks.put("a", "2")  // 3
        try ks.put("b", "1")  // 4
        try ks.put("a", "3")  // 5
        try ks.compact(5)
        let stats = try ks.stats()
        #expect(stats.entriesByTable["key"] == 2, "only a@5 and b@4 remain")
        #expect(try ks.get("b")?.modRevision == 4)
        #expect(try ks.get("a")?.version == 3)
    }

    @Test(arguments: BackendKind.allCases)
    func compactionRemovesTombstonesAndDeadKeys(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("dead", "1")  // 2
        try ks.delete("dead")  // 3
        try ks.put("live", "1")  // 4
        try ks.compact(4)
        #expect(try ks.stats().entriesByTable["key"] == 1)
        #expect(try ks.range(RangeRequest(key: [0], rangeEnd: [0])).count == 1)
        // A delete after the compaction point survives compaction below it.
        try ks.delete("live")  // 5
        try ks.compact(5)  // the tombstone at 5 is at the compaction point: removed with its key
        #expect(try ks.stats().entriesByTable["key"] == 0)
    }

    @Test(arguments: BackendKind.allCases)
    func compactingAtTheCurrentRevision(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("x", "1")
        try ks.put("x", "2")
        try ks.compact(ks.revision)
        #expect(ks.compactedRevision == 3)
        #expect(try ks.get("x").map { s($0.value) } == "2")
        try ks.put("x", "3")
        #expect(try ks.get("x")?.version == 3)
    }

    @Test(arguments: BackendKind.allCases)
    func compactingTwiceAtTheSameRevisionFails(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("x", "1")
        try ks.compact(2)
        #expect(throws: KeyspaceError.compacted) { try ks.compact(2) }
        #expect(throws: KeyspaceError.compacted) { try ks.compact(1) }
    }

    @Test(arguments: BackendKind.allCases)
    func compactingTheFutureFails(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        #expect(throws: KeyspaceError.futureRevision) { try ks.compact(5) }
    }

    @Test(arguments: BackendKind.allCases)
    func compactionSurvivesReopen(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        for i in 0..<30 { try ks.put("k\(i % 4)", "\(i)") }
        try ks.compact(20)
        try ks.reopen()
        #expect(ks.compactedRevision == 20)
        #expect(throws: KeyspaceError.compacted) { try ks.get("k1", rev: 19) }
        #expect(try ks.range(RangeRequest(key: b("k"), rangeEnd: b("l"))).count == 4)
        #expect(try ks.stats().entriesByTable["key"] == 4 + 11)  // latest <= 20 of each key, plus 21...31
    }

    @Test(arguments: BackendKind.allCases)
    func historyBelowCompactionIsGoneButAboveIsKept(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        for i in 1...6 { try ks.put("w", "\(i)") }  // revs 2..7
        try ks.compact(4)
        #expect(throws: KeyspaceError.compacted) { try ks.events(from: 3) }
        let ev = try ks.events(from: 4)
        #expect(ev.map(\.kv.modRevision) == [4, 5, 6, 7])
    }
}

@Suite struct EventHistoryTests {
    @Test(arguments: BackendKind.allCases)
    func eventsReplayPutsAndDeletesInOrder(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "1")
        try ks.put("b", "2")
        try ks.delete("a")
        let ev = try ks.events(from: 2)
        #expect(ev.map(\.kind) == [.put, .put, .delete])
        #expect(ev.map { s($0.kv.key) } == ["a", "b", "a"])
        #expect(ev[2].kv.modRevision == 4 && ev[2].kv.value.isEmpty)
        #expect(try ks.events(from: 3, to: 3).map { s($0.kv.key) } == ["b"])
    }
}

@Suite struct LeaseTests {
    @Test(arguments: BackendKind.allCases)
    func revokeDeletesAttachedKeysInOneRevision(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.apply(.leaseGrant(LeaseRecord(id: 1, ttlSeconds: 5)))
        try ks.put("x", "1", lease: 1)
        try ks.put("y", "1", lease: 1)
        try ks.put("z", "1")
        guard case .revision(let rev) = try ks.apply(.leaseRevoke(1)) else { fatalError() }
        #expect(rev == 5)
        #expect(try ks.range(RangeRequest(key: [0], rangeEnd: [0])).kvs.map { s($0.key) } == ["z"])
        #expect(ks.lease(1) == nil)
        #expect(throws: KeyspaceError.leaseNotFound) { try ks.apply(.leaseRevoke(1)) }
    }

    @Test(arguments: BackendKind.allCases)
    func leasesAndAttachmentsSurviveReopen(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.apply(.leaseGrant(LeaseRecord(id: 9, ttlSeconds: 30)))
        try ks.put("held", "1", lease: 9)
        try ks.reopen()
        #expect(ks.lease(9)?.record.ttlSeconds == 30)
        #expect(ks.lease(9)?.keys == [b("held")])
        #expect(throws: KeyspaceError.leaseExists) { try ks.apply(.leaseGrant(LeaseRecord(id: 9, ttlSeconds: 1))) }
    }
}

@Suite struct BatchTests {
    @Test(arguments: BackendKind.allCases)
    func eachRequestInABatchIsItsOwnRevision(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let results = try ks.batch([
            .put(PutRequest(key: b("a"), value: b("1"))),
            .put(PutRequest(key: b("b"), ignoreValue: true)),  // fails: key not found
            .put(PutRequest(key: b("a"), value: b("2"))),
            .applied(17),
        ])
        #expect(try results[0].get() == .put(PutResponse(revision: 2, prevKV: nil)))
        #expect(throws: KeyspaceError.keyNotFound) { try results[1].get() }
        #expect(try results[2].get() == .put(PutResponse(revision: 3, prevKV: nil)))
        #expect(ks.revision == 3 && ks.appliedIndex == 17)
    }

    @Test(arguments: BackendKind.allCases)
    func appliedIndexSurvivesReopen(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        _ = try ks.batch([.put(PutRequest(key: b("a"), value: b("1"))), .applied(41)])
        try ks.reopen()
        #expect(ks.appliedIndex == 41 && ks.revision == 2)
    }

    @Test(arguments: BackendKind.allCases)
    func aFailedBatchLeavesNothingBehind(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.apply(.leaseGrant(LeaseRecord(id: 3, ttlSeconds: 5)))
        try ks.put("keep", "1", lease: 3)
        let error = try ks.withFailingBatch([
            .put(PutRequest(key: b("new"), value: b("x"))),
            .put(PutRequest(key: b("keep"), value: b("2"))),
            .delete(DeleteRangeRequest(key: b("keep"))),
            .leaseGrant(LeaseRecord(id: 4, ttlSeconds: 5)),
            .compact(2),
        ])
        #expect(error != nil)
        #expect(ks.revision == 2 && ks.compactedRevision == 0)
        #expect(try ks.get("new") == nil)
        #expect(try ks.get("keep").map { s($0.value) } == "1")
        #expect(ks.lease(3)?.keys == [b("keep")] && ks.lease(4) == nil)
        #expect(try ks.events(from: 2).count == 1)
        // And the next batch continues from the committed state.
        #expect(try ks.put("new", "y").revision == 3)
        try ks.reopen()
        #expect(ks.revision == 3)
        #expect(try ks.get("keep").map { s($0.value) } == "1")
    }
}

@Suite struct BackendLimitTests {
    @Test func lmdbGrowsItsMapWithoutMapFull() throws {
        let ks = try TestKeyspace(.lmdb, quotaBytes: 256 << 20)
        let value = [UInt8](repeating: 7, count: 4000)
        // ~8 MB through a map that starts at 1 MiB.
        for batch in 0..<20 {
            let ops = (0..<100).map { i in Op.put(PutRequest(key: b("g\(batch)-\(i)"), value: value)) }
            for r in try ks.batch(ops) { _ = try r.get() }
        }
        #expect(try ks.range(RangeRequest(key: b("g"), rangeEnd: b("h"), countOnly: true)).count == 2000)
        #expect(try ks.stats().capacityBytes > 8 << 20)
    }

    @Test(arguments: BackendKind.allCases)
    func quotaIsReportedAsATypedError(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind, quotaBytes: 2 << 20)
        let value = [UInt8](repeating: 1, count: 64 * 1024)
        var failure: KeyspaceError?
        for i in 0..<100 {
            do {
                try ks.put("q\(i)", String(decoding: value, as: UTF8.self))
            } catch let e as KeyspaceError {
                failure = e
                break
            }
        }
        guard case .backend(.quotaExceeded) = failure else {
            Issue.record("expected quotaExceeded, got \(String(describing: failure))")
            return
        }
        // The store is intact and still serves reads.
        let n = try ks.range(RangeRequest(key: b("q"), rangeEnd: b("r"), countOnly: true)).count
        #expect(n > 0 && Int64(n) == ks.revision - 1)
    }
}

/// Cases found by reviewing the keyspace against etcd 3.4's sources.
@Suite struct EtcdEdgeCaseTests {
    @Test(arguments: BackendKind.allCases)
    func theLargestLimitReturnsEverything(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "1")
        try ks.put("b", "2")
        let r = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], limit: Int64.max))
        #expect(r.kvs.count == 2 && !r.more && r.count == 2)
    }

    @Test(arguments: BackendKind.allCases)
    func keysOnlyStillSortsByValue(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "2")
        try ks.put("b", "1")
        let r = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], sortOrder: .ascend, sortTarget: .value, keysOnly: true))
        #expect(r.kvs.map { s($0.key) } == ["b", "a"] && r.kvs.allSatisfy { $0.value.isEmpty })
        let implied = try ks.range(RangeRequest(key: b("a"), rangeEnd: [0], sortTarget: .value, keysOnly: true))
        #expect(implied.kvs.map { s($0.key) } == ["b", "a"])
    }

    @Test(arguments: BackendKind.allCases)
    func ignoreValueAfterAnUnboundedDeleteInTheSameTxnIsKeyNotFound(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "1")
        // etcd 3.4's duplicate check does not see a "\0" range end, and etcd
        // itself panics on this txn; Cairn refuses it cleanly.
        let t = TxnRequest(success: [
            .deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: [0])), .put(PutRequest(key: b("a"), ignoreValue: true)),
        ])
        #expect(throws: KeyspaceError.keyNotFound) { try ks.txn(t) }
        let t2 = TxnRequest(success: [
            .deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: [0])), .put(PutRequest(key: b("a"), ignoreLease: true)),
        ])
        #expect(throws: KeyspaceError.keyNotFound) { try ks.txn(t2) }
        #expect(try ks.revision == 2 && ks.get("a").map { s($0.value) } == "1")
    }

    @Test func mvccErrorsReachClientsWithEtcdsPrefix() {
        #expect(KeyspaceError.compacted.grpcMessage == "etcdserver: mvcc: required revision has been compacted")
        #expect(KeyspaceError.futureRevision.grpcMessage == "etcdserver: mvcc: required revision is a future revision")
        #expect(KeyspaceError.keyNotFound.grpcMessage == "etcdserver: key not found")
    }

    @Test(arguments: BackendKind.allCases)
    func txnChecksPutsBeforeRanges(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let t = TxnRequest(success: [.range(RangeRequest(key: b("a"), revision: 100)), .put(PutRequest(key: b("a"), ignoreValue: true))])
        #expect(throws: KeyspaceError.keyNotFound) { try ks.txn(t) }
    }

    @Test(arguments: BackendKind.allCases)
    func txnPutChecksTheKeyBeforeTheLease(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        let t = TxnRequest(success: [.put(PutRequest(key: b("a"), lease: 99, ignoreValue: true))])
        #expect(throws: KeyspaceError.keyNotFound) { try ks.txn(t) }
        // A put on its own checks the lease first.
        #expect(throws: KeyspaceError.leaseNotFound) { try ks.apply(.put(PutRequest(key: b("a"), lease: 99, ignoreValue: true))) }
    }

    @Test(arguments: BackendKind.allCases)
    func compactingAtZeroOnAFreshStoreSucceeds(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.compact(0)
        #expect(throws: KeyspaceError.compacted) { try ks.compact(0) }
        // A negative revision inside a txn reads the current state.
        let fresh = try TestKeyspace(kind)
        #expect(try fresh.txn(TxnRequest(success: [.range(RangeRequest(key: b("a"), revision: -1))])).succeeded)
    }

    @Test(arguments: BackendKind.allCases)
    func readersNeverSeeACompactionBeforeItCommits(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "1")  // 2
        let seen = try ks.readDuringBatch(
            [.put(PutRequest(key: b("a"), value: b("2"))), .compact(3)], RangeRequest(key: b("a")))
        let r = try seen.get()
        #expect(r.revision == 2 && r.kvs.map { s($0.value) } == ["1"])
        #expect(ks.compactedRevision == 3)
        #expect(throws: KeyspaceError.compacted) { try ks.get("a", rev: 2) }
    }

    @Test(arguments: BackendKind.allCases)
    func checkpointOfAnUnknownLeaseIsANoOp(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.checkpoint(12345, 10)
        #expect(ks.lease(12345) == nil)
    }

    @Test(arguments: BackendKind.allCases)
    func eventsWithANonPositiveBoundStillProgress(_ kind: BackendKind) throws {
        let ks = try TestKeyspace(kind)
        try ks.put("a", "1")
        try ks.put("b", "1")
        #expect(try ks.events(from: 2, maxEvents: 0).count == 1)
    }
}
