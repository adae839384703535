import ArgumentParser
import CairnClient
import CairnProto
import Foundation

/// Key-range helpers with clientv3's conventions.
enum KeyRange {
    /// The end of the range of keys starting with `prefix`; "\0" (all keys) when no such end exists.
    static func prefixEnd(_ prefix: Data) -> Data {
        var end = Array(prefix)
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return Data(end)
            }
            end.removeLast()
        }
        return Data([0])
    }

    /// (key, range_end) for a key plus the `--prefix` / `--from-key` / explicit end options.
    static func resolve(key: String, end: String?, prefix: Bool, fromKey: Bool) -> (Data, Data) {
        var k = Data(key.utf8)
        if prefix {
            if k.isEmpty { return (Data([0]), Data([0])) }
            return (k, prefixEnd(k))
        }
        if fromKey {
            if k.isEmpty { k = Data([0]) }
            return (k, Data([0]))
        }
        return (k, end.map { Data($0.utf8) } ?? Data())
    }
}

/// Parses a lease ID written in hex, as etcdctl does.
func parseLeaseID(_ text: String) throws(CtlError) -> Int64 {
    guard let v = UInt64(text, radix: 16) else {
        throw CtlError.badArgs("bad lease ID (strconv.ParseInt: parsing \(GoFormat.quote(text)): invalid syntax), expecting ID in Hex")
    }
    return Int64(bitPattern: v)
}

struct Put: CtlCommand {
    static let configuration = CommandConfiguration(abstract: "Puts the given key into the store")
    @OptionGroup var global: GlobalOptions
    @Argument var args: [String] = []
    @Option(help: "lease ID (in hexadecimal) to attach to the key") var lease: String = "0"
    @Flag(name: .customLong("prev-kv"), help: "return the previous key-value pair before modification") var prevKV = false
    @Flag(name: .customLong("ignore-value"), help: "updates the key using its current value") var ignoreValue = false
    @Flag(name: .customLong("ignore-lease"), help: "updates the key using its current lease") var ignoreLease = false

    /// `readingStdin`: a missing value is the first line of standard input (not inside `txn`,
    /// whose input etcdctl has already consumed).
    func request(readingStdin: Bool = true) throws(CtlError) -> Etcdserverpb_PutRequest {
        guard !self.args.isEmpty else { throw CtlError.badArgs("put command needs 1 argument and input from stdin or 2 arguments") }
        var r = Etcdserverpb_PutRequest()
        r.key = Data(self.args[0].utf8)
        if self.ignoreValue {
            if self.args.count > 1 { throw CtlError.badArgs("put command needs only 1 argument when 'ignore-value' is set") }
        } else if self.args.count >= 2 {
            r.value = Data(self.args[1].utf8)
        } else if readingStdin, let line = readLine(strippingNewline: true) {
            r.value = Data(line.utf8)
        } else {
            throw CtlError.badArgs("put command needs 1 argument and input from stdin or 2 arguments")
        }
        let id = try parseLeaseID(self.lease)
        if self.ignoreLease {
            if id != 0 { throw CtlError.badArgs("put command needs 0 lease ID when 'ignore-lease' is set") }
        }
        r.lease = id
        r.prevKv = self.prevKV
        r.ignoreValue = self.ignoreValue
        r.ignoreLease = self.ignoreLease
        return r
    }

    func execute(_ context: CommandContext) async throws {
        let request = try self.request()
        let response = try await wrapping { try await context.call(EtcdMethods.put, request) }
        emit(try context.printer.put(response))
    }
}

struct Get: CtlCommand {
    static let configuration = CommandConfiguration(abstract: "Gets the key or a range of keys")
    @OptionGroup var global: GlobalOptions
    @Argument var args: [String] = []
    @Option(help: "Linearizable(l) or Serializable(s)") var consistency = "l"
    @Option(help: "Order of results; ASCEND or DESCEND (ASCEND by default)") var order = ""
    @Option(name: .customLong("sort-by"), help: "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION") var sortBy = ""
    @Option(help: "Maximum number of results") var limit: Int64 = 0
    @Flag(help: "Get keys with matching prefix") var prefix = false
    @Flag(name: .customLong("from-key"), help: "Get keys that are greater than or equal to the given key using byte compare") var fromKey = false
    @Option(help: "Specify the kv revision") var rev: Int64 = 0
    @Flag(name: .customLong("keys-only"), help: "Get only the keys") var keysOnly = false
    @Flag(name: .customLong("print-value-only"), help: "Only write values when using the \"simple\" output format") var printValueOnly = false

