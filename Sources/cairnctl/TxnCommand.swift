import ArgumentParser
import CairnClient
import CairnProto
import Foundation

struct Txn: CtlCommand {
    static let configuration = CommandConfiguration(abstract: "Txn processes all the requests in one transaction")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.customShort("i"), .customLong("interactive")], help: "Input transaction in interactive mode") var interactive = false

    func execute(_ context: CommandContext) async throws {
        var lines = StdinLines()
        if self.interactive { emit("compares:\n") }
        let compares = try TxnParser.section(&lines, TxnParser.compare)
        if self.interactive { emit("success requests (get, put, del):\n") }
        let success = try TxnParser.section(&lines, TxnParser.op)
        if self.interactive { emit("failure requests (get, put, del):\n") }
        let failure = try TxnParser.section(&lines, TxnParser.op)
        var request = Etcdserverpb_TxnRequest()
        request.compare = compares
        request.success = success
        request.failure = failure
        let response = try await wrapping { try await context.call(EtcdMethods.txn, request) }
        emit(try context.printer.txn(response))
    }
}

/// Lines of standard input. Like etcdctl (bufio's ReadString), a line that is not ended by a
/// newline, or no line at all, is the input error "EOF".
struct StdinLines {
    mutating func next() throws(CtlError) -> String {
        guard let line = readLine(strippingNewline: false), line.hasSuffix("\n") else {
            throw CtlError(exitCode: CtlError.exitInvalidInput, message: "EOF")
        }
        return String(line.dropLast())
    }
}

/// etcdctl's txn input: compare lines, a blank line, success ops, a blank line, failure ops.
enum TxnParser {
    /// Lines up to a blank line, each parsed as soon as it is read.
    static func section<T>(_ lines: inout StdinLines, _ parse: (String) throws(CtlError) -> T) throws(CtlError) -> [T] {
        var out: [T] = []
        while true {
            let trimmed = try lines.next().trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { return out }
            out.append(try parse(trimmed))
        }
    }

    static func invalidInput(_ message: String) -> CtlError { CtlError(exitCode: CtlError.exitInvalidInput, message: message) }

    /// `target("key") op "value"`, target one of ver/version, c/create, m/mod, val/value, lease.
    /// A line that does not scan as that reports what did scan, as etcdctl does.
    static func compare(_ line: String) throws(CtlError) -> Etcdserverpb_Compare {
        guard let paren = line.firstIndex(of: "(") else { throw invalidInput("malformed comparison: \(line)") }
        let target = String(line[..<paren])
        var scanner = Scanner(Substring(line[line.index(after: paren)...]))
        var (key, op, value, scanned) = ("", "", "", 0)
        if let k = scanner.quoted() {
            (key, scanned) = (k, 1)
            if scanner.literal(")"), let o = scanner.word() {
                (op, scanned) = (o, 2)
                if let v = scanner.quoted() { (value, scanned) = (v, 3) }
            }
        }
        guard scanned == 3 else {
            throw invalidInput("malformed comparison: \(line); got \(target)(\(GoFormat.quote(key))) \(op) \(GoFormat.quote(value))")
        }
        var c = Etcdserverpb_Compare()
        c.key = Data(key.utf8)
        func number(_ radix: Int = 10) throws(CtlError) -> Int64 {
            guard let v = Int64(value, radix: radix) else { throw invalidInput("invalid txn compare request: \(line)") }
            return v
        }
        switch target {
        case "ver", "version":
            c.target = .version
            c.version = try number()
        case "c", "create":
            c.target = .create
            c.createRevision = try number()
        case "m", "mod":
            c.target = .mod
            c.modRevision = try number()
        case "val", "value":
            c.target = .value
            c.value = Data(value.utf8)
        case "lease":
            c.target = .lease
            c.lease = try number(16)
        default: throw invalidInput("malformed comparison: \(line) (unknown target \(target))")
        }
        switch op {
        case "=", "==": c.result = .equal
        case "!=": c.result = .notEqual
        case "<": c.result = .less
        case ">": c.result = .greater
        // etcdctl 3.4 panics here (clientv3.Compare); an error is kinder.
        default: throw invalidInput("malformed comparison: \(line); unknown operator \(op)")
        }
        return c
    }

