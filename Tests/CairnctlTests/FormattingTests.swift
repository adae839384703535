// Output formatting and flag parsing, without a server.
import CairnBolt
import CairnProto
import CairnGRPC
import Foundation
import Testing

@testable import cairnctl

@Suite struct FormattingTests {
    @Test func jsonStringsEscapeLikeGo() {
        #expect(GoJSON.string("a\"b\\c\n<&>\u{01}é") == #""a\"b\\c\n\u003c\u0026\u003e\u0001é""#)
        #expect(GoJSON.object([("a", "1"), ("b", nil), ("c", GoJSON.bytes(Data("foo".utf8)))]) == #"{"a":1,"c":"Zm9v"}"#)
    }

    @Test func rangeResponseJSONMatchesEtcdctl() throws {
        var r = Etcdserverpb_RangeResponse()
        r.header.clusterID = 324952591200643719
        r.header.memberID = 3319814642761637952
        r.header.revision = 3
        r.header.raftTerm = 2
        var kv = Mvccpb_KeyValue()
        kv.key = Data("foo".utf8)
        kv.value = Data("bar".utf8)
        kv.createRevision = 2
        kv.modRevision = 3
        kv.version = 2
        r.kvs = [kv]
        r.count = 1
        // Captured from etcdctl 3.4.23 -w json get foo.
        #expect(try Printer(format: .json).range(r) == #"{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":3,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":3,"version":2,"value":"YmFy"}],"count":1}"# + "\n")
        #expect(try Printer(format: .simple).range(r) == "foo\nbar\n")
        #expect(try Printer(format: .simple, hex: true).range(r) == "\\x66\\x6f\\x6f\n\\x62\\x61\\x72\n")
        #expect(throws: CtlError.unsupported(.table)) { try Printer(format: .table).range(r) }
    }

    @Test func memberTableMatchesEtcdctl() throws {
        var m = Etcdserverpb_Member()
        m.id = 0x2e1259d415f2a040
        m.name = "ctl1"
        m.peerUrls = ["http://127.0.0.1:23800"]
        m.clientUrls = ["http://127.0.0.1:23790"]
        var r = Etcdserverpb_MemberListResponse()
        r.members = [m]
        let expected = """
            +------------------+---------+------+------------------------+------------------------+------------+
            |        ID        | STATUS  | NAME |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |
            +------------------+---------+------+------------------------+------------------------+------------+
            | 2e1259d415f2a040 | started | ctl1 | http://127.0.0.1:23800 | http://127.0.0.1:23790 |      false |
            +------------------+---------+------+------------------------+------------------------+------------+

            """
        #expect(try Printer(format: .table).memberList(r) == expected)
        #expect(try Printer(format: .simple).memberList(r) == "2e1259d415f2a040, started, ctl1, http://127.0.0.1:23800, http://127.0.0.1:23790, false\n")
    }

    @Test func goConventions() {
        #expect(GoFormat.humanBytes(20480) == "20 kB")
        #expect(GoFormat.humanBytes(5) == "5 B")
        #expect(GoFormat.humanBytes(1_500_000) == "1.5 MB")
        #expect(GoFormat.duration(.nanoseconds(1_071_334)) == "1.071334ms")
        #expect(GoFormat.duration(.nanoseconds(855_963)) == "855.963µs")
        #expect(GoFormat.duration(.seconds(90)) == "1m30s")
        #expect(GoFormat.parseDuration("2s") == .seconds(2))
        #expect(GoFormat.parseDuration("1m30s") == .seconds(90))
        #expect(GoFormat.parseDuration("500ms") == .milliseconds(500))
        #expect(GoFormat.parseDuration("5") == nil)
        #expect(GoFormat.hex16Padded(0x48276a8f75b6a87) == " 48276a8f75b6a87")
        #expect(GoFormat.quote(Data([0x61, 0x0A, 0xFF])) == #""a\n\xff""#)
    }

