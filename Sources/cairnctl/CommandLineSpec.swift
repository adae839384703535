// etcdctl 3.4's command line as its libraries present it (cobra commands, pflag flags): which
// commands and flags exist, how a command line is split into them, the errors for a bad one and
// the usage text. Written from the observed behaviour of etcdctl 3.4.23; the texts (usage lines,
// flag descriptions, error wording) are format facts and must match it exactly.
//
// This layer decides what etcdctl would accept. An accepted command line is handed on to
// ArgumentParser in canonical form (`--name=value` / `--flag`, `--`, positionals), which binds
// it to the command structs.

/// The value type of a flag, as pflag parses it.
enum FlagKind: Sendable, Equatable {
    case bool, string, int64, duration, stringSlice
}

struct FlagSpec: Sendable {
    let name: String
    let shorthand: Character?
    let kind: FlagKind
    /// pflag's DefValue, as shown in the usage text ("false", "0", "5s", "[127.0.0.1:2379]").
    let defaultText: String
    let usage: String
    /// False for flags etcdctl has and cairnctl does not implement: setting them is an error.
    let implemented: Bool
    /// Cairn's own flags that etcdctl does not have (`snapshot save --format`): accepted, but
    /// left out of the usage text, which stays etcdctl's.
    let cairnOnly: Bool

    init(
        _ name: String, _ kind: FlagKind, _ defaultText: String, _ usage: String, short: Character? = nil,
        implemented: Bool = true, cairnOnly: Bool = false
    ) {
        self.name = name
        self.shorthand = short
        self.kind = kind
        self.defaultText = defaultText
        self.usage = usage
        self.implemented = implemented
        self.cairnOnly = cairnOnly
    }

    static func bool(_ name: String, _ usage: String, short: Character? = nil, implemented: Bool = true) -> FlagSpec {
        FlagSpec(name, .bool, "false", usage, short: short, implemented: implemented)
    }

    static func string(_ name: String, _ defaultValue: String, _ usage: String, implemented: Bool = true) -> FlagSpec {
        FlagSpec(name, .string, defaultValue, usage, implemented: implemented)
    }

    static func int64(_ name: String, _ usage: String) -> FlagSpec { FlagSpec(name, .int64, "0", usage) }

    /// One line of etcdctl's flag list: `  -w, --write-out="simple"\tset the output format ...`.
    var usageLine: String {
        var line = self.shorthand.map { "  -\($0), --" } ?? "      --"
        line += self.name
        switch self.kind {
        case .bool: line += "[=\(self.defaultText)]"
        case .string: line += "=" + GoFormat.quote(self.defaultText)
        default: line += "=" + self.defaultText
        }
        return line + "\t" + self.usage + "\n"
    }

    /// Checks a value as pflag's typed Set does; nil when valid, else the parse error.
    func invalid(_ value: String) -> String? {
        switch self.kind {
        case .bool:
            return ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"].contains(value)
                ? nil : "strconv.ParseBool: parsing \(GoFormat.quote(value)): invalid syntax"
        case .int64:
            if case .failure(let e) = GoFormat.parseGoInt64(value) { return e.text }
            return nil
        case .duration:
            if case .failure(let e) = GoFormat.parseGoDuration(value) { return e.text }
            return nil
        case .string, .stringSlice:
            return nil
        }
    }

    static func isTrue(_ value: String) -> Bool { ["1", "t", "T", "TRUE", "true", "True"].contains(value) }

    /// A valid value as the rest of cairnctl reads it: bools as true/false, integers in decimal.
    func canonical(_ value: String) -> String {
        switch self.kind {
        case .bool: return Self.isTrue(value) ? "true" : "false"
        case .int64: return (try? GoFormat.parseGoInt64(value).get()).map { String($0) } ?? value
        default: return value
        }
    }
}

/// A command of etcdctl's tree (cobra.Command's Use, Short, Long and flags).
struct CommandSpec: Sendable {
    let name: String
    /// cobra's Use without the command name: "[options] <key> [range_end]".
    let arguments: String
    let short: String
    let long: String
    /// Flags of this command only (cobra's local flags, without -h).
    let flags: [FlagSpec]
    /// Flags this command passes on to its subcommands (cobra's persistent flags).
    let persistentFlags: [FlagSpec]
    let subcommands: [CommandSpec]
    /// Whether the command reads where `--` was among its arguments (cobra's ArgsLenAtDash, for
    /// `watch … -- COMMAND`); it is passed on as `--args-len-at-dash=N`.
    let usesArgsLenAtDash: Bool

