import CairnBackend
import Foundation
import Testing

@testable import CairnMVCC

/// A deterministic generator (SplitMix64) so that a failing sequence
/// replays from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A plain model of etcd's keyspace: the whole state after every revision.
/// Slow and obviously correct, to check the real keyspace against.
struct KeyspaceModel {
    var revision: Int64 = 1
    var compacted: Int64 = -1  // as etcd: compacting at 0 is allowed once
    /// State after each revision.
    var states: [Int64: [[UInt8]: KeyValue]] = [1: [:]]
    var current: [[UInt8]: KeyValue] { states[revision]! }

    static func inRange(_ k: [UInt8], _ key: [UInt8], _ end: [UInt8]) -> Bool {
        if end.isEmpty { return k == key }
        if end == [0] { return !k.lexicographicallyPrecedes(key) }
        return !k.lexicographicallyPrecedes(key) && k.lexicographicallyPrecedes(end)
    }

    func range(_ r: RangeRequest, current cur: [[UInt8]: KeyValue]? = nil, header: Int64? = nil) throws(KeyspaceError) -> RangeResponse {
        let rev = r.revision <= 0 ? revision : r.revision
        if cur == nil {
            if rev > revision { throw .futureRevision }
            if rev < compacted { throw .compacted }
        }
        let state = cur ?? states[rev]!
        var kvs = state.values.filter { Self.inRange($0.key, r.key, r.rangeEnd) }
            .sorted { $0.key.lexicographicallyPrecedes($1.key) }
        let count = Int64(kvs.count)
        if r.sortOrder == .descend { kvs.reverse() }
        var more = false
        if r.limit > 0 && kvs.count > r.limit {
            kvs = Array(kvs.prefix(Int(r.limit)))
            more = true
        }
        if r.keysOnly { kvs = kvs.map { var kv = $0; kv.value = []; return kv } }
        if r.countOnly { kvs = []; more = false }
        return RangeResponse(revision: header ?? revision, kvs: kvs, more: more, count: count)
    }

    /// Applies changes to a working copy; one revision if anything changed.
    mutating func commit(_ working: [[UInt8]: KeyValue], changed: Bool) {
        guard changed else { return }
        revision += 1
        states[revision] = working
    }

    static func put(_ state: inout [[UInt8]: KeyValue], _ p: PutRequest, rev: Int64) -> KeyValue? {
        let old = state[p.key]
        state[p.key] = KeyValue(
            key: p.key, createRevision: old?.createRevision ?? rev, modRevision: rev, version: (old?.version ?? 0) + 1,
            value: p.value, lease: 0)
        return old
    }

    static func delete(_ state: inout [[UInt8]: KeyValue], _ d: DeleteRangeRequest) -> [KeyValue] {
        let victims = state.values.filter { inRange($0.key, d.key, d.rangeEnd) }.sorted {
            $0.key.lexicographicallyPrecedes($1.key)
        }
        for v in victims { state[v.key] = nil }
        return victims
    }

    func holds(_ c: Compare, _ state: [[UInt8]: KeyValue]) -> Bool {
        let kvs = state.values.filter { Self.inRange($0.key, c.key, c.rangeEnd) }
        func check(_ kv: KeyValue) -> Bool {
            let order: Int
            switch c.target {
            case .version(let v): order = kv.version < v ? -1 : (kv.version > v ? 1 : 0)
            case .createRevision(let v): order = kv.createRevision < v ? -1 : (kv.createRevision > v ? 1 : 0)
            case .modRevision(let v): order = kv.modRevision < v ? -1 : (kv.modRevision > v ? 1 : 0)
            case .lease(let v): order = kv.lease < v ? -1 : (kv.lease > v ? 1 : 0)
            case .value(let v): order = kv.value == v ? 0 : (kv.value.lexicographicallyPrecedes(v) ? -1 : 1)
            }
            switch c.result {
            case .equal: return order == 0
            case .notEqual: return order != 0
            case .greater: return order > 0
            case .less: return order < 0
            }
        }
        if kvs.isEmpty {
            if case .value = c.target { return false }
            return check(KeyValue(key: []))
        }
        return kvs.allSatisfy(check)
    }

