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
        let compares = try TxnParser.section(&lines).map { (l: String) throws(CtlError) in try TxnParser.compare(l) }
        if self.interactive { emit("success requests (get, put, del):\n") }
        let success = try TxnParser.section(&lines).map { (l: String) throws(CtlError) in try TxnParser.op(l) }
        if self.interactive { emit("failure requests (get, put, del):\n") }
        let failure = try TxnParser.section(&lines).map { (l: String) throws(CtlError) in try TxnParser.op(l) }
        var request = Etcdserverpb_TxnRequest()
        request.compare = compares
        request.success = success
        request.failure = failure
        let response = try await wrapping { try await context.client().call(EtcdMethods.txn, request, timeout: context.commandTimeout) }
        emit(try context.printer.txn(response))
    }
}

/// Lines of standard input.
struct StdinLines {
    mutating func next() -> String? { readLine(strippingNewline: true) }
}

/// etcdctl's txn input: compare lines, a blank line, success ops, a blank line, failure ops.
enum TxnParser {
    /// Lines up to a blank line or end of input.
    static func section(_ lines: inout StdinLines) -> [String] {
        var out: [String] = []
        while let line = lines.next() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { break }
            out.append(trimmed)
        }
        return out
    }

    /// `target("key") op "value"`, target one of ver/version, c/create, m/mod, val/value, lease.
    static func compare(_ line: String) throws(CtlError) -> Etcdserverpb_Compare {
        let malformed = CtlError(exitCode: CtlError.exitBadArgs, message: "malformed comparison: \(line)")
        guard let paren = line.firstIndex(of: "(") else { throw malformed }
        let target = String(line[..<paren])
        var scanner = Scanner(Substring(line[line.index(after: paren)...]))
        guard let key = scanner.quoted(), scanner.literal(")"), let op = scanner.word(), let value = scanner.quoted() else {
            throw malformed
        }
        var c = Etcdserverpb_Compare()
        c.key = Data(key.utf8)
        switch op {
        case "=", "==": c.result = .equal
        case "!=": c.result = .notEqual
        case "<": c.result = .less
        case ">": c.result = .greater
        default: throw CtlError.badArgs("malformed comparison: \(line); unknown operator \(op)")
        }
        func number(_ radix: Int = 10) throws(CtlError) -> Int64 {
            guard let v = Int64(value, radix: radix) else {
                throw CtlError.badArgs("invalid txn compare request: \(line)")
            }
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
        default: throw CtlError.badArgs("malformed comparison: \(line); got unknown target \(target)")
        }
        return c
    }

    /// `put key value [--lease=ID] [--prev-kv]`, `get key [end] [get flags]`, `del key [end] [del flags]`.
    static func op(_ line: String) throws(CtlError) -> Etcdserverpb_RequestOp {
        let words = try argify(line)
        guard let verb = words.first else { throw CtlError.badArgs("empty request") }
        var op = Etcdserverpb_RequestOp()
        do {
            switch verb {
            case "put":
                op.requestPut = try Put.parse(Array(words.dropFirst())).request()
            case "get":
                op.requestRange = try Get.parse(Array(words.dropFirst())).request(format: .simple)
            case "del", "delete":
                op.requestDeleteRange = try Del.parse(Array(words.dropFirst())).request()
            default:
                throw CtlError.badArgs("invalid txn request: \(line)")
            }
        } catch let e as CtlError {
            throw e
        } catch {
            throw CtlError.badArgs("invalid txn request: \(line)")
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
                guard let q = scanner.quoted() else { throw CtlError.badArgs("invalid txn request: \(line)") }
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