    init(
        _ name: String, _ arguments: String = "", _ short: String, long: String = "", flags: [FlagSpec] = [],
        persistentFlags: [FlagSpec] = [], subcommands: [CommandSpec] = [], usesArgsLenAtDash: Bool = false
    ) {
        self.name = name
        self.arguments = arguments
        self.short = short
        self.long = long
        self.flags = flags
        self.persistentFlags = persistentFlags
        self.subcommands = subcommands.sorted { $0.name < $1.name }
        self.usesArgsLenAtDash = usesArgsLenAtDash
    }

    var runnable: Bool { self.subcommands.isEmpty }

    func subcommand(_ name: String) -> CommandSpec? { self.subcommands.first { $0.name == name } }
}

/// A command found in the tree: its spec and the specs above it (root first).
struct CommandPath: Sendable {
    let chain: [CommandSpec]
    var command: CommandSpec { self.chain[self.chain.count - 1] }
    var names: [String] { self.chain.dropFirst().map(\.name) }
    /// "cairnctl lease grant".
    var commandPath: String { self.chain.map(\.name).joined(separator: " ") }

    var helpFlag: FlagSpec { .bool("help", "help for \(self.command.name)", short: "h") }

    /// The command's own flags (cobra's LocalFlags: local, own persistent and -h), sorted by name.
    var localFlags: [FlagSpec] {
        (self.command.flags + self.command.persistentFlags + [self.helpFlag]).sorted { $0.name < $1.name }
    }

    /// Persistent flags of the commands above (cobra's InheritedFlags), sorted by name.
    var inheritedFlags: [FlagSpec] {
        self.chain.dropLast().flatMap(\.persistentFlags).sorted { $0.name < $1.name }
    }

    var allFlags: [FlagSpec] { self.localFlags + self.inheritedFlags }

    func flag(named name: String) -> FlagSpec? { self.allFlags.first { $0.name == name } }
    func flag(short: Character) -> FlagSpec? { self.allFlags.first { $0.shorthand == short } }

    func appending(_ c: CommandSpec) -> CommandPath { CommandPath(chain: self.chain + [c]) }
}

/// What went wrong with a command line, reported as etcdctl reports it.
enum CommandLineError: Error {
    /// A flag error of the command at `path`: usage text on stdout, the message on stderr (twice), exit 1.
    case flag(String, CommandPath)
    /// An unknown command: the message and a hint on stderr, exit 1.
    case unknownCommand(String)
}

/// The outcome of parsing a command line.
struct ParsedCommandLine: Sendable {
    let path: CommandPath
    /// Flags given on the command line, last value wins (`stringSlice` values are joined by commas).
    var values: [String: String] = [:]
    var positionals: [String] = []
    /// How many positionals came before `--`, if it was given.
    var argsLenAtDash: Int?

    var wantsHelp: Bool { self.values["help"] == "true" }

    /// The arguments for ArgumentParser: the command names, the implemented flags that are set
    /// (`--name=value`, bools as `--name` when true), then `--` and the positional arguments.
    var canonicalArguments: [String] {
        var out = self.path.names
        for flag in self.path.allFlags where flag.implemented && flag.name != "help" {
            guard let value = self.values[flag.name] else { continue }
            if flag.kind == .bool {
                if value == "true" { out.append("--" + flag.name) }
            } else {
                out.append("--\(flag.name)=\(value)")
            }
        }
        if self.path.command.usesArgsLenAtDash, let n = self.argsLenAtDash { out.append("--args-len-at-dash=\(n)") }
        return out + ["--"] + self.positionals
    }

    /// Flags cairnctl does not implement that are set to something other than their default.
    var unimplementedFlags: [String] {
        self.path.allFlags.filter { !$0.implemented && self.values[$0.name] != nil && self.values[$0.name] != $0.defaultText }.map(\.name)
    }
}