    /// A flat txn (no nesting) as the generator makes them.
    mutating func txn(_ t: TxnRequest) throws(KeyspaceError) -> TxnResponse {
        let ok = t.compare.allSatisfy { holds($0, current) }
        var state = current
        var changed = false
        let next = revision + 1
        var responses: [ResponseOp] = []
        for op in ok ? t.success : t.failure {
            switch op {
            case .put(let p):
                let old = Self.put(&state, p, rev: next)
                changed = true
                responses.append(.put(PutResponse(revision: next, prevKV: p.prevKV ? old : nil)))
            case .deleteRange(let d):
                let gone = Self.delete(&state, d)
                if !gone.isEmpty { changed = true }
                responses.append(
                    .deleteRange(
                        DeleteRangeResponse(revision: changed ? next : revision, deleted: Int64(gone.count), prevKVs: d.prevKV ? gone : [])))
            case .range(let r):
                responses.append(.range(try range(r, current: state, header: changed ? next : revision)))
            case .txn:
                fatalError("the generator makes no nested txns")
            }
        }
        commit(state, changed: changed)
        return TxnResponse(revision: revision, succeeded: ok, responses: responses)
    }
}

/// Runs `body`, expecting only keyspace errors.
func typed<T>(_ body: () throws -> T) -> Result<T, KeyspaceError> {
    do {
        return .success(try body())
    } catch let e as KeyspaceError {
        return .failure(e)
    } catch {
        return .failure(.corrupt("unexpected error \(error)"))
    }
}

/// Random operations checked against the model.
@Suite struct RandomizedModelTests {
    static let keys: [[UInt8]] = ["a", "b", "ba", "bb", "c", "d", "e", "f"].map { Array($0.utf8) }

    static func randomKey(_ g: inout SplitMix64) -> [UInt8] { keys[Int(g.next() % UInt64(keys.count))] }

    static func randomEnd(_ g: inout SplitMix64, after key: [UInt8]) -> [UInt8] {
        switch g.next() % 4 {
        case 0: return []
        case 1: return [0]
        default: return randomKey(&g)  // may be below the key: then the range is empty
        }
    }

    static func randomRange(_ g: inout SplitMix64, _ model: KeyspaceModel) -> RangeRequest {
        let key = randomKey(&g)
        var r = RangeRequest(key: key, rangeEnd: randomEnd(&g, after: key))
        switch g.next() % 5 {
        case 0: r.revision = model.revision + Int64(g.next() % 2)  // maybe the future
        case 1: r.revision = max(1, model.compacted - Int64(g.next() % 2))  // maybe compacted
        case 2: r.revision = 1 + Int64(g.next() % UInt64(model.revision))
        default: break
        }
        if g.next() % 3 == 0 { r.limit = Int64(g.next() % 4) }
        if g.next() % 5 == 0 { r.sortOrder = .descend }
        if g.next() % 6 == 0 { r.keysOnly = true }
        if g.next() % 8 == 0 { r.countOnly = true }
        return r
    }

    static func randomPut(_ g: inout SplitMix64, key: [UInt8]? = nil) -> PutRequest {
        PutRequest(key: key ?? randomKey(&g), value: Array("v\(g.next() % 100)".utf8), prevKV: g.next() % 2 == 0)
    }

    static func randomTxn(_ g: inout SplitMix64, _ model: KeyspaceModel) -> TxnRequest {
        var compare: [Compare] = []
        for _ in 0..<Int(g.next() % 3) {
            let key = randomKey(&g)
            let target: CompareTarget
            switch g.next() % 4 {
            case 0: target = .version(Int64(g.next() % 3))
            case 1: target = .modRevision(Int64(g.next() % UInt64(model.revision + 1)))
            case 2: target = .createRevision(Int64(g.next() % UInt64(model.revision + 1)))
            default: target = .value(Array("v\(g.next() % 100)".utf8))
            }
            let result = CompareResult(rawValue: Int(g.next() % 4))!
            compare.append(Compare(key: key, rangeEnd: g.next() % 4 == 0 ? [0] : [], target: target, result: result))
        }
        func branch(_ g: inout SplitMix64) -> [RequestOp] {
            // Distinct keys per branch so that no duplicate-key rejection occurs.
            var used = Set<[UInt8]>()
            var ops: [RequestOp] = []
            for _ in 0..<Int(g.next() % 4) {
                let key = randomKey(&g)
                if used.contains(key) { continue }
                used.insert(key)
                switch g.next() % 3 {
                case 0: ops.append(.put(randomPut(&g, key: key)))
                case 1: ops.append(.deleteRange(DeleteRangeRequest(key: key, prevKV: g.next() % 2 == 0)))
                default: ops.append(.range(RangeRequest(key: key, rangeEnd: [0])))
                }
            }
            return ops
        }
        return TxnRequest(compare: compare, success: branch(&g), failure: branch(&g))
    }

