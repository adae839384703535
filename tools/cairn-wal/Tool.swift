import ArgumentParser
import CairnFS
import CairnSnapshot
import CairnWAL

#if canImport(Glibc)
import Glibc
#endif

/// Exit statuses of cairn-wal.
enum Status {
    static let clean: Int32 = 0
    static let tornTail: Int32 = 1
    static let corruption: Int32 = 2
    /// Not a WAL / snapshot, unknown version, locked directory, I/O error.
    static let refused: Int32 = 3
}

@main
struct CairnWALTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-wal",
        abstract: "Inspect, verify and repair Cairn write-ahead logs and snapshots (offline).",
        discussion: """
            Exit status: 0 clean, 1 torn tail, 2 corruption, 3 refused (not a Cairn WAL or snapshot, \
            unsupported version, directory locked by a running server, I/O error).
            """,
        subcommands: [Inspect.self, Verify.self, Repair.self, SnapshotCommand.self])
}

func stderrLine(_ s: String) {
    var bytes = Array((s + "\n").utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

/// Takes the data-directory lock the server also takes, or exits 3 naming the holder.
func lockDirectory(_ dir: String) throws -> DataDirLock {
    guard FileSystem.live.isDirectory(dir) else {
        stderrLine("cairn-wal: not a Cairn WAL: \(dir): no such directory")
        throw ExitCode(Status.refused)
    }
    // Do not leave a LOCK file in a directory that is not a WAL at all.
    do {
        _ = try WALScanner(directory: dir).listSegments()
    } catch {
        stderrLine("cairn-wal: \(error)")
        throw ExitCode(Status.refused)
    }
    // A server holds the LOCK of its data dir (`<data-dir>/LOCK`), and the WAL
    // lives below it (`<data-dir>/member/wal`): refuse while any enclosing
    // directory's existing LOCK is held too. Held until the process exits.
    var components: [Substring] = []
    if let real = realpath(dir, nil) {
        components = String(cString: real).split(separator: "/")
        free(real)
    }
    for _ in 0..<3 {
        guard components.count > 1 else { break }
        components.removeLast()
        let ancestor = "/" + components.joined(separator: "/")
        guard access(ancestor + "/" + DataDirLock.fileName, F_OK) == 0 else { continue }
        do {
            heldAncestorLocks.append(try DataDirLock.acquire(directory: ancestor, owner: "cairn-wal"))
        } catch {
            stderrLine("cairn-wal: refusing to touch \(dir): \(error)")
            throw ExitCode(Status.refused)
        }
    }
    do {
        return try DataDirLock.acquire(directory: dir, owner: "cairn-wal")
    } catch {
        stderrLine("cairn-wal: refusing to touch \(dir): \(error)")
        throw ExitCode(Status.refused)
    }
}

/// Locks of enclosing data dirs taken by `lockDirectory`, kept until exit.
nonisolated(unsafe) var heldAncestorLocks: [DataDirLock] = []

/// A progress bar on stderr for large logs (only when stderr is a terminal or forced).
struct ProgressBar {
    let enabled: Bool
    func update(_ done: Int64, _ total: Int64) {
        guard enabled, total > 0 else { return }
        let width = 30
        let filled = Int(Double(width) * Double(done) / Double(total))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        var bytes = Array("\r[\(bar)] \(done >> 20)/\(total >> 20) MiB".utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        if done >= total { stderrLine("") }
    }

    static func make(forced: Bool, directory: String) -> ProgressBar {
        var total: Int64 = 0
        if let names = try? FileSystem.live.listDirectory(directory) {
            for n in names where n.hasSuffix(".wal") { total += (try? FileSystem.live.fileSize(directory + "/" + n)) ?? 0 }
        }
        return ProgressBar(enabled: forced || (isatty(2) == 1 && total >= 256 << 20))
    }
}

func scanOrExit(_ dir: String, progress: ProgressBar, visit: (WALLocation, ScannedRecordBody) -> Void = { _, _ in }) throws -> WALScanResult {
    do {
        return try WALScanner(directory: dir).scan(progress: { progress.update($0, $1) }, visit: visit)
    } catch {
        stderrLine("cairn-wal: \(error)")
        throw ExitCode(Status.refused)
    }
}

func statusLine(_ scan: WALScanResult) -> String {
    if let p = scan.problem { return "status: \(p)" }
    return "status: clean"
}

func statusCode(for scan: WALScanResult) -> Int32 {
    switch scan.problem?.kind {
    case nil: return Status.clean
    case .tornTail: return Status.tornTail
    case .corruption: return Status.corruption
    }
}

// MARK: inspect

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print metadata, hard states, snapshot markers and one line per entry.")

    @Argument(help: "The WAL directory.") var dir: String
    @Option(help: "First entry index to print.") var startIndex: UInt64?
    @Option(help: "Last entry index to print.") var endIndex: UInt64?
    @Option(help: "Only entries of this type: normal, conf-change, conf-change-v2.") var entryType: String?
    @Flag(help: "One JSON object per line.") var json = false
    @Flag(help: "Show the progress bar even when stderr is not a terminal.") var progress = false

    func run() throws {
        var typeFilter: WALEntryType?
        if let entryType {
            guard let t = WALEntryType(name: entryType) else {
                throw ValidationError("unknown entry type \"\(entryType)\" (normal, conf-change, conf-change-v2)")
            }
            typeFilter = t
        }
        let lock = try lockDirectory(dir)
        defer { lock.unlock() }
        let bar = ProgressBar.make(forced: progress, directory: dir)
        var printed = 0
        let scan = try scanOrExit(dir, progress: bar) { loc, body in
            var line: String?
            switch body {
            case .segmentHeader(let h):
                line = json
                    ? jsonObject([("kind", .s("segment")), ("segment", .s(loc.segment)), ("sequence", .n(h.sequence)), ("first_index", .n(h.firstIndex)), ("format_version", .n(UInt64(h.formatVersion))), ("prev_chain_crc", .n(UInt64(h.previousChainCRC)))])
                    : "segment \(loc.segment) seq=\(h.sequence) first-index=\(h.firstIndex) version=\(h.formatVersion) prev-chain=\(hex8(h.previousChainCRC))"
            case .record(.metadata(let m)):
                line = json
                    ? jsonObject([("kind", .s("metadata")), ("cluster_id", .s(hexID(m.clusterID))), ("member_id", .s(hexID(m.memberID))), ("segment", .s(loc.segment)), ("offset", .n(UInt64(loc.offset)))])
                    : "  metadata cluster=\(hexID(m.clusterID)) member=\(hexID(m.memberID))"
            case .record(.hardState(let h)):
                line = json
                    ? jsonObject([("kind", .s("hardstate")), ("term", .n(h.term)), ("vote", .s(hexID(h.vote))), ("commit", .n(h.commit)), ("segment", .s(loc.segment)), ("offset", .n(UInt64(loc.offset)))])
                    : "  hardstate term=\(h.term) vote=\(hexID(h.vote)) commit=\(h.commit)"
            case .record(.snapshot(let s)):
                line = json
                    ? jsonObject([("kind", .s("snapshot")), ("index", .n(s.index)), ("term", .n(s.term)), ("segment", .s(loc.segment)), ("offset", .n(UInt64(loc.offset)))])
                    : "  snapshot index=\(s.index) term=\(s.term)"
            case .record(.entry(let e)):
                if let s = startIndex, e.index < s { break }
                if let end = endIndex, e.index > end { break }
                if let t = typeFilter, e.type != t { break }
                let summary = summarize(e)
                line = json
                    ? jsonObject([("kind", .s("entry")), ("term", .n(e.term)), ("index", .n(e.index)), ("type", .s(e.type.description)), ("size", .n(UInt64(e.data.count))), ("summary", .s(summary)), ("segment", .s(loc.segment)), ("offset", .n(UInt64(loc.offset)))])
                    : "  entry term=\(e.term) index=\(e.index) type=\(e.type) \(summary)"
            }
            if let line {
                print(line)
                printed += 1
            }
        }
        if json {
            var fields: [(String, JSONValue)] = [("kind", .s("summary")), ("records", .n(UInt64(scan.recordCount))), ("entries", .n(UInt64(scan.entryCount))), ("last_index", .n(scan.lastIndex)), ("log_bytes", .n(UInt64(scan.logBytes)))]
            if let p = scan.problem {
                fields += [("status", .s(p.kind == .tornTail ? "torn-tail" : "corruption")), ("problem_segment", .s(p.location.segment)), ("problem_offset", .n(UInt64(p.location.offset))), ("problem_record", .n(UInt64(p.location.recordNumber))), ("problem", .s(p.reason))]
            } else {
                fields.append(("status", .s("clean")))
            }
            print(jsonObject(fields))
        } else {
            print("records=\(scan.recordCount) entries=\(scan.entryCount) last-index=\(scan.lastIndex) log-bytes=\(scan.logBytes) segments=\(scan.segments.count)")
            print(statusLine(scan))
        }
        if scan.problem != nil { throw ExitCode(statusCode(for: scan)) }
    }
}

enum JSONValue {
    case s(String)
    case n(UInt64)
}

func jsonEscape(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if u.value < 0x20 {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

func jsonObject(_ fields: [(String, JSONValue)]) -> String {
    "{" + fields.map { k, v in
        switch v {
        case .s(let s): return jsonEscape(k) + ":" + jsonEscape(s)
        case .n(let n): return jsonEscape(k) + ":" + String(n)
        }
    }.joined(separator: ",") + "}"
}

// MARK: verify

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every CRC, the chain, index continuity and term monotonicity.",
        discussion: "Exit 0 when clean, 1 for a torn tail, 2 for corruption, 3 when refused.")

    @Argument(help: "The WAL directory.") var dir: String
    @Flag(help: "Show the progress bar even when stderr is not a terminal.") var progress = false

    func run() throws {
        let lock = try lockDirectory(dir)
        defer { lock.unlock() }
        let scan = try scanOrExit(dir, progress: ProgressBar.make(forced: progress, directory: dir))
        print("segments=\(scan.segments.count) records=\(scan.recordCount) entries=\(scan.entryCount) last-index=\(scan.lastIndex) log-bytes=\(scan.logBytes)")
        if let p = scan.problem {
            print("\(p.kind == .tornTail ? "TORN TAIL" : "CORRUPTION"): segment \(p.location.segment) byte offset \(p.location.offset) record #\(p.location.recordNumber): \(p.reason)")
            if let last = p.lastValidIndex { print("last valid entry index: \(last)") }
            throw ExitCode(statusCode(for: scan))
        }
        print("status: clean")
    }
}

// MARK: repair

struct Repair: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cut a torn tail (keeping a copy of the segment); refuses mid-log corruption unless told.")

    @Argument(help: "The WAL directory.") var dir: String
    @Flag(help: "Also cut at mid-log corruption, dropping every record after it (listed first).")
    var truncateAtCorruption = false

    func run() throws {
        let lock = try lockDirectory(dir)
        defer { lock.unlock() }
        let scan = try scanOrExit(dir, progress: ProgressBar(enabled: false))
        guard let problem = scan.problem else {
            print("clean: nothing to repair (last index \(scan.lastIndex))")
            return
        }
        print("\(problem.kind == .tornTail ? "torn tail" : "corruption") at segment \(problem.location.segment) byte offset \(problem.location.offset) record #\(problem.location.recordNumber): \(problem.reason)")
        let lost: [UInt64]
        do { lost = try WALRepair.indexesAfterDamage(directory: dir, scan: scan) } catch {
            stderrLine("cairn-wal: \(error)")
            throw ExitCode(Status.refused)
        }
        if problem.kind == .corruption {
            guard truncateAtCorruption else {
                print("refusing to cut the log at mid-log corruption: committed records may follow it.")
                print("entries that a cut would drop: \(lost.isEmpty ? "none" : WALRepair.ranges(lost)) (\(Set(lost).count) entries)")
                print("rerun with --truncate-at-corruption to cut there anyway (a copy of every changed segment is kept).")
                throw ExitCode(Status.corruption)
            }
            print("WILL LOSE entries: \(lost.isEmpty ? "none" : WALRepair.ranges(lost)) (\(Set(lost).count) entries); later segments: \(scan.segments.count - scan.validEndSegment - 1)")
        } else if !lost.isEmpty {
            print("torn tail holds partial entries: \(WALRepair.ranges(lost)) (never acknowledged)")
        }
        let outcome: WALRepair.Outcome
        do { outcome = try WALRepair.truncate(directory: dir, at: scan) } catch {
            stderrLine("cairn-wal: repair failed: \(error)")
            throw ExitCode(Status.refused)
        }
        for copy in outcome.keptCopies { print("kept copy: \(copy)") }
        if let seg = outcome.truncatedSegment { print("truncated \(seg) at byte offset \(outcome.truncatedAtOffset)") }
        for seg in outcome.movedAside { print("moved aside: \(seg)") }
        let after = try scanOrExit(dir, progress: ProgressBar(enabled: false))
        print("after repair: records=\(after.recordCount) entries=\(after.entryCount) last-index=\(after.lastIndex); \(statusLine(after))")
        if after.problem != nil { throw ExitCode(statusCode(for: after)) }
    }
}

// MARK: snapshot

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Inspect snapshot files.", subcommands: [SnapshotInfo.self, SnapshotVerify.self])
}

