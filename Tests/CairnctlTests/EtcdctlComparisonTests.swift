// cairnctl against etcdctl 3.4: two real etcd servers with identical member and cluster IDs,
// the same commands sent to each (etcdctl to one, cairnctl to the other); the outputs must match.
import CairnClient
import CairnProto
import Foundation
import Logging
import NIOPosix
import Testing

@testable import cairnctl

private let installHint = "etcd and etcdctl 3.4 are needed: apt-get install -y etcd-server etcd-client (scripts/test.sh installs them)"

private func executable(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// The built `cairnctl` next to the test bundle (.build/<config>/).
private func cairnctlPath() -> String? {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("cairnctl").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return nil
}

private struct Run: Equatable, CustomStringConvertible {
    var status: Int32
    var out: String
    var err: String
    var description: String { "exit \(status)\n--- stdout\n\(out)--- stderr\n\(err)" }
}

private func run(_ path: String, _ args: [String], stdin: String = "", killAfterSeconds: Double? = nil) throws -> Run {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "ETCDCTL_ENDPOINTS")
    p.environment = env
    let (inPipe, out, err) = (Pipe(), Pipe(), Pipe())
    p.standardInput = inPipe
    p.standardOutput = out
    p.standardError = err
    try p.run()
    inPipe.fileHandleForWriting.write(Data(stdin.utf8))
    try inPipe.fileHandleForWriting.close()
    if let killAfterSeconds {
        Thread.sleep(forTimeInterval: killAfterSeconds)
        p.terminate()
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    // etcdctl's client library logs JSON lines on stderr; they are not part of its output.
    let errLines = String(decoding: e, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        .filter { !$0.hasPrefix("{\"level\"") }.joined(separator: "\n")
    return Run(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: errLines)
}

/// `text` with each remaining TTL (`"ttl":N`, `remaining(Ns)`, `"TTL" : N`) replaced by the one at
/// the same place in `other` when they are at most 1 s apart; any other difference stays.
private func sameRemainingTTL(_ text: String, as other: String) -> String {
    let pattern = #/("ttl":|remaining\(|"TTL" : )(\d+)/#
    let theirs = other.matches(of: pattern).map { Int($0.output.2)! }
    var out = text
    for (match, their) in zip(text.matches(of: pattern), theirs).reversed() where abs(Int(match.output.2)! - their) <= 3 {
        out.replaceSubrange(match.range, with: "\(match.output.1)\(their)")
    }
    return out
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
private func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A throwaway single-member etcd. Every instance advertises the same peer and client URLs,
/// so all get the same member ID and cluster ID; only the listening ports differ.
private final class EtcdServer {
    let process = Process()
    let dataDir: String
    let clientPort = freePort()
    var endpoint: String { "127.0.0.1:\(self.clientPort)" }

    init(etcd: String, etcdctl: String) throws {
        self.dataDir = NSTemporaryDirectory() + "cairnctl-test-\(UUID().uuidString)"
        let peerPort = freePort()
        self.process.executableURL = URL(fileURLWithPath: etcd)
        self.process.arguments = [
            "--name", "cmp", "--data-dir", self.dataDir,
            "--listen-client-urls", "http://127.0.0.1:\(self.clientPort)", "--advertise-client-urls", "http://127.0.0.1:2379",
            "--listen-peer-urls", "http://127.0.0.1:\(peerPort)", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "cmp=http://127.0.0.1:2380", "--initial-cluster-token", "cairnctl-test",
        ]
        self.process.standardOutput = FileHandle.nullDevice
        self.process.standardError = FileHandle.nullDevice
        try self.process.run()
        for _ in 0..<100 {
            if try run(etcdctl, ["--endpoints", self.endpoint, "--dial-timeout", "200ms", "endpoint", "health"]).status == 0 { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        self.stop()
        throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "etcd did not become healthy"])
    }

    func stop() {
        if self.process.isRunning {
            self.process.terminate()
            self.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: self.dataDir)
    }
}

@Suite(.serialized) struct EtcdctlComparisonTests {
    @Test func cairnctlPrintsWhatEtcdctlPrints() async throws {
        guard let etcd = executable("etcd"), let etcdctl = executable("etcdctl") else {
            Issue.record(Comment(rawValue: installHint))
            return
        }
        let cairnctl = try #require(cairnctlPath(), "build cairnctl first (swift build --product cairnctl)")
        let a = try EtcdServer(etcd: etcd, etcdctl: etcdctl)
        defer { a.stop() }
        let b = try EtcdServer(etcd: etcd, etcdctl: etcdctl)
        defer { b.stop() }

        /// The same command through etcdctl (server a) and cairnctl (server b); b's endpoint is
        /// shown as a's in cairnctl's output so that the texts compare.
        func same(_ args: [String], stdin: String = "", killAfterSeconds: Double? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
            var expected = try run(etcdctl, ["--endpoints", a.endpoint] + args, stdin: stdin, killAfterSeconds: killAfterSeconds)
            var actual = try run(cairnctl, ["--endpoints", b.endpoint] + args, stdin: stdin, killAfterSeconds: killAfterSeconds)
            actual.out = actual.out.replacingOccurrences(of: b.endpoint, with: a.endpoint)
            if args.contains("timetolive") {  // granted one after the other, asked one process start apart: on a busy machine the remaining TTLs may differ by a few seconds
                expected.out = sameRemainingTTL(expected.out, as: actual.out)
            }
            #expect(actual == expected, "cairnctl \(args.joined(separator: " "))", sourceLocation: sourceLocation)
        }

        // A lease with the same ID on both servers (etcd picks random IDs when asked for 0).
        var logger = Logger(label: "cairnctl.test")
        logger.logLevel = .critical
        for server in [a, b] {
            let client = EtcdClient(
                configuration: .init(endpoints: [try Endpoint(parsing: server.endpoint)]), group: MultiThreadedEventLoopGroup.singleton,
                logger: logger)
            var grant = Etcdserverpb_LeaseGrantRequest()
            grant.id = 0x1234abcd
            grant.ttl = 600
            _ = try await client.call(EtcdMethods.leaseGrant, grant, timeout: .seconds(5))
            await client.close()
        }

        for format in ["simple", "json", "fields"] {
            let w = ["-w", format]
            try same(w + ["put", "k1", "v1"])
            try same(w + ["put", "k1", "v2", "--prev-kv"])
            try same(w + ["put", "k2", "<&>\u{1}é", "--lease=1234abcd"])
            try same(w + ["get", "k1"])
            try same(w + ["get", "k", "--prefix"])
            try same(w + ["get", "", "--from-key", "--keys-only", "--sort-by=MODIFY", "--order=DESCEND", "--limit=1"])
            try same(w + ["get", "k1", "--rev=1000"])
            try same(w + ["get", "nokey"])
            try same(w + ["del", "k1", "--prev-kv"])
            try same(w + ["txn"], stdin: "mod(\"k2\") > \"0\"\n\nput k1 \"v 3\"\nget k1\ndel k9\n\nget k2\n\n")
            try same(w + ["txn"], stdin: "value(\"k1\") = \"nope\"\n\nput k1 x\n\nget k --prefix\n\n")
            try same(w + ["lease", "timetolive", "1234abcd", "--keys"])
            try same(w + ["lease", "timetolive", "999"])
            try same(w + ["lease", "list"])
            try same(w + ["lease", "keep-alive", "--once", "1234abcd"])
            try same(w + ["lease", "keep-alive", "--once", "999"])
            try same(w + ["lease", "revoke", "999"])
            try same(w + ["member", "list"])
            try same(w + ["compaction", "2"])
            try same(w + ["watch", "k", "--prefix", "--rev=3", "--prev-kv"], killAfterSeconds: 1.5)
        }
        try same(["watch", "k", "--prefix", "--rev=3", "--", "sh", "-c", "echo $ETCD_WATCH_REVISION $ETCD_WATCH_KEY; false"])
        try same(["watch", "k", "--prefix", "--rev=3", "--", "no-such-command"])
        try same(["-w", "table", "member", "list"])
        try same(["-w", "table", "get", "k1"])
        try same(["-w", "table", "lease", "list"])
        try same(["--hex", "get", "k2"])
        try same(["get", "k1", "--print-value-only"])
        try same(["-w", "json", "get", "k1", "--print-value-only"])
        try same(["get"])
        try same(["get", "k1", "--sort-by=FOO"])
        try same(["put", "k"])
        try same(["lease", "grant", "abc"])
        try same(["compaction", "1"])
        try same(["defrag"])
        try same(["alarm", "list"])
        try same(["lease", "revoke", "1234abcd"])
    }

    /// Usage texts and command line errors need no server: every implemented command's
    /// `--help`, and bad command lines, compared with the program names swapped.
    @Test func commandLineHandlingMatchesEtcdctl() throws {
        guard let etcdctl = executable("etcdctl") else {
            Issue.record(Comment(rawValue: installHint))
            return
        }
        let cairnctl = try #require(cairnctlPath(), "build cairnctl first (swift build --product cairnctl)")
        func same(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
            var expected = try run(etcdctl, args)
            var actual = try run(cairnctl, args)
            // each names and numbers itself
            expected.out.replace(#/^etcdctl version: [0-9.]+$/#.anchorsMatchLineEndings(), with: "etcdctl version: N")
            actual.out.replace(#/^cairnctl version: [0-9.]+$/#.anchorsMatchLineEndings(), with: "etcdctl version: N")
            actual.out = actual.out.replacingOccurrences(of: "cairnctl", with: "etcdctl")
            actual.err = actual.err.replacingOccurrences(of: "cairnctl", with: "etcdctl")
            #expect(actual == expected, "cairnctl \(args.joined(separator: " "))", sourceLocation: sourceLocation)
        }
        // root and `endpoint` list only cairnctl's commands; the rest is etcdctl's text
        func commands(_ c: CommandSpec, _ path: [String]) -> [[String]] {
            (path.count > 1 || (path.count == 1 && path[0] != "endpoint") ? [path] : []) + c.subcommands.flatMap { commands($0, path + [$0.name]) }
        }
        for path in commands(CommandTable.root, []) where path != ["help"] {
            try same(path + ["--help"])
        }
        try same(["help", "get"])
        try same(["lease"])
        try same(["lease", "nothing", "-h"])
        try same(["get", "--count-only", "k"])
        try same(["get", "-x", "k"])
        try same(["get", "k", "--rev"])
        try same(["get", "k", "--limit="])
        try same(["--dial-timeout=3", "get", "k"])
        try same(["put", "--prev-kv=maybe", "a", "b"])
        try same(["get", "k", "-w"])
        try same(["version", "-w", "xml"])
        try same(["gett"])
        try same(["--bogus", "get", "k"])
        try same(["txn", "--interactive=x"])
    }
}