    /// The commands a request line may use (put, get, del with their own flags, no global flags).
    static let opCommands = CommandSpec(
        "txn", "", "", subcommands: CommandTable.root.subcommands.filter { ["put", "get", "del"].contains($0.name) })

    /// `put key value [--lease=ID] [--prev-kv]`, `get key [end] [get flags]`, `del key [end] [del flags]`,
    /// read with etcdctl's command line rules.
    static func op(_ line: String) throws(CtlError) -> Etcdserverpb_RequestOp {
        let words = try argify(line)
        guard words.count >= 2 else { throw invalidInput("invalid txn compare request: \(line)") }
        let invalid = invalidInput("invalid txn request: \(line)")
        guard let parsed = try? CommandLineParser.parse(words, root: opCommands), parsed.path.chain.count == 2, !parsed.wantsHelp else {
            throw invalid
        }
        let arguments = Array(parsed.canonicalArguments.dropFirst())
        var op = Etcdserverpb_RequestOp()
        do {
            switch parsed.path.command.name {
            case "put": op.requestPut = try Put.parse(arguments).request(readingStdin: false)
            case "get": op.requestRange = try Get.parse(arguments).request(format: .simple)
            default: op.requestDeleteRange = try Del.parse(arguments).request()
            }
        } catch let e as CtlError {
            throw e
        } catch {
            throw invalid
        }
        return op
    }

    /// Splits a line into words; double-quoted words may hold spaces and Go escapes.
    static func argify(_ line: String) throws(CtlError) -> [String] {
        var scanner = Scanner(Substring(line))
        var out: [String] = []
        while true {
            scanner.skipSpaces()
            if scanner.atEnd { return out }
            if scanner.peek == "\"" {
                guard let q = scanner.quoted() else { throw invalidInput("invalid txn request: \(line)") }
                out.append(q)
            } else if let w = scanner.word() {
                out.append(w)
            }
        }
    }
}

/// A tiny scanner for txn lines.
struct Scanner {
    var rest: Substring
    init(_ s: Substring) { self.rest = s }

    var atEnd: Bool { self.rest.isEmpty }
    var peek: Character? { self.rest.first }

    mutating func skipSpaces() { self.rest = self.rest.drop { $0 == " " || $0 == "\t" } }

    mutating func literal(_ s: String) -> Bool {
        self.skipSpaces()
        guard self.rest.hasPrefix(s) else { return false }
        self.rest = self.rest.dropFirst(s.count)
        return true
    }

    mutating func word() -> String? {
        self.skipSpaces()
        let w = self.rest.prefix { $0 != " " && $0 != "\t" }
        guard !w.isEmpty else { return nil }
        self.rest = self.rest.dropFirst(w.count)
        return String(w)
    }

    /// A Go-quoted string (`"…"` with escapes, or `` `…` ``).
    mutating func quoted() -> String? {
        self.skipSpaces()
        guard let open = self.rest.first, open == "\"" || open == "`" else { return nil }
        var out = ""
        var i = self.rest.index(after: self.rest.startIndex)
        while i < self.rest.endIndex {
            let ch = self.rest[i]
            if ch == open {
                self.rest = self.rest[self.rest.index(after: i)...]
                return out
            }
            if ch == "\\" && open == "\"" {
                i = self.rest.index(after: i)
                guard i < self.rest.endIndex else { return nil }
                switch self.rest[i] {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "\\": out.append("\\")
                case "\"": out.append("\"")
                default: out.append(self.rest[i])
                }
            } else {
                out.append(ch)
            }
            i = self.rest.index(after: i)
        }
        return nil
    }
}