enum CommandLineParser {
    /// Finds the command as cobra does (flags skipped, a flag without `=` taking the next word
    /// unless it is a bool), then parses its flags as pflag does (interspersed with positionals).
    static func parse(_ args: [String], root: CommandSpec) throws(CommandLineError) -> ParsedCommandLine {
        var path = CommandPath(chain: [root])
        var rest = args
        while true {
            let words = strippingFlags(rest, path)
            guard let next = words.first, let sub = path.command.subcommand(next) else { break }
            path = path.appending(sub)
            if let i = rest.firstIndex(of: next) { rest.remove(at: i) }
        }
        if path.chain.count == 1, let word = strippingFlags(rest, path).first {
            throw .unknownCommand("unknown command \(GoFormat.quote(word)) for \(GoFormat.quote(root.name))" + suggestions(for: word, in: root))
        }
        var parsed = ParsedCommandLine(path: path)
        var i = 0
        while i < rest.count {
            let a = rest[i]
            i += 1
            if a == "--" {
                parsed.argsLenAtDash = parsed.positionals.count
                parsed.positionals += rest[i...]
                break
            }
            guard a.count > 1, a.hasPrefix("-") else {
                parsed.positionals.append(a)
                continue
            }
            if a.hasPrefix("--") {
                let body = String(a.dropFirst(2))
                if body.isEmpty || body.hasPrefix("-") || body.hasPrefix("=") { throw .flag("bad flag syntax: \(a)", path) }
                let parts = body.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = String(parts[0])
                guard let flag = path.flag(named: name) else { throw .flag("unknown flag: --\(name)", path) }
                let value: String
                if parts.count == 2 {
                    value = String(parts[1])
                } else if flag.kind == .bool {
                    value = "true"
                } else if i < rest.count {
                    value = rest[i]
                    i += 1
                } else {
                    throw .flag("flag needs an argument: \(a)", path)
                }
                try set(flag, value, in: &parsed, path)
            } else {
                var shorthands = Substring(a.dropFirst())
                while let c = shorthands.first {
                    guard let flag = path.flag(short: c) else {
                        throw .flag("unknown shorthand flag: '\(c)' in -\(shorthands)", path)
                    }
                    let value: String
                    if shorthands.count > 2, shorthands[shorthands.index(after: shorthands.startIndex)] == "=" {
                        value = String(shorthands.dropFirst(2))
                        shorthands = ""
                    } else if flag.kind == .bool {
                        value = "true"
                        shorthands = shorthands.dropFirst()
                    } else if shorthands.count > 1 {
                        value = String(shorthands.dropFirst())
                        shorthands = ""
                    } else if i < rest.count {
                        value = rest[i]
                        i += 1
                        shorthands = ""
                    } else {
                        throw .flag("flag needs an argument: '\(c)' in -\(shorthands)", path)
                    }
                    try set(flag, value, in: &parsed, path)
                }
            }
        }
        return parsed
    }

    private static func set(
        _ flag: FlagSpec, _ value: String, in parsed: inout ParsedCommandLine, _ path: CommandPath
    ) throws(CommandLineError) {
        if let problem = flag.invalid(value) {
            let shown = flag.shorthand.map { "-\($0), --\(flag.name)" } ?? "--\(flag.name)"
            throw .flag("invalid argument \(GoFormat.quote(value)) for \(GoFormat.quote(shown)) flag: \(problem)", path)
        }
        let value = flag.canonical(value)
        if flag.kind == .stringSlice, let previous = parsed.values[flag.name] {
            parsed.values[flag.name] = previous + "," + value
        } else {
            parsed.values[flag.name] = value
        }
    }

    /// The words of `args` that are not flags or flag values, as cobra's command lookup sees them.
    static func strippingFlags(_ args: [String], _ path: CommandPath) -> [String] {
        var words: [String] = []
        var i = 0
        while i < args.count {
            let s = args[i]
            i += 1
            if s == "--" { break }
            let takesValue: Bool
            if s.hasPrefix("--"), !s.contains("=") {
                takesValue = path.flag(named: String(s.dropFirst(2)))?.kind != .bool
            } else if s.hasPrefix("-"), !s.contains("="), s.count == 2 {
                takesValue = path.flag(short: s.last!)?.kind != .bool
            } else {
                if !s.isEmpty, !s.hasPrefix("-") { words.append(s) }
                continue
            }
            if takesValue {
                if args.count - i <= 1 { break }
                i += 1
            }
        }
        return words
    }