    @Test func sha256KnownVectors() {
        var h = SHA256()
        h.update(Array("abc".utf8))
        #expect(h.finalize().map { String(format: "%02x", $0) }.joined() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var long = SHA256()
        for _ in 0..<1000 { long.update(Array(repeating: UInt8(ascii: "a"), count: 1000)) }
        #expect(long.finalize().map { String(format: "%02x", $0) }.joined() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

@Suite struct FlagParsingTests {
    func parse(_ args: [String]) throws(CommandLineError) -> ParsedCommandLine {
        try CommandLineParser.parse(args, root: CommandTable.root)
    }

    func flagError(_ args: [String]) -> String? {
        switch Result(catching: { () throws(CommandLineError) in try parse(args) }) {
        case .failure(.flag(let message, _)): return message
        default: return nil
        }
    }

    @Test func globalFlagsAnywhereBecomeCanonicalArguments() throws {
        #expect(try parse(["--endpoints", "a:1", "-w=json", "--hex", "get", "k"]).canonicalArguments
            == ["get", "--endpoints=a:1", "--hex", "--write-out=json", "--", "k"])
        #expect(try parse(["-wjson", "put", "k", "--", "-v"]).canonicalArguments == ["put", "--write-out=json", "--", "k", "-v"])
        // pflag: a value flag takes the next word whatever it looks like; ints in any Go base
        #expect(try parse(["get", "foo", "--rev", "-1", "--limit=0x10", "--prefix=false"]).canonicalArguments
            == ["get", "--limit=16", "--rev=-1", "--", "foo"])
        #expect(try parse(["lease", "timetolive", "--keys", "abc"]).path.names == ["lease", "timetolive"])
        #expect(try parse(["endpoint", "--cluster", "status"]).canonicalArguments == ["endpoint", "status", "--cluster", "--"])
    }

    @Test func commandLineErrorsAreCobras() throws {
        #expect(flagError(["get", "--count-only", "k"]) == "unknown flag: --count-only")
        #expect(flagError(["get", "-x", "k"]) == "unknown shorthand flag: 'x' in -x")
        #expect(flagError(["get", "k", "--rev"]) == "flag needs an argument: --rev")
        #expect(flagError(["-w"]) == "flag needs an argument: 'w' in -w")
        #expect(flagError(["get", "--limit", "x"]) == #"invalid argument "x" for "--limit" flag: strconv.ParseInt: parsing "x": invalid syntax"#)
        #expect(flagError(["txn", "--interactive=x"]) == #"invalid argument "x" for "-i, --interactive" flag: strconv.ParseBool: parsing "x": invalid syntax"#)
        #expect(flagError(["put", "--prev-kv=maybe"]) == #"invalid argument "maybe" for "--prev-kv" flag: strconv.ParseBool: parsing "maybe": invalid syntax"#)
        #expect(flagError(["--dial-timeout=3", "get"]) == #"invalid argument "3" for "--dial-timeout" flag: time: missing unit in duration "3""#)
        #expect(flagError(["--dial-timeout=3x", "get"]) == #"invalid argument "3x" for "--dial-timeout" flag: time: unknown unit "x" in duration "3x""#)
        #expect(flagError(["--dial-timeout=x", "get"]) == #"invalid argument "x" for "--dial-timeout" flag: time: invalid duration "x""#)
        #expect(GoFormat.parseDuration("1h2m3.5s") == .milliseconds(3_723_500))
        #expect(throws: CommandLineError.self) { try parse(["gett"]) }
        #expect(CommandLineParser.suggestions(for: "gett", in: CommandTable.root) == "\n\nDid you mean this?\n\tget\n")
        #expect(try parse(["--user=x", "get", "k"]).unimplementedFlags == ["user"])
        #expect(try parse(["--insecure-transport=true", "get", "k"]).unimplementedFlags.isEmpty)
    }

    @Test func usageIsTabAlignedAsGoTabwriter() {
        #expect(TabWriter.align("a\tb\nlonger cell\tc\n\nx\ty\n") == "a\t\tb\nlonger cell\tc\n\nx\ty\n")
        let lease = CommandPath(chain: [CommandTable.root, CommandTable.root.subcommand("lease")!])
        let text = UsageText.render(lease, version: "0", apiVersion: "3.4")
        #expect(text.hasPrefix("NAME:\n\tlease - Lease related commands\n\nUSAGE:\n\tcairnctl lease <subcommand> [flags]\n\nAPI VERSION:\n\t3.4\n\n\nCOMMANDS:\n\tgrant\t\tCreates leases\n"))
    }

