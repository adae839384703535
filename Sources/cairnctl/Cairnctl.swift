// cairnctl: etcdctl v3.4's commands, flags and output, on CairnClient.
import ArgumentParser
import CairnClient
import CairnGRPC
import Foundation
import Logging
import NIOCore
import NIOPosix

@main
struct Cairnctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairnctl",
        abstract: "A simple command line client for etcd3 and Cairn (etcdctl v3.4 compatible).",
        subcommands: [
            Version.self, Put.self, Get.self, Del.self, Txn.self, Compaction.self, Watch.self, LeaseCommand.self,
            MemberCommand.self, EndpointCommand.self, AlarmCommand.self, Defrag.self, SnapshotCommand.self,
            MoveLeader.self,
        ])

    /// The command line is read as etcdctl reads it (CommandLineSpec.swift); what it accepts is
    /// then bound to the command structs by ArgumentParser.
    static func main() async {
        let parsed: ParsedCommandLine
        switch Result(catching: { () throws(CommandLineError) in try CommandLineParser.parse(Array(CommandLine.arguments.dropFirst()), root: CommandTable.root) }) {
        case .success(let p): parsed = p
        case .failure(let error): exitReporting(error)
        }
        let command = parsed.path.command
        if parsed.wantsHelp || !command.runnable {
            emit(UsageText.render(parsed.path, version: CommandTable.version, apiVersion: CommandTable.apiVersion))
            Foundation.exit(0)
        }
        if parsed.path.names == ["help"] {
            emit(helpTopic(parsed.positionals))
            Foundation.exit(0)
        }
        if !["version", "snapshot restore", "snapshot status"].contains(parsed.path.names.joined(separator: " ")) {
            exitIfShadowedByEnvironment(parsed)
        }
        if let flag = parsed.unimplementedFlags.first {
            exitReporting(CtlError(exitCode: CtlError.exitBadFeature, message: "--\(flag) is not supported by \(CommandTable.programName)"))
        }
        do {
            var command = try parseAsRoot(parsed.canonicalArguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exitReporting(error)
        }
    }

    /// etcdctl refuses a global flag that is also set by its ETCDCTL_* variable, in the words of
    /// its logger (capnslog, level critical), before it connects.
    static func exitIfShadowedByEnvironment(_ parsed: ParsedCommandLine) {
        for flag in CommandTable.globalFlags where parsed.values[flag.name] != nil {
            let variable = "ETCDCTL_" + flag.name.uppercased().replacingOccurrences(of: "-", with: "_")
            guard let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty else { continue }
            emitError(
                "\(ClientLog.capnslogTimestamp(Date())) C | pkg/flags: conflicting environment variable \(GoFormat.quote(variable)) "
                    + "is shadowed by corresponding command-line flag (either unset environment variable or disable flag)\n")
            Foundation.exit(CtlError.exitError)
        }
    }

    /// `help [command...]`: that command's usage, or cobra's complaint and the root usage.
    static func helpTopic(_ words: [String]) -> String {
        var path = CommandPath(chain: [CommandTable.root])
        for word in words {
            guard let sub = path.command.subcommand(word) else {
                let topic = "[]string{" + words.map { GoFormat.quote($0) }.joined(separator: ", ") + "}"
                return "Unknown help topic \(topic)\n" + UsageText.render(CommandPath(chain: [CommandTable.root]), version: CommandTable.version, apiVersion: CommandTable.apiVersion)
            }
            path = path.appending(sub)
        }
        return UsageText.render(path, version: CommandTable.version, apiVersion: CommandTable.apiVersion)
    }
}

/// etcdctl's global flags.
struct GlobalOptions: ParsableArguments {
    @Option(name: [.customShort("w"), .customLong("write-out")], help: "set the output format (fields, json, simple, table)")
    var writeOut: String = environment("ETCDCTL_WRITE_OUT") ?? "simple"

    @Option(help: "gRPC endpoints")
    var endpoints: String = environment("ETCDCTL_ENDPOINTS") ?? "127.0.0.1:2379"

    @Option(name: .customLong("dial-timeout"), help: "dial timeout for client connections")
    var dialTimeout: String = environment("ETCDCTL_DIAL_TIMEOUT") ?? "2s"

    @Option(name: .customLong("command-timeout"), help: "timeout for short running command (excluding dial timeout)")
    var commandTimeout: String = environment("ETCDCTL_COMMAND_TIMEOUT") ?? "5s"