    static func run(_ kind: BackendKind, seed: UInt64, steps: Int) throws {
        var g = SplitMix64(seed: seed)
        var model = KeyspaceModel()
        let ks = try TestKeyspace(kind)
        func same<T: Equatable>(_ a: Result<T, KeyspaceError>, _ b: Result<T, KeyspaceError>, _ what: String) {
            #expect(a == b, "seed \(seed) (\(kind)): \(what)")
        }
        for step in 0..<steps {
            let what = "step \(step)"
            switch g.next() % 10 {
            case 0, 1, 2:
                let p = randomPut(&g)
                var state = model.current
                let old = KeyspaceModel.put(&state, p, rev: model.revision + 1)
                model.commit(state, changed: true)
                let got = typed { () -> PutResponse in
                    guard case .put(let r) = try ks.apply(.put(p)) else { fatalError() }
                    return r
                }
                same(got, .success(PutResponse(revision: model.revision, prevKV: p.prevKV ? old : nil)), what + " put")
            case 3:
                let key = randomKey(&g)
                let d = DeleteRangeRequest(key: key, rangeEnd: randomEnd(&g, after: key), prevKV: g.next() % 2 == 0)
                var state = model.current
                let gone = KeyspaceModel.delete(&state, d)
                model.commit(state, changed: !gone.isEmpty)
                let expected = DeleteRangeResponse(revision: model.revision, deleted: Int64(gone.count), prevKVs: d.prevKV ? gone : [])
                let got = typed { try ks.apply(.delete(d)) }
                same(got, .success(.delete(expected)), what + " delete")
            case 4, 5:
                let t = randomTxn(&g, model)
                let expected = Result { () throws(KeyspaceError) in try model.txn(t) }
                let got = typed { try ks.txn(t) }
                same(got, expected, what + " txn \(t)")
            case 6, 7, 8:
                let r = randomRange(&g, model)
                let expected = Result { () throws(KeyspaceError) in try model.range(r) }
                let got = typed { try ks.range(r) }
                same(got, expected, what + " range \(r)")
            default:
                if g.next() % 3 == 0 {
                    try ks.reopen()
                    #expect(ks.revision == model.revision, "seed \(seed): revision after reopen")
                } else {
                    let rev = Int64(g.next() % UInt64(model.revision + 2))
                    let expected: Result<Int64, KeyspaceError>
                    if rev <= model.compacted {
                        expected = .failure(.compacted)
                    } else if rev > model.revision {
                        expected = .failure(.futureRevision)
                    } else {
                        model.compacted = rev
                        expected = .success(model.revision)
                    }
                    let got = typed { () -> Int64 in
                        guard case .revision(let r) = try ks.apply(.compact(rev)) else { return -1 }
                        return r
                    }
                    same(got, expected, what + " compact \(rev)")
                }
            }
        }
        // Finally every retained revision reads the same as the model.
        for rev in max(1, model.compacted)...model.revision {
            let r = RangeRequest(key: [0], rangeEnd: [0], revision: rev)
            #expect(try ks.range(r) == model.range(r), "seed \(seed): full read at \(rev)")
        }
    }

    /// Thousands of random sequences per backend; the seed of a failure is printed.
    @Test(arguments: BackendKind.allCases)
    func randomSequencesMatchTheModel(_ kind: BackendKind) throws {
        let sequences = Int(ProcessInfo.processInfo.environment["CAIRN_MVCC_MODEL_SEQUENCES"] ?? "") ?? 2000
        let base = UInt64(ProcessInfo.processInfo.environment["CAIRN_MVCC_MODEL_SEED"] ?? "") ?? 1
        for i in 0..<UInt64(sequences) {
            try Self.run(kind, seed: base &+ i, steps: 60)
        }
    }
}