    @Test func goIntegers() throws {
        #expect(try GoFormat.parseGoInt64("-0x10").get() == -16)
        #expect(try GoFormat.parseGoInt64("017").get() == 15)
        #expect(try GoFormat.parseGoInt64("-9223372036854775808").get() == Int64.min)
        #expect(throws: GoParseError(text: #"strconv.ParseInt: parsing "9223372036854775808": value out of range"#)) {
            try GoFormat.parseGoInt64("9223372036854775808").get()
        }
        #expect(throws: GoParseError(text: #"strconv.ParseInt: parsing "08": invalid syntax"#)) { try GoFormat.parseGoInt64("08").get() }
    }

    @Test func clientLogLineIsZaps() {
        let line = ClientLog.unaryFailure(
            target: "endpoint://client-x/127.0.0.1:2379", attempt: 0,
            error: GRPCStatus(.invalidArgument, "etcdserver: key \"k\" <not> found"))
        let pattern = #/^\{"level":"warn","ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4})","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"endpoint://client-x/127.0.0.1:2379","attempt":0,"error":"rpc error: code = InvalidArgument desc = etcdserver: key \\"k\\" <not> found"\}\n$/#
        #expect(line.wholeMatch(of: pattern) != nil, "\(line)")
        #expect(ClientLog.target("http://10.0.0.1:2379").hasSuffix("/10.0.0.1:2379"))
    }

    @Test func getBuildsEtcdctlRequests() throws {
        let prefix = try Get.parse(["foo", "--prefix", "--limit", "2", "--sort-by=MODIFY", "--rev=5", "--consistency=s"]).request(format: .simple)
        #expect(prefix.key == Data("foo".utf8))
        #expect(prefix.rangeEnd == Data("fop".utf8))
        #expect(prefix.limit == 2 && prefix.revision == 5 && prefix.serializable)
        #expect(prefix.sortTarget == .mod && prefix.sortOrder == .ascend)
        let all = try Get.parse(["", "--from-key", "--keys-only"]).request(format: .simple)
        #expect(all.key == Data([0]) && all.rangeEnd == Data([0]) && all.keysOnly)
        #expect(throws: CtlError.badArgs("get command needs one argument as key and an optional argument as range_end")) {
            try Get.parse([]).request(format: .simple)
        }
        #expect(throws: CtlError(exitCode: 4, message: "bad sort target FOO")) { try Get.parse(["k", "--sort-by=FOO"]).request(format: .simple) }
        #expect(throws: CtlError.badArgs("print-value-only is only for `--write-out=simple`")) {
            try Get.parse(["k", "--print-value-only"]).request(format: .json)
        }
        #expect(KeyRange.prefixEnd(Data([0x61, 0xFF])) == Data([0x62]))
        #expect(KeyRange.prefixEnd(Data([0xFF])) == Data([0]))
    }

    @Test func txnLinesParse() throws {
        let c = try TxnParser.compare(#"mod("k1") > "0""#)
        #expect(c.target == .mod && c.result == .greater && c.key == Data("k1".utf8) && c.modRevision == 0)
        let v = try TxnParser.compare(#"value("a b") = "x y""#)
        #expect(v.target == .value && v.value == Data("x y".utf8))
        let put = try TxnParser.op(#"put k "v 2""#)
        #expect(put.requestPut.key == Data("k".utf8) && put.requestPut.value == Data("v 2".utf8))
        let get = try TxnParser.op("get k --prefix")
        #expect(get.requestRange.rangeEnd == Data("l".utf8))
        #expect(throws: CtlError(exitCode: 3, message: #"malformed comparison: mod(k1) > 0; got mod("")  """#)) { try TxnParser.compare("mod(k1) > 0") }
        #expect(throws: CtlError(exitCode: 3, message: #"malformed comparison: x("k") = "1" (unknown target x)"#)) { try TxnParser.compare(#"x("k") = "1""#) }
        #expect(throws: CtlError(exitCode: 3, message: #"invalid txn compare request: ver("k") = "a""#)) { try TxnParser.compare(#"ver("k") = "a""#) }
        #expect(throws: CtlError(exitCode: 3, message: "invalid txn request: put k v --count-only")) { try TxnParser.op("put k v --count-only") }
        #expect(throws: CtlError(exitCode: 3, message: "invalid txn request: delete k x")) { try TxnParser.op("delete k x") }
    }

    @Test func leaseAndMemberIDsAreHex() throws {
        #expect(try parseLeaseID("2040a216adef1824") == 0x2040a216adef1824)
        #expect(throws: CtlError.self) { try parseLeaseID("xyz") }
        #expect(try parseMemberID(["2e1259d415f2a040"], command: "remove") == 0x2e1259d415f2a040)
    }
}
