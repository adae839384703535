import Foundation
import XCTest

/// Runs the real etcd 3.4 and etcdctl (/usr/bin) for interoperability tests.
enum EtcdTools {
    static let etcd = "/usr/bin/etcd"
    static let etcdctl = "/usr/bin/etcdctl"

    /// A TCP port that was free a moment ago (bound to port 0, then released).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Runs a program to completion; returns its exit status, stdout and stderr.
    @discardableResult
    static func run(_ path: String, _ args: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> (
        status: Int32, out: String, err: String
    ) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["ETCDCTL_API"] = "3"
        for (k, v) in environment { env[k] = v }
        p.environment = env
        // Output goes to files: pipes would need readers on other threads to not block the child.
        let base = NSTemporaryDirectory() + "cairn-run-\(UInt64.random(in: 0...UInt64.max))"
        FileManager.default.createFile(atPath: base + ".out", contents: nil)
        FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        p.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        p.standardError = FileHandle(forWritingAtPath: base + ".err")
        let input = Pipe()
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        p.waitUntilExit()
        let outData = FileManager.default.contents(atPath: base + ".out") ?? Data()
        let errData = FileManager.default.contents(atPath: base + ".err") ?? Data()
        return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }
}

/// One etcd 3.4 member on free local ports, stopped by `stop()`.
final class EtcdMember {
    let dataDir: String
    let clientURL: String
    let process = Process()
    let logPath: String

    /// Starts etcd on `dataDir` (restored data dirs need the name and peer URL they were
    /// restored with).
    init(dataDir: String, name: String = "default", peerURL: String? = nil) throws {
        self.dataDir = dataDir
        let clientPort = EtcdTools.freePort()
        let peer = peerURL ?? "http://127.0.0.1:\(EtcdTools.freePort())"
        clientURL = "http://127.0.0.1:\(clientPort)"
        logPath = dataDir + ".log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: EtcdTools.etcd)
        process.arguments = [
            "--name", name, "--data-dir", dataDir, "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "\(name)=\(peer)",
        ]
        let log = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try waitUntilServing()
    }

    private func waitUntilServing() throws {
        for _ in 0..<100 {
            if !process.isRunning { break }
            if let r = try? ctl(["endpoint", "health"]), r.status == 0 { return }
            usleep(100_000)
        }
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        throw NSError(domain: "etcd", code: 1, userInfo: [NSLocalizedDescriptionKey: "etcd did not start:\n\(log.suffix(3000))"])
    }

    /// etcdctl against this member; fails the test when etcdctl fails.
    @discardableResult
    func ctl(_ args: [String], stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
        try EtcdTools.run(EtcdTools.etcdctl, ["--endpoints", clientURL, "--dial-timeout", "2s"] + args, stdin: stdin)
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}