    func request(format: OutputFormat) throws(CtlError) -> Etcdserverpb_RangeRequest {
        guard (1...2).contains(self.args.count) else {
            throw CtlError.badArgs("get command needs one argument as key and an optional argument as range_end")
        }
        if self.prefix && self.fromKey {
            throw CtlError.badArgs("`--prefix` and `--from-key` cannot be set at the same time, choose one")
        }
        if self.prefix && self.args.count > 1 {
            throw CtlError.badArgs("too many arguments, only accept one argument when `--prefix` is set.")
        }
        if self.fromKey && self.args.count > 1 {
            throw CtlError.badArgs("too many arguments, only accept one argument when `--from-key` is set.")
        }
        if self.printValueOnly && format != .simple {
            throw CtlError.badArgs("print-value-only is only for `--write-out=simple`")
        }
        var r = Etcdserverpb_RangeRequest()
        (r.key, r.rangeEnd) = KeyRange.resolve(key: self.args[0], end: self.args.count > 1 ? self.args[1] : nil, prefix: self.prefix, fromKey: self.fromKey)
        switch self.consistency {
        case "l": break
        case "s": r.serializable = true
        default: throw CtlError(exitCode: CtlError.exitBadFeature, message: "unknown consistency flag \(GoFormat.quote(self.consistency))")
        }
        r.limit = self.limit
        r.revision = self.rev
        r.keysOnly = self.keysOnly
        var order = Etcdserverpb_RangeRequest.SortOrder.none
        switch self.order.uppercased() {
        case "ASCEND": order = .ascend
        case "DESCEND": order = .descend
        case "": break
        default: throw CtlError(exitCode: CtlError.exitBadFeature, message: "bad sort order \(self.order)")
        }
        var target = Etcdserverpb_RangeRequest.SortTarget.key
        switch self.sortBy.uppercased() {
        case "CREATE": target = .create
        case "KEY", "": target = .key
        case "MODIFY": target = .mod
        case "VALUE": target = .value
        case "VERSION": target = .version
        default: throw CtlError(exitCode: CtlError.exitBadFeature, message: "bad sort target \(self.sortBy)")
        }
        if !self.sortBy.isEmpty && order == .none { order = .ascend }
        // Ascending by key is the server's natural order: clientv3 leaves it out of the request.
        if !(target == .key && order == .ascend) {
            r.sortOrder = order
            r.sortTarget = target
        }
        return r
    }

    func execute(_ context: CommandContext) async throws {
        var printer = context.printer
        let request = try self.request(format: printer.format)
        printer.valueOnly = self.printValueOnly
        let response = try await wrapping { try await context.call(EtcdMethods.range, request) }
        emit(try printer.range(response))
    }
}

struct Del: CtlCommand {
    static let configuration = CommandConfiguration(abstract: "Removes the specified key or range of keys [key, range_end)")
    @OptionGroup var global: GlobalOptions
    @Argument var args: [String] = []
    @Flag(help: "delete keys with matching prefix") var prefix = false
    @Flag(name: .customLong("prev-kv"), help: "return deleted key-value pairs") var prevKV = false
    @Flag(name: .customLong("from-key"), help: "delete keys that are greater than or equal to the given key using byte compare") var fromKey = false

    func request() throws(CtlError) -> Etcdserverpb_DeleteRangeRequest {
        guard (1...2).contains(self.args.count) else {
            throw CtlError.badArgs("del command needs one argument as key and an optional argument as range_end")
        }
        if self.prefix && self.fromKey {
            throw CtlError.badArgs("`--prefix` and `--from-key` cannot be set at the same time, choose one")
        }
        var r = Etcdserverpb_DeleteRangeRequest()
        (r.key, r.rangeEnd) = KeyRange.resolve(key: self.args[0], end: self.args.count > 1 ? self.args[1] : nil, prefix: self.prefix, fromKey: self.fromKey)
        r.prevKv = self.prevKV
        return r
    }

    func execute(_ context: CommandContext) async throws {
        let request = try self.request()
        let response = try await wrapping { try await context.call(EtcdMethods.deleteRange, request) }
        emit(try context.printer.delete(response))
    }
}

struct Compaction: CtlCommand {
    static let configuration = CommandConfiguration(abstract: "Compacts the event history in etcd")
    @OptionGroup var global: GlobalOptions
    @Argument var args: [String] = []
    @Flag(help: "'true' to wait for compaction to physically remove all old revisions") var physical = false

    func execute(_ context: CommandContext) async throws {
        guard self.args.count == 1 else { throw CtlError.badArgs("compaction command needs 1 argument") }
        guard let rev = Int64(self.args[0]) else {
            throw CtlError(exitCode: CtlError.exitError, message: "strconv.ParseInt: parsing \(GoFormat.quote(self.args[0])): invalid syntax")
        }
        var request = Etcdserverpb_CompactionRequest()
        request.revision = rev
        request.physical = self.physical
        let response = try await wrapping { try await context.call(EtcdMethods.compact, request) }
        emit(context.printer.compaction(revision: rev, response))
    }
}

struct Watch: CtlCommand {
    static let configuration = CommandConfiguration(abstract: "Watches events stream on keys or prefixes")
    @OptionGroup var global: GlobalOptions
    @Argument var args: [String] = []
    @Flag(help: "Watch on a prefix if prefix is set") var prefix = false
    @Option(help: "Revision to start watching") var rev: Int64 = 0
    @Flag(name: .customLong("prev-kv"), help: "get the previous key-value pair before the event happens") var prevKV = false
    /// Set by the command line layer when `--` was given: the arguments after it are a command.
    @Option(name: .customLong("args-len-at-dash"), help: .hidden) var argsLenAtDash: Int?

