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

    /// etcdctl accepts global flags before the command name; ArgumentParser wants them after it,
    /// so they are moved behind the subcommand path before parsing.
    static func main() async {
        let arguments = GlobalOptions.movingGlobalFlagsLast(Array(CommandLine.arguments.dropFirst()))
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exitReporting(error)
        }
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

    static let valueFlags: Set<String> = ["-w", "--write-out", "--endpoints", "--dial-timeout", "--command-timeout"]
    static let booleanFlags: Set<String> = ["--hex", "--debug"]

    /// Moves global flags that precede the command name to the end (before any `--`).
    static func movingGlobalFlagsLast(_ args: [String]) -> [String] {
        var globals: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            let name = String(a.split(separator: "=", maxSplits: 1).first ?? "")
            if booleanFlags.contains(name) || (valueFlags.contains(name) && a.contains("=")) {
                globals.append(a)
                i += 1
            } else if valueFlags.contains(a), i + 1 < args.count {
                globals += [a, args[i + 1]]
                i += 2
            } else {
                break
            }
        }
        var rest = Array(args[i...])
        if let dashes = rest.firstIndex(of: "--") {
            rest.insert(contentsOf: globals, at: dashes)
        } else {
            rest += globals
        }
        return rest
    }

    func durationOrExit(_ text: String, flag: String) throws(CtlError) -> Duration {
        guard let d = GoFormat.parseDuration(text) else {
            throw CtlError.badArgs("invalid argument \"\(text)\" for \"--\(flag)\" flag: time: invalid duration \"\(text)\"")
        }
        return d
    }

    func format() throws(CtlError) -> OutputFormat {
        guard let f = OutputFormat(rawValue: self.writeOut) else {
            throw CtlError(exitCode: CtlError.exitBadFeature, message: "unknown output format \"\(self.writeOut)\"")
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

/// Prints `Error: …` as etcdctl does and exits with its code; ArgumentParser's own errors
/// (unknown flags, help) keep ArgumentParser's text and codes.
func exitReporting(_ error: any Error) -> Never {
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

struct Version: CtlCommand {
    static let configuration = CommandConfiguration(abstract: "Prints the version of cairnctl")
    @OptionGroup var global: GlobalOptions

    static let text = "cairnctl version: 0.1.0 (etcdctl 3.4 compatible)\nAPI version: 3.4\n"

    func execute(_ context: CommandContext) async throws { emit(Self.text) }
}
