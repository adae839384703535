/// The kind of a Raft log entry, as raftpb.EntryType numbers it.
public struct WALEntryType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// A normal entry (etcd: an InternalRaftRequest).
    public static let normal = WALEntryType(rawValue: 0)
    /// A membership change (etcd: raftpb.ConfChange).
    public static let confChange = WALEntryType(rawValue: 1)
    /// A joint-consensus membership change (raftpb.ConfChangeV2).
    public static let confChangeV2 = WALEntryType(rawValue: 2)

    public var description: String {
        switch rawValue {
        case 0: return "normal"
        case 1: return "conf-change"
        case 2: return "conf-change-v2"
        default: return "type-\(rawValue)"
        }
    }

    /// Parses the names `description` prints (and the raw number).
    public init?(name: String) {
        switch name {
        case "normal": self = .normal
        case "conf-change", "confchange": self = .confChange
        case "conf-change-v2", "confchangev2": self = .confChangeV2
        default:
            guard let n = UInt8(name) else { return nil }
            self.init(rawValue: n)
        }
    }
}

/// One Raft log entry.
public struct WALEntry: Equatable, Sendable {
    public var term: UInt64
    public var index: UInt64
    public var type: WALEntryType
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, type: WALEntryType = .normal, data: [UInt8]) {
        self.term = term
        self.index = index
        self.type = type
        self.data = data
    }
}

/// Raft's persistent vote state.
public struct WALHardState: Equatable, Sendable {
    public var term: UInt64
    public var vote: UInt64
    public var commit: UInt64

    public init(term: UInt64, vote: UInt64, commit: UInt64) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// Records that a snapshot at (index, term) exists, so replay can start there.
public struct WALSnapshotMarker: Equatable, Sendable {
    public var index: UInt64
    public var term: UInt64

    public init(index: UInt64, term: UInt64) {
        self.index = index
        self.term = term
    }
}

/// Which cluster and member a log belongs to.
public struct WALMetadata: Equatable, Sendable {
    public var clusterID: UInt64
    public var memberID: UInt64

    public init(clusterID: UInt64, memberID: UInt64) {
        self.clusterID = clusterID
        self.memberID = memberID
    }
}

/// A record an appender hands to the WAL.
public enum WALRecord: Equatable, Sendable {
    case entry(WALEntry)
    case hardState(WALHardState)
    case snapshot(WALSnapshotMarker)
    case metadata(WALMetadata)
}

/// The header record every segment begins with.
public struct WALSegmentHeader: Equatable, Sendable {
    /// On-disk format version.
    public var formatVersion: UInt32
    /// Segment sequence number (0, 1, 2, …).
    public var sequence: UInt64
    /// Index the next entry had when the segment was created.
    public var firstIndex: UInt64
    /// The chain CRC of the last record of the previous segment (0 for the first).
    public var previousChainCRC: UInt32
}

/// On-disk record type codes.
enum RecordType: UInt8 {
    case segmentHeader = 1
    case metadata = 2
    case entry = 3
    case hardState = 4
    case snapshotMarker = 5
}

/// Constants of the on-disk format (see docs/wal-format.md).
public enum WALFormat {
    /// The current format version written in segment headers.
    public static let version: UInt32 = 1
    /// The 8 magic bytes that open every segment header's payload.
    public static let magic: [UInt8] = Array("CAIRNWAL".utf8)
    /// Bytes of the fixed frame header before each payload.
    public static let frameHeaderBytes = 24
    /// Payload bytes of a segment header record.
    static let segmentHeaderPayloadBytes = 40
    /// The largest payload accepted (larger lengths are treated as damage by the
    /// reader; appends of larger records are refused with `WALError.recordTooLarge`).
    public static let maxPayloadBytes = 512 << 20
    /// Segment file name suffix.
    public static let segmentSuffix = ".wal"

    /// `<sequence>-<firstIndex>.wal`, both as 16 lowercase hex digits.
    public static func segmentName(sequence: UInt64, firstIndex: UInt64) -> String {
        hex16(sequence) + "-" + hex16(firstIndex) + segmentSuffix
    }

    /// Parses a segment file name into (sequence, firstIndex).
    public static func parseSegmentName(_ name: String) -> (sequence: UInt64, firstIndex: UInt64)? {
        let u = Array(name.utf8)
        guard u.count == 16 + 1 + 16 + 4, name.hasSuffix(segmentSuffix), u[16] == UInt8(ascii: "-") else { return nil }
        guard let s = parseHex(u[0..<16]), let f = parseHex(u[17..<33]) else { return nil }
        return (s, f)
    }

    static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    static func parseHex(_ bytes: ArraySlice<UInt8>) -> UInt64? {
        var v: UInt64 = 0
        for b in bytes {
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            default: return nil
            }
            v = v << 4 | UInt64(d)
        }
        return v
    }

