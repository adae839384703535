import CairnFS

/// Where a record sits in a log.
public struct WALLocation: Equatable, Sendable, CustomStringConvertible {
    /// Segment file name.
    public var segment: String
    /// Byte offset of the record's frame within the segment.
    public var offset: Int64
    /// Ordinal of the record in the scan (0-based, counting segment headers).
    public var recordNumber: Int

    public init(segment: String, offset: Int64, recordNumber: Int) {
        self.segment = segment
        self.offset = offset
        self.recordNumber = recordNumber
    }

    public var description: String { "segment \(segment) offset \(offset) record #\(recordNumber)" }
}

/// The first problem found in a log, classified.
public struct WALProblem: Error, Equatable, Sendable, CustomStringConvertible {
    /// A torn tail is damage confined to the last, unacknowledged write;
    /// corruption is damage anywhere a durable record could be.
    public enum Kind: String, Sendable { case tornTail = "torn tail", corruption }

    public var kind: Kind
    /// The first record that failed; the valid prefix ends at its offset.
    public var location: WALLocation
    /// What is wrong.
    public var reason: String
    /// The index of the last entry in the valid prefix (nil if none).
    public var lastValidIndex: UInt64?

    public var description: String {
        let last = lastValidIndex.map { ", last valid entry index \($0)" } ?? ""
        return "\(kind.rawValue) at \(location): \(reason)\(last)"
    }
}

/// Errors of the write-ahead log.
public enum WALError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The directory holds no Cairn WAL (no segments, or a segment without the magic).
    case notAWAL(path: String, reason: String)
    /// A segment header declares a format version this build cannot read.
    case unsupportedVersion(segment: String, version: UInt32, supported: UInt32)
    /// The log's metadata names another cluster.
    case clusterMismatch(expected: UInt64, found: UInt64, segment: String)
    /// The log's metadata names another member.
    case memberMismatch(expected: UInt64, found: UInt64, segment: String)
    /// Replay was asked to start at a snapshot the log has no marker for.
    case snapshotNotFound(index: UInt64, term: UInt64)
    /// The log does not reach back to where replay must start: with no snapshot
    /// the log must begin with segment 0 at index 1; from snapshot S its oldest
    /// needed segment must start at or below S+1. The entries in between were
    /// released or deleted.
    case logStartMissing(neededIndex: UInt64, oldestSegment: String, oldestSequence: UInt64, oldestFirstIndex: UInt64)
    /// Replay was asked to start at snapshot `requested`, but the log holds a later
    /// snapshot marker that jumps past its last entry (a snapshot installed from the
    /// leader): the entries between were never in this log, so replay must start
    /// from that marker's snapshot or a later one.
    case snapshotSuperseded(requested: UInt64, marker: WALSnapshotMarker, lastEntryIndex: UInt64)
    /// Replay produced entries that do not run contiguously from the snapshot
    /// index + 1 (a defect or an undetected inconsistency; never returned to Raft).
    case replayNotContiguous(expected: UInt64, found: UInt64)
    /// The last hard state commits an index beyond the log's last index (entries
    /// Raft counted as committed are missing); refused at open.
    case hardStateBeyondLog(commit: UInt64, lastIndex: UInt64)
    /// A record is larger than the reader accepts (`WALFormat.maxPayloadBytes`):
    /// refused before it is written, because replay would read it back as damage.
    case recordTooLarge(payloadBytes: Int, maxPayloadBytes: Int)
    /// The log is damaged (torn tail or corruption).
    case damaged(WALProblem)
    /// A file-system call failed.
    case io(FSError)
    /// The WAL stopped accepting appends after a failed write or sync; nothing
    /// after the failure was acknowledged.
    case stopped(reason: String)
    /// The WAL was closed.
    case closed
    /// The directory is locked by another process.
    case locked(String)
    /// The caller passed something invalid.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .notAWAL(let path, let reason): return "not a Cairn WAL: \(path): \(reason)"
        case .unsupportedVersion(let segment, let version, let supported):
            return "unsupported WAL format version \(version) in segment \(segment) (this build reads version \(supported))"
        case .clusterMismatch(let expected, let found, let segment):
            return "WAL belongs to another cluster: segment \(segment) has cluster id \(hexID(found)), expected \(hexID(expected))"
        case .memberMismatch(let expected, let found, let segment):
            return "WAL belongs to another member: segment \(segment) has member id \(hexID(found)), expected \(hexID(expected))"
        case .snapshotNotFound(let index, let term):
            return "WAL has no snapshot marker for index \(index) term \(term)"
        case .logStartMissing(let needed, let segment, let sequence, let first):
            var missing = "entries \(needed)…\(first &- 1) are missing"
            if needed == 1 && first == 1 && sequence != 0 { missing = "segments 0…\(sequence - 1) are missing" }
            return "WAL is missing its start: replay needs entry \(needed) onward, but the oldest segment \(segment) "
                + "(sequence \(sequence)) starts at index \(first); \(missing) (released or deleted); "
                + "open with the snapshot the log was released against"
        case .snapshotSuperseded(let requested, let marker, let last):
            return "WAL cannot replay from snapshot index \(requested): the log holds a snapshot marker at index \(marker.index) "
                + "term \(marker.term) that jumps past its last entry \(last) (entries \(last &+ 1)…\(marker.index) were never "
                + "in this log); open with snapshot \(marker.index) or later"
        case .replayNotContiguous(let expected, let found):
            return "WAL replay is not contiguous: expected entry \(expected), found entry \(found)"
        case .hardStateBeyondLog(let commit, let last):
            return "WAL hard state commits index \(commit), but the log ends at index \(last): "
                + "committed entries \(last &+ 1)…\(commit) are missing"
        case .recordTooLarge(let bytes, let max):
            return "record payload of \(bytes) bytes exceeds the largest record the WAL reader accepts (\(max) bytes)"
        case .damaged(let problem): return "WAL damaged: \(problem)"
        case .io(let error): return "WAL I/O error: \(error)"
        case .stopped(let reason): return "WAL stopped accepting appends: \(reason)"
        case .closed: return "WAL is closed"
        case .locked(let message): return message
        case .invalidArgument(let message): return "invalid argument: \(message)"
        }
    }
}

/// A 64-bit id as 16 hex digits, the way etcd prints member ids.
public func hexID(_ v: UInt64) -> String { WALFormat.hex16(v) }