    /// cobra's "Did you mean this?" list: commands within edit distance 2 or starting with `typed`.
    static func suggestions(for typed: String, in root: CommandSpec) -> String {
        let lower = typed.lowercased()
        let names = root.subcommands.map(\.name).filter {
            editDistance($0.lowercased(), lower) <= 2 || $0.lowercased().hasPrefix(lower)
        }
        guard !names.isEmpty else { return "" }
        return "\n\nDid you mean this?\n" + names.map { "\t\($0)\n" }.joined()
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let old = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = old
            }
        }
        return row[b.count]
    }
}

/// etcdctl's usage text for a command (its help template, tab-aligned by text/tabwriter).
enum UsageText {
    static func render(_ path: CommandPath, version: String, apiVersion: String) -> String {
        let c = path.command
        let isRoot = path.chain.count == 1
        var t = "NAME:\n\t\(isRoot ? c.name : path.names.joined(separator: " ")) - \(c.short)\n\n"
        var useLine = path.commandPath + (c.arguments.isEmpty ? "" : " " + c.arguments)
        if !useLine.contains("[flags]") { useLine += " [flags]" }
        t += "USAGE:\n\t\(useLine)\n"
        if isRoot { t += "\nVERSION:\n\t\(version)\n" }
        if !c.subcommands.isEmpty {
            t += "\nAPI VERSION:\n\t\(apiVersion)\n\n\nCOMMANDS:\n"
            for (name, short) in leaves(of: c, prefix: "") { t += "\t\(name)\t\(short)\n" }
        }
        if !c.long.isEmpty {
            t += "\nDESCRIPTION:\n" + c.long.split(separator: "\n", omittingEmptySubsequences: false).map { "\t\($0)\n" }.joined()
        }
        t += "\nOPTIONS:\n" + path.localFlags.filter { !$0.cairnOnly }.map(\.usageLine).joined()
        let inherited = path.inheritedFlags
        if !inherited.isEmpty { t += "\nGLOBAL OPTIONS:\n" + inherited.map(\.usageLine).joined() }
        return TabWriter.align(t + "\n")
    }

    /// Runnable commands under `c`, named relative to it, in name order.
    static func leaves(of c: CommandSpec, prefix: String) -> [(String, String)] {
        c.subcommands.flatMap { sub -> [(String, String)] in
            sub.runnable ? [(prefix + sub.name, sub.short)] : leaves(of: sub, prefix: prefix + sub.name + " ")
        }
    }
}

/// Go's text/tabwriter as etcdctl configures it (minwidth 0, tabwidth 8, padding 1, padded with
/// tabs): tab-terminated cells of consecutive lines form columns, each as wide as its widest
/// cell plus one, rounded up to a multiple of 8 and filled with tabs.
enum TabWriter {
    static let tabWidth = 8
    static let padding = 1

    static func align(_ text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        }
        var out = ""
        var widths: [Int] = []
        format(lines, 0, lines.count, &widths, &out)
        return String(out.dropLast())  // the split added one line after the final newline
    }

    private static func format(_ lines: [[String]], _ start: Int, _ end: Int, _ widths: inout [Int], _ out: inout String) {
        let column = widths.count
        var line0 = start
        var this = start
        while this < end {
            if column >= lines[this].count - 1 {
                this += 1
                continue
            }
            write(lines, line0, this, widths, &out)
            line0 = this
            var width = 0
            while this < end, column < lines[this].count - 1 {
                width = max(width, lines[this][column].unicodeScalars.count + padding)
                this += 1
            }
            widths.append(width)
            format(lines, line0, this, &widths, &out)
            widths.removeLast()
            line0 = this
        }
        write(lines, line0, end, widths, &out)
    }

    private static func write(_ lines: [[String]], _ from: Int, _ to: Int, _ widths: [Int], _ out: inout String) {
        for i in from..<to {
            for (j, cell) in lines[i].enumerated() {
                out += cell
                if j < widths.count, j < lines[i].count - 1 {
                    let cellWidth = (widths[j] + tabWidth - 1) / tabWidth * tabWidth
                    out += String(repeating: "\t", count: (cellWidth - cell.unicodeScalars.count + tabWidth - 1) / tabWidth)
                }
            }
            out += "\n"
        }
    }
}