func openSnapshot(_ file: String) throws -> SnapshotReader {
    do { return try SnapshotReader(path: file) } catch {
        stderrLine("cairn-wal: \(error)")
        switch error {
        case .corrupt: throw ExitCode(Status.corruption)
        default: throw ExitCode(Status.refused)
        }
    }
}

func printHeader(_ h: SnapshotHeader, _ file: String) {
    print("snapshot \(file)")
    print("  format-version=\(h.formatVersion) term=\(h.term) index=\(h.index)")
    print("  records=\(h.recordCount) uncompressed-bytes=\(h.uncompressedBytes) compressed-bytes=\(h.compressedBytes) zstd-level=\(h.zstdLevel)")
    print("  content-crc32c=0x\(String(h.contentCRC32C, radix: 16)) membership-bytes=\(h.membership.count)")
}

struct SnapshotInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Print a snapshot's header.")
    @Argument var file: String
    func run() throws {
        let r = try openSnapshot(file)
        defer { r.close() }
        printHeader(r.header, file)
    }
}

struct SnapshotVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Decompress a snapshot and check its structure, sizes and checksum.")
    @Argument var file: String
    func run() throws {
        let r = try openSnapshot(file)
        defer { r.close() }
        var tables: [String: Int] = [:]
        var current = ""
        do {
            try r.stream { item in
                switch item {
                case .table(let name):
                    current = name
                    tables[name] = 0
                case .keyValue: tables[current, default: 0] += 1
                }
            }
        } catch {
            print("CORRUPT: \(error)")
            throw ExitCode(Status.corruption)
        }
        printHeader(r.header, file)
        for (name, n) in tables.sorted(by: { $0.key < $1.key }) { print("  table \(name): \(n) entries") }
        print("status: clean")
    }
}

/// 0x-prefixed 8 hex digits.
func hex8(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
}
