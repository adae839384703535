import CairnFS

#if canImport(Glibc)
import Glibc
#endif

/// Offline repairs of a WAL directory. Every change keeps a copy of what it changes.
public enum WALRepair {
    /// A path next to `path` ending in `.broken` (then `.broken.1`, …) that does not exist yet.
    public static func asidePath(for path: String, fileSystem: FileSystem) -> String {
        var candidate = path + ".broken"
        var n = 1
        while fileSystem.exists(candidate) {
            candidate = path + ".broken.\(n)"
            n += 1
        }
        return candidate
    }

    /// What a truncation did.
    public struct Outcome: Sendable, Equatable {
        /// Copies of modified segments and segments moved aside.
        public var keptCopies: [String] = []
        /// The segment cut and the offset it was cut at.
        public var truncatedSegment: String?
        public var truncatedAtOffset: Int64 = 0
        /// Segments moved aside whole.
        public var movedAside: [String] = []
    }

    /// Cuts the log at the end of its valid prefix as `scan` found it: copies the
    /// damaged segment aside, truncates it there (keeping its preallocated size as
    /// zeros), moves every later segment aside, and fsyncs the directory.
    public static func truncate(
        directory: String, at scan: WALScanResult, fileSystem: FileSystem = .live
    ) throws(WALError) -> Outcome {
        var outcome = Outcome()
        guard scan.problem != nil else { return outcome }
        let segIndex = scan.validEndSegment
        let segment = scan.segments[segIndex]
        let path = directory + "/" + segment.name
        do {
            // Later segments: move aside whole (rename keeps the bytes).
            for later in scan.segments[(segIndex + 1)...] {
                let from = directory + "/" + later.name
                let to = asidePath(for: from, fileSystem: fileSystem)
                try fileSystem.rename(from, to)
                outcome.movedAside.append(later.name)
                outcome.keptCopies.append(to)
            }
            if scan.validEndOffset == 0 && segIndex > 0 {
                // Nothing valid in this segment, not even its header: move it aside whole.
                let to = asidePath(for: path, fileSystem: fileSystem)
                try fileSystem.rename(path, to)
                outcome.movedAside.append(segment.name)
                outcome.keptCopies.append(to)
            } else {
                let copy = asidePath(for: path, fileSystem: fileSystem)
                try fileSystem.copyFile(path, to: copy)
                outcome.keptCopies.append(copy)
                let file = try fileSystem.open(path, flags: O_RDWR)
                defer { file.close() }
                let size = try file.size()
                try file.truncate(to: scan.validEndOffset)
                if size > scan.validEndOffset {
                    try file.truncate(to: size)  // the cut-off range reads as zeros again
                }
                try file.fsync()
                outcome.truncatedSegment = segment.name
                outcome.truncatedAtOffset = scan.validEndOffset
            }
            try fileSystem.fsyncDirectory(directory)
        } catch {
            throw .io(error)
        }
        return outcome
    }

    /// The entry indexes stored after the valid prefix that a truncation would drop:
    /// every frame that is intact on its own from the damage to the end of the log,
    /// and every index between the last valid entry and the highest of those (the
    /// damaged frames themselves, whose index cannot be read but which a
    /// contiguous log must have held).
    public static func indexesAfterDamage(
        directory: String, scan: WALScanResult, fileSystem: FileSystem = .live
    ) throws(WALError) -> [UInt64] {
        guard scan.problem != nil else { return [] }
        var indexes: [UInt64] = []
        for segIndex in scan.validEndSegment..<scan.segments.count {
            let bytes: [UInt8]
            do { bytes = try fileSystem.readFile(directory + "/" + scan.segments[segIndex].name) } catch { throw .io(error) }
            let start = segIndex == scan.validEndSegment ? Int(scan.validEndOffset) : 0
            bytes.withUnsafeBytes { raw in
                var y = start
                while y + WALFormat.frameHeaderBytes <= raw.count {
                    if let h = frameSelfValid(raw, at: y) {
                        let len = Int(h.payloadLength)
                        if h.typeCode == RecordType.entry.rawValue, len >= 24 {
                            indexes.append(loadLE(raw.baseAddress! + y + WALFormat.frameHeaderBytes, 8))
                        }
                        y += WALFormat.frameBytes(payloadBytes: len)
                    } else {
                        y += 8
                    }
                }
            }
        }
        if let highest = indexes.max(), highest > scan.lastIndex {
            indexes += Array((scan.lastIndex + 1)...highest)
        }
        return Array(Set(indexes)).sorted()
    }

    /// Formats sorted-or-not indexes as compact ranges: "5-9, 12".
    public static func ranges(_ indexes: [UInt64]) -> String {
        let sorted = Array(Set(indexes)).sorted()
        var parts: [String] = []
        var i = 0
        while i < sorted.count {
            var j = i
            while j + 1 < sorted.count && sorted[j + 1] == sorted[j] + 1 { j += 1 }
            parts.append(i == j ? "\(sorted[i])" : "\(sorted[i])-\(sorted[j])")
            i = j + 1
        }
        return parts.joined(separator: ", ")
    }
}
