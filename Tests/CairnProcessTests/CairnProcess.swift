// The built `cairn` binary run as a child process, as users run it.
import CairnClient
import CairnProto
import Foundation
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The built `cairn` next to the test bundle (.build/<config>/), where `swift test` puts it.
func cairnBinary() -> String? {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("cairn").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return nil
}

struct ProcessTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A port the kernel just handed out (bound to port 0, then released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ProcessTestError("socket: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
        }
    }
    guard ok else { throw ProcessTestError("bind: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Opens a TCP connection to 127.0.0.1:`port`, or returns -1.
func connectTCP(_ port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return -1 }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    let rc = withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 {
        close(fd)
        return -1
    }
    return fd
}

/// Writes all of `bytes` to `fd` (best effort: the peer may already have closed).
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return }
        offset += n
    }
}

/// A `cairn` member in its own process, on free ports, over `dataDir`.
final class CairnProcess: @unchecked Sendable {
    let binary: String
    let dataDir: String
    let clientPort: Int
    let peerPort: Int
    let extraArguments: [String]
    private(set) var process: Process?
    let logPath: String

    init(binary: String, dataDir: String, extraArguments: [String] = []) throws {
        self.binary = binary
        self.dataDir = dataDir
        self.clientPort = try freePort()
        self.peerPort = try freePort()
        self.extraArguments = extraArguments
        self.logPath = dataDir + ".log"
    }

    var endpoint: Endpoint { Endpoint(host: "127.0.0.1", port: clientPort) }
    var pid: Int32 { process?.processIdentifier ?? 0 }

    /// Starts the member and waits until it answers `/health` with `"health":"true"`.
    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        let client = "http://127.0.0.1:\(clientPort)"
        let peer = "http://127.0.0.1:\(peerPort)"
        p.arguments = [
            "--name", "p", "--data-dir", dataDir, "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "p=\(peer)",
            "--log-level", "warn",
        ] + extraArguments
        if !FileManager.default.fileExists(atPath: logPath) {
            FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if !p.isRunning { throw ProcessTestError("cairn exited with \(p.terminationStatus); log: \(tailOfLog())") }
            if let body = try? httpGet("/health"), body.contains("\"health\":\"true\"") { return }
            usleep(50_000)
        }
        throw ProcessTestError("cairn did not become healthy in 30 s; log: \(tailOfLog())")
    }

    /// SIGKILL: no chance to flush anything.
    func kill9() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard let p = process else { return 0 }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        process = nil
        return p.terminationStatus
    }

    var isRunning: Bool { process?.isRunning ?? false }

    /// Resident memory of the process (VmRSS), in KiB.
    func residentKiB() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? -1
        }
        return -1
    }

    /// A plain HTTP/1.1 GET on the client port; the body.
    func httpGet(_ path: String) throws -> String {
        let fd = connectTCP(clientPort)
        guard fd >= 0 else { throw ProcessTestError("connect failed") }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        writeAll(fd, Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8))
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        let text = String(decoding: out, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw ProcessTestError("no HTTP response") }
        return String(text[split.upperBound...])
    }

    /// The value of an unlabelled metric on `/metrics`.
    func metric(_ name: String) throws -> Double? {
        for line in try httpGet("/metrics").split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ")[1])
        }
        return nil
    }

    func tailOfLog() -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return String(text.suffix(2000))
    }
}

/// A fresh temporary directory (removed by the caller).
func temporaryDirectory(_ prefix: String) throws -> String {
    let dir = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func makeClient(_ member: CairnProcess, group: any EventLoopGroup) -> EtcdClient {
    EtcdClient(
        configuration: .init(endpoints: [member.endpoint], dialTimeout: .seconds(5)), group: group,
        logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
}

func putRequest(_ key: String, _ value: String) -> Etcdserverpb_PutRequest {
    var r = Etcdserverpb_PutRequest()
    r.key = Data(key.utf8)
    r.value = Data(value.utf8)
    return r
}

/// Every key with `prefix` and its value, read in pages.
func readPrefix(_ client: EtcdClient, _ prefix: String) async throws -> [String: String] {
    var out: [String: String] = [:]
    var start = Data(prefix.utf8)
    var end = Data(prefix.utf8)
    end[end.count - 1] += 1
    while true {
        var r = Etcdserverpb_RangeRequest()
        r.key = start
        r.rangeEnd = end
        r.limit = 5000
        let resp = try await client.call(EtcdMethods.range, r, timeout: .seconds(10))
        for kv in resp.kvs { out[String(decoding: kv.key, as: UTF8.self)] = String(decoding: kv.value, as: UTF8.self) }
        guard resp.more, let last = resp.kvs.last else { return out }
        start = last.key + Data([0])
    }
}