    static let badArgs = "bad number of arguments"

    /// The key, range end and command of `watch [key [range_end]] [-- command args...]`, with
    /// `ETCDCTL_WATCH_KEY` / `ETCDCTL_WATCH_RANGE_END` standing in for the key arguments.
    func target(environment: [String: String] = ProcessInfo.processInfo.environment) throws(CtlError) -> (key: String, end: String?, command: [String]) {
        var keyArgs = self.args
        var command: [String] = []
        if let n = self.argsLenAtDash {
            keyArgs = Array(self.args[..<min(n, self.args.count)])
            command = Array(self.args[min(n, self.args.count)...])
            if command.isEmpty { throw CtlError.badArgs("\(Self.badArgs) (found separator --, but no commands)") }
        }
        let envKey = environment["ETCDCTL_WATCH_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        if let envKey {
            if !keyArgs.isEmpty { throw CtlError.badArgs("\(Self.badArgs) (found conflicting environment key)") }
            keyArgs = [envKey] + (environment["ETCDCTL_WATCH_RANGE_END"].flatMap { $0.isEmpty ? nil : [$0] } ?? [])
        }
        guard (1...2).contains(keyArgs.count) else { throw CtlError.badArgs(Self.badArgs) }
        if self.prefix && keyArgs.count > 1 {
            throw CtlError.badArgs("`range_end` and `--prefix` are mutually exclusive")
        }
        return (keyArgs[0], keyArgs.count > 1 ? keyArgs[1] : nil, command)
    }

    func request(key: String, end: String?) -> Etcdserverpb_WatchRequest {
        var create = Etcdserverpb_WatchCreateRequest()
        (create.key, create.rangeEnd) = KeyRange.resolve(key: key, end: end, prefix: self.prefix, fromKey: false)
        create.startRevision = self.rev
        create.prevKv = self.prevKV
        var r = Etcdserverpb_WatchRequest()
        r.createRequest = create
        return r
    }

    func execute(_ context: CommandContext) async throws {
        let (key, end, command) = try self.target()
        let request = self.request(key: key, end: end)
        let call = try await wrapping { try await context.client().bidiStream(EtcdMethods.watch) }
        try await wrapping { try await call.send(request) }
        do {
            for try await response in call.responses {
                if response.created && response.events.isEmpty && !response.canceled { continue }
                if response.canceled {
                    let reason = response.compactRevision > 0 ? "etcdserver: mvcc: required revision has been compacted" : response.cancelReason
                    emitError("watch was canceled (\(reason))\n")
                }
                emit(try context.printer.watch(response))
                if !command.isEmpty {
                    for event in response.events { await Self.run(command, for: event, revision: response.header.revision) }
                }
                if response.canceled { break }
            }
        } catch let e as CtlError {
            throw e
        } catch {
            throw CtlError(exitCode: CtlError.exitInterrupted, message: describe(error))
        }
        call.cancel()
        throw CtlError(exitCode: CtlError.exitInterrupted, message: "watch is canceled by the server")
    }

    /// Runs `command` for one event, as etcdctl does: with the event in ETCD_WATCH_* variables
    /// (Go-quoted), sharing stdout and stderr; a failure ends the watch with exit status 1.
    static func run(_ command: [String], for event: Mvccpb_Event, revision: Int64) async {
        var environment = ProcessInfo.processInfo.environment
        environment["ETCD_WATCH_REVISION"] = "\(revision)"
        environment["ETCD_WATCH_EVENT_TYPE"] = GoFormat.quote(event.type == .delete ? "DELETE" : "PUT")
        environment["ETCD_WATCH_KEY"] = GoFormat.quote(event.kv.key)
        environment["ETCD_WATCH_VALUE"] = GoFormat.quote(event.kv.value)
        let quoted = "[" + command.map { GoFormat.quote($0) }.joined(separator: " ") + "]"
        func fail(_ reason: String) -> Never {
            emitError("command \(quoted) error (\(reason))\n")
            Foundation.exit(CtlError.exitError)
        }
        // Go's exec.Command: a name without a slash is looked up in PATH
        var path = command[0]
        if !path.contains("/") {
            let dirs = (environment["PATH"] ?? "").split(separator: ":", omittingEmptySubsequences: false).map { $0.isEmpty ? "." : String($0) }
            guard let found = dirs.map({ "\($0)/\(path)" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                fail("exec: \(GoFormat.quote(path)): executable file not found in $PATH")
            }
            path = found
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = Array(command.dropFirst())
        process.environment = environment
        let started: Result<Process.TerminationReason, any Error> = await withCheckedContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: .success($0.terminationReason)) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(returning: .failure(error))
            }
        }
        switch started {
        case .failure:
            fail("fork/exec \(path): \(FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file or directory")")
        case .success(.uncaughtSignal):
            let name = strsignal(process.terminationStatus).map { String(cString: $0) } ?? "signal \(process.terminationStatus)"
            fail("signal: " + name.prefix(1).lowercased() + name.dropFirst())
        case .success:
            if process.terminationStatus != 0 { fail("exit status \(process.terminationStatus)") }
        }
    }
}