    @inline(__always)
    static func align8(_ n: Int) -> Int { (n + 7) & ~7 }

    /// Bytes a record with `payloadBytes` of payload occupies on disk.
    @inline(__always)
    public static func frameBytes(payloadBytes: Int) -> Int { align8(frameHeaderBytes + payloadBytes) }
}

// MARK: - Payload encoding

extension WALRecord {
    var recordType: RecordType {
        switch self {
        case .entry: return .entry
        case .hardState: return .hardState
        case .snapshot: return .snapshotMarker
        case .metadata: return .metadata
        }
    }

    var payloadBytes: Int {
        switch self {
        case .entry(let e): return 24 + e.data.count
        case .hardState: return 24
        case .snapshot: return 16
        case .metadata: return 16
        }
    }

    /// Writes the payload at `p` (exactly `payloadBytes` bytes).
    func encodePayload(into p: UnsafeMutableRawPointer) {
        switch self {
        case .entry(let e):
            storeLE(e.term, p, 0)
            storeLE(e.index, p, 8)
            storeLE(UInt64(e.type.rawValue), p, 16)
            e.data.withUnsafeBytes { d in
                if d.count > 0 { (p + 24).copyMemory(from: d.baseAddress!, byteCount: d.count) }
            }
        case .hardState(let h):
            storeLE(h.term, p, 0)
            storeLE(h.vote, p, 8)
            storeLE(h.commit, p, 16)
        case .snapshot(let s):
            storeLE(s.index, p, 0)
            storeLE(s.term, p, 8)
        case .metadata(let m):
            storeLE(m.clusterID, p, 0)
            storeLE(m.memberID, p, 8)
        }
    }
}

@inline(__always)
func storeLE(_ v: UInt64, _ p: UnsafeMutableRawPointer, _ offset: Int) {
    p.storeBytes(of: v.littleEndian, toByteOffset: offset, as: UInt64.self)
}

@inline(__always)
func storeLE32(_ v: UInt32, _ p: UnsafeMutableRawPointer, _ offset: Int) {
    p.storeBytes(of: v.littleEndian, toByteOffset: offset, as: UInt32.self)
}

@inline(__always)
func loadLE(_ p: UnsafeRawPointer, _ offset: Int) -> UInt64 {
    UInt64(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
}

@inline(__always)
func loadLE32(_ p: UnsafeRawPointer, _ offset: Int) -> UInt32 {
    UInt32(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}

func encodeSegmentHeader(_ h: WALSegmentHeader, into p: UnsafeMutableRawPointer) {
    WALFormat.magic.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: 8) }
    storeLE32(h.formatVersion, p, 8)
    storeLE32(0, p, 12)
    storeLE(h.sequence, p, 16)
    storeLE(h.firstIndex, p, 24)
    storeLE32(h.previousChainCRC, p, 32)
    storeLE32(0, p, 36)
}

/// A decoded record as the scanner sees it.
public enum ScannedRecordBody: Equatable, Sendable {
    case segmentHeader(WALSegmentHeader)
    case record(WALRecord)
}

/// Decodes a payload of a given type; nil when its size or content is malformed.
func decodePayload(type: RecordType, _ p: UnsafeRawBufferPointer) -> ScannedRecordBody? {
    let b = p.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
    switch type {
    case .segmentHeader:
        guard p.count == WALFormat.segmentHeaderPayloadBytes else { return nil }
        guard Array(p[0..<8]) == WALFormat.magic else { return nil }
        return .segmentHeader(
            WALSegmentHeader(
                formatVersion: loadLE32(b, 8), sequence: loadLE(b, 16), firstIndex: loadLE(b, 24),
                previousChainCRC: loadLE32(b, 32)))
    case .metadata:
        guard p.count == 16 else { return nil }
        return .record(.metadata(WALMetadata(clusterID: loadLE(b, 0), memberID: loadLE(b, 8))))
    case .entry:
        guard p.count >= 24 else { return nil }
        let typeWord = loadLE(b, 16)
        guard typeWord <= 255 else { return nil }
        let data = Array(p[24...])
        return .record(
            .entry(WALEntry(term: loadLE(b, 0), index: loadLE(b, 8), type: WALEntryType(rawValue: UInt8(typeWord)), data: data)))
    case .hardState:
        guard p.count == 24 else { return nil }
        return .record(.hardState(WALHardState(term: loadLE(b, 0), vote: loadLE(b, 8), commit: loadLE(b, 16))))
    case .snapshotMarker:
        guard p.count == 16 else { return nil }
        return .record(.snapshot(WALSnapshotMarker(index: loadLE(b, 0), term: loadLE(b, 8))))
    }
}