    @Flag(help: "print byte strings as hex encoded strings")
    var hex = false

    @Flag(help: "enable client-side debug logging")
    var debug = false

    static func environment(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    func durationOrExit(_ text: String, flag: String) throws(CtlError) -> Duration {
        guard let d = GoFormat.parseDuration(text) else {
            throw CtlError.badArgs("invalid argument \"\(text)\" for \"--\(flag)\" flag: time: invalid duration \"\(text)\"")
        }
        return d
    }

    func format() throws(CtlError) -> OutputFormat {
        guard let f = OutputFormat(rawValue: self.writeOut) else {
            throw CtlError(exitCode: CtlError.exitBadFeature, message: "unsupported output format")
        }
        return f
    }

    var endpointList: [String] {
        self.endpoints.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}

/// What a command runs with: the printer, timeouts and clients made from the global flags.
struct CommandContext: Sendable {
    let printer: Printer
    let commandTimeout: Duration
    let dialTimeout: Duration
    let endpoints: [String]
    let logger: Logger

    init(_ global: GlobalOptions) throws(CtlError) {
        self.printer = Printer(format: try global.format(), hex: global.hex)
        self.commandTimeout = try global.durationOrExit(global.commandTimeout, flag: "command-timeout")
        self.dialTimeout = try global.durationOrExit(global.dialTimeout, flag: "dial-timeout")
        self.endpoints = global.endpointList
        var logger = Logger(label: "cairnctl", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = global.debug ? .debug : .critical
        self.logger = logger
    }

    /// A unary call with `commandTimeout`, on `client` (default: a client over all endpoints,
    /// `endpoint` naming the one it dials first). A failure is logged as clientv3 logs it (see
    /// `ClientLog`) and rethrown.
    func call<Req, Resp>(_ method: UnaryMethod<Req, Resp>, _ request: Req, on client: EtcdClient? = nil, endpoint: String? = nil) async throws -> Resp {
        let target = ClientLog.target(endpoint ?? self.endpoints.first ?? "")
        do {
            return try await (client ?? self.client()).call(method, request, timeout: self.commandTimeout)
        } catch let e as CtlError {
            throw e
        } catch {
            emitError(ClientLog.unaryFailure(target: target, attempt: 0, error: error))
            throw error
        }
    }

    /// A client over all endpoints (the first reachable one is used).
    func client() throws -> EtcdClient { try self.client(endpoints: self.endpoints) }

    func client(endpoints: [String]) throws -> EtcdClient {
        let parsed = try endpoints.map { (e: String) throws(GRPCStatus) in try Endpoint(parsing: e) }
        guard !parsed.isEmpty else { throw CtlError.badArgs("no endpoints given") }
        return EtcdClient(
            configuration: .init(endpoints: parsed, dialTimeout: self.dialTimeout),
            group: MultiThreadedEventLoopGroup.singleton, logger: self.logger)
    }
}

/// A command run with etcdctl's error reporting.
protocol CtlCommand: AsyncParsableCommand {
    var global: GlobalOptions { get }
    func execute(_ context: CommandContext) async throws
}

extension CtlCommand {
    func run() async throws {
        let context = try CommandContext(self.global)
        try await self.execute(context)
    }
}

func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

func emitError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

/// The text etcdctl shows for an error from a call: etcd's own messages as they are, other
/// gRPC statuses as `rpc error: code = … desc = …`.
func describe(_ error: any Error) -> String {
    switch error {
    case let e as CtlError: return e.message
    case let s as GRPCStatus:
        if s.message.hasPrefix("etcdserver: ") || s.message == "context deadline exceeded" || s.message == "context canceled" {
            return s.message
        }
        return "rpc error: code = \(grpcCodeName(s.code)) desc = \(s.message)"
    default: return "\(error)"
    }
}

func grpcCodeName(_ code: GRPCStatusCode) -> String {
    let names = [
        "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
        "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
        "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    ]
    return names.indices.contains(code.rawValue) ? names[code.rawValue] : "Code(\(code.rawValue))"
}

/// Prints `Error: …` as etcdctl does and exits with its code. Command line errors are reported
/// as cobra reports them (with the usage text for flag errors) and then once more by etcdctl's
/// main, exiting 1. ArgumentParser's own errors (only for a command line this layer accepted and
/// a command struct did not) keep ArgumentParser's text and codes.
func exitReporting(_ error: any Error) -> Never {
    if let e = error as? CommandLineError {
        switch e {
        case .flag(let message, let path):
            emitError("Error: \(message)\n")
            emit(UsageText.render(path, version: CommandTable.version, apiVersion: CommandTable.apiVersion))
            emitError("\nError: \(message)\n")
        case .unknownCommand(let message):
            emitError("Error: \(message)\nRun '\(CommandTable.programName) --help' for usage.\nError: \(message)\n")
        }
        exit(CtlError.exitError)
    }
    if let e = error as? CtlError {
        emitError("Error: \(e.message)\n")
        exit(e.exitCode)
    }
    if error is GRPCStatus {
        emitError("Error: \(describe(error))\n")
        exit(CtlError.exitError)
    }
    Cairnctl.exit(withError: error)
}

/// Runs `body` and maps its failure to `wrap(message)` with exit code `exitCode`.
func wrapping<T>(_ exitCode: Int32 = CtlError.exitError, _ wrap: (String) -> String = { $0 }, _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let e as CtlError {
        throw e
    } catch {
        throw CtlError(exitCode: exitCode, message: wrap(describe(error)))
    }
}

struct Version: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Prints the version of cairnctl")
    @OptionGroup var global: GlobalOptions

    static let text = "\(CommandTable.programName) version: \(CommandTable.version)\nAPI version: \(CommandTable.apiVersion)\n"

    /// Like etcdctl's, whatever the global flags say (no client, no output format).
    func run() async throws { emit(Self.text) }
}

/// The log line etcdctl's client library (clientv3 with zap, level warn, JSON on stderr) writes when
/// a unary call fails, written the same way so that tools reading etcdctl's stderr see the same
/// lines: `{"level":"warn","ts":…,"caller":…,"msg":"retrying of unary invoker failed",
/// "target":"endpoint://client-<uuid>/<host:port>","attempt":0,"error":"rpc error: …"}`.
/// The caller field names the Go source line etcdctl logs from, as a fixed part of the format.
enum ClientLog {
    /// clientv3's resolver group ID: one per process.
    static let clientID = "client-" + UUID().uuidString.lowercased()

    /// The gRPC target clientv3 dials: its resolver scheme, the group ID and the first endpoint's host:port.
    static func target(_ endpoint: String) -> String {
        let host = endpoint.range(of: "://").map { String(endpoint[$0.upperBound...]) } ?? endpoint
        return "endpoint://\(clientID)/\(host)"
    }

    static func unaryFailure(target: String, attempt: Int, error: any Error, now: Date = Date()) -> String {
        let text: String
        if let status = error as? GRPCStatus {
            text = "rpc error: code = \(grpcCodeName(status.code)) desc = \(status.message)"
        } else {
            text = describe(error)
        }
        return "{\"level\":\"warn\",\"ts\":\(zapString(timestamp(now))),\"caller\":\"clientv3/retry_interceptor.go:62\","
            + "\"msg\":\"retrying of unary invoker failed\",\"target\":\(zapString(target)),\"attempt\":\(attempt),\"error\":\(zapString(text))}\n"
    }

    static func localTime(_ date: Date) -> (tm, Double) {
        let seconds = date.timeIntervalSince1970
        var t = time_t(seconds.rounded(.down))
        var parts = tm()
        localtime_r(&t, &parts)
        return (parts, seconds - seconds.rounded(.down))
    }

    /// capnslog's time: `2006-01-02 15:04:05.000000`, local.
    static func capnslogTimestamp(_ date: Date) -> String {
        let (parts, fraction) = localTime(date)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d.%06d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(fraction * 1_000_000))
    }

    /// zap's ISO 8601 time: local time with milliseconds and the zone offset (`Z` for UTC).
    static func timestamp(_ date: Date) -> String {
        let (parts, fraction) = localTime(date)
        let millis = Int(fraction * 1000)
        let offsetMinutes = parts.tm_gmtoff / 60
        let zone = offsetMinutes == 0
            ? "Z" : (offsetMinutes < 0 ? "-" : "+") + String(format: "%02d%02d", abs(offsetMinutes) / 60, abs(offsetMinutes) % 60)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), millis) + zone
    }

    /// A JSON string as zap's encoder writes it (not HTML-safe).
    static func zapString(_ s: String) -> String { GoJSON.string(s, htmlSafe: false) }
}
