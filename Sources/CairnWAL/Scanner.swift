import CairnFS

#if canImport(Glibc)
import Glibc
#endif

/// One segment file found in a WAL directory.
public struct WALSegmentFile: Equatable, Sendable {
    public var name: String
    public var sequence: UInt64
    public var firstIndex: UInt64
}

/// What a scan of a log found.
public struct WALScanResult: Sendable {
    /// The segments scanned, in order.
    public var segments: [WALSegmentFile] = []
    /// The first problem, or nil when the whole log is valid.
    public var problem: WALProblem?
    /// Segment (index into `segments`) and offset where the valid prefix ends.
    public var validEndSegment = 0
    public var validEndOffset: Int64 = 0
    /// Offset (in the segment of the last valid record) where that record's write
    /// batch began: the last batch of the valid prefix is `tailBatchStart..<validEndOffset`.
    public var tailBatchStart: Int64 = 0
    /// The chain CRC after the last valid record.
    public var chainCRC: UInt32 = 0
    /// The log's metadata (from the first metadata record).
    public var metadata: WALMetadata?
    /// The last hard state in the valid prefix.
    public var hardState: WALHardState?
    /// Last entry index in the valid prefix (after overwrites), or firstIndex - 1.
    public var lastIndex: UInt64 = 0
    /// Counts over the valid prefix.
    public var recordCount = 0
    public var entryCount = 0
    /// Bytes of valid frames (the log's size, without preallocated space).
    public var logBytes: Int64 = 0
    /// Snapshot markers seen, in order.
    public var snapshotMarkers: [WALSnapshotMarker] = []
}

/// Reads, verifies and classifies a WAL directory without modifying it.
public struct WALScanner {
    public let directory: String
    public let fileSystem: FileSystem

    public init(directory: String, fileSystem: FileSystem = .live) {
        self.directory = directory
        self.fileSystem = fileSystem
    }

    /// The segment files of the directory, sorted by sequence.
    public func listSegments() throws(WALError) -> [WALSegmentFile] {
        guard fileSystem.isDirectory(directory) else {
            throw .notAWAL(path: directory, reason: "no such directory")
        }
        let names: [String]
        do { names = try fileSystem.listDirectory(directory) } catch { throw .io(error) }
        var segments: [WALSegmentFile] = []
        for name in names where name.hasSuffix(WALFormat.segmentSuffix) {
            guard let parsed = WALFormat.parseSegmentName(name) else {
                throw .notAWAL(path: directory + "/" + name, reason: "segment file name is not <16 hex>-<16 hex>.wal")
            }
            segments.append(WALSegmentFile(name: name, sequence: parsed.sequence, firstIndex: parsed.firstIndex))
        }
        segments.sort { $0.sequence < $1.sequence }
        if segments.isEmpty { throw .notAWAL(path: directory, reason: "no segment files (*.wal)") }
        return segments
    }

    /// Scans the log from the segment that replay from `snapshotIndex` needs (the
    /// first segment when nil), verifying every CRC, the chain, index continuity
    /// and term monotonicity, calling `visit` for each valid record in order.
    ///
    /// Damage is not thrown: it ends the scan and is reported in `problem`.
    /// Input that is not a Cairn WAL, or of an unknown version, is thrown.
    public func scan(
        fromSnapshotIndex snapshotIndex: UInt64? = nil,
        progress: ((_ doneBytes: Int64, _ totalBytes: Int64) -> Void)? = nil,
        visit: (WALLocation, ScannedRecordBody) -> Void = { _, _ in }
    ) throws(WALError) -> WALScanResult {
        var all = try listSegments()
        all = Array(all[Self.startSegment(all, snapshotIndex: snapshotIndex)...])
        var result = WALScanResult()
        result.segments = all
        var totalBytes: Int64 = 0
        for s in all { totalBytes += (try? fileSystem.fileSize(directory + "/" + s.name)) ?? 0 }
        var doneBytes: Int64 = 0

        var buffer: [UInt8] = []
        var state = ScanState(baseIndex: all[0].firstIndex)
        result.lastIndex = all[0].firstIndex &- 1
        for (segIndex, segment) in all.enumerated() {
            let isLast = segIndex == all.count - 1
            let path = directory + "/" + segment.name
            if segIndex > 0 && segment.sequence != all[segIndex - 1].sequence + 1 {
                result.problem = WALProblem(
                    kind: .corruption,
                    location: WALLocation(segment: segment.name, offset: 0, recordNumber: result.recordCount),
                    reason: "segment sequence gap: \(all[segIndex - 1].name) is followed by \(segment.name); "
                        + "segment(s) \(all[segIndex - 1].sequence + 1)…\(segment.sequence - 1) are missing",
                    lastValidIndex: state.lastEntryIndex)
                return result
            }
            // One buffer serves every segment: no fresh zero-filled pages per segment.
            let count: Int
            do {
                let file = try fileSystem.open(path, flags: O_RDONLY)
                defer { file.close() }
                let size = Int(try file.size())
                if buffer.count < size {
                    buffer = [UInt8](unsafeUninitializedCapacity: size) { _, n in n = size }
                }
                let read: Result<Int, FSError> = buffer.withUnsafeMutableBytes { raw in
                    do throws(FSError) {
                        return .success(try file.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<size]), at: 0))
                    } catch { return .failure(error) }
                }
                count = try read.get()
            } catch { throw .io(error) }
            let scanned: Result<WALProblem?, WALError> = buffer.withUnsafeBytes { whole in
                let raw = UnsafeRawBufferPointer(rebasing: whole[0..<count])
                do throws(WALError) {
                    return .success(
                        try scanSegment(
                            raw, segment: segment, isFirst: segIndex == 0, isLast: isLast, state: &state,
                            result: &result, visit: visit))
                } catch { return .failure(error) }
            }
            let outcome = try scanned.get()
            doneBytes += Int64(count)
            progress?(doneBytes, totalBytes)
            if let problem = outcome {
                result.problem = problem
                result.validEndSegment = segIndex
                result.validEndOffset = problem.location.offset
                return result
            }
            result.validEndSegment = segIndex
            result.validEndOffset = state.segmentEnd
        }
        return result
    }

    /// Position in `segments` where replay from `snapshotIndex` starts (0 when nil).
    ///
    /// The last segment whose first index is ≤ snapshotIndex: it was created before
    /// entry `snapshotIndex` was written, so it or a later one holds the marker. When
    /// no segment qualifies this is 0, and the log does not reach back far enough:
    /// `WAL.open` refuses that (`WALError.logStartMissing`); the scanner reads what is there.
    public static func startSegment(_ segments: [WALSegmentFile], snapshotIndex: UInt64?) -> Int {
        guard let snapshotIndex else { return 0 }
        var start = 0
        for (i, s) in segments.enumerated() where s.firstIndex <= snapshotIndex { start = i }
        return start
    }

    struct ScanState {
        var chain: UInt32 = 0
        var segmentEnd: Int64 = 0
        var baseIndex: UInt64
        var terms: [UInt64] = []  // terms[i] = term of entry baseIndex + i
        var lastEntryIndex: UInt64? = nil
        var lastHardStateTerm: UInt64 = 0
    }

    /// Scans one segment; returns the first problem, or nil when the segment is valid to its end.
    private func scanSegment(
        _ raw: UnsafeRawBufferPointer, segment: WALSegmentFile, isFirst: Bool, isLast: Bool,
        state: inout ScanState, result: inout WALScanResult, visit: (WALLocation, ScannedRecordBody) -> Void
    ) throws(WALError) -> WALProblem? {
        let hdrBytes = WALFormat.frameHeaderBytes
        // Not a WAL at all: the first segment's first frame lacks the magic (and is not zeros).
        if isFirst {
            let head = raw.count >= hdrBytes + 8 ? Array(raw[hdrBytes..<(hdrBytes + 8)]) : []
            let leadingZero = raw.prefix(hdrBytes + 8).allSatisfy { $0 == 0 }
            if head != WALFormat.magic && !leadingZero {
                throw .notAWAL(
                    path: directory + "/" + segment.name, reason: "segment does not start with a Cairn WAL header (magic \"CAIRNWAL\")")
            }
        }
        var offset = 0
        var first = true
        func problem(_ reason: String, at off: Int, crcFailure: Bool) -> WALProblem {
            let kind: WALProblem.Kind = crcFailure ? classify(raw, failedAt: off, isLast: isLast) : .corruption
            return WALProblem(
                kind: kind,
                location: WALLocation(segment: segment.name, offset: Int64(off), recordNumber: result.recordCount),
                reason: reason, lastValidIndex: state.lastEntryIndex)
        }
        while true {
            if offset + hdrBytes > raw.count {
                if offset == raw.count || allZero(raw, from: offset) {
                    if first { return problem("segment has no header record (\(raw.count) bytes)", at: offset, crcFailure: true) }
                    state.segmentEnd = Int64(offset)
                    return nil
                }
                return problem("partial record header: \(raw.count - offset) bytes at end of segment", at: offset, crcFailure: true)
            }
            let p = raw.baseAddress! + offset
            let h = FrameHeader(p)
            if h.payloadLength == 0 && h.typeCode == 0 && allZero(raw, from: offset, count: hdrBytes) {
                if allZero(raw, from: offset) {
                    if first { return problem("segment has no header record (all zero)", at: offset, crcFailure: true) }
                    state.segmentEnd = Int64(offset)
                    return nil
                }
                return problem("zero-filled record header followed by non-zero bytes", at: offset, crcFailure: true)
            }
            guard let type = RecordType(rawValue: h.typeCode), !h.reservedNonZero else {
                return problem("invalid record type \(h.typeCode) or non-zero reserved bits", at: offset, crcFailure: true)
            }
            let len = Int(h.payloadLength)
            guard len <= WALFormat.maxPayloadBytes, offset + hdrBytes + len <= raw.count else {
                return problem(
                    "record length \(len) runs past the end of the segment (\(raw.count - offset - hdrBytes) bytes left)",
                    at: offset, crcFailure: true)
            }
            var crc = crc32c(0, p, 16)
            crc = crc32c(crc, p + hdrBytes, len)
            guard crc == h.recordCRC else {
                return problem(
                    "record CRC mismatch (stored \(hex32(h.recordCRC)), computed \(hex32(crc)))", at: offset, crcFailure: true)
            }
            let frameEnd = offset + WALFormat.frameBytes(payloadBytes: len)
            guard frameEnd <= raw.count else {
                return problem("record padding runs past the end of the segment", at: offset, crcFailure: true)
            }
            if !allZero(raw, from: offset + hdrBytes + len, count: frameEnd - (offset + hdrBytes + len)) {
                return problem("non-zero padding after the payload", at: offset, crcFailure: true)
            }
            var chainSeed = state.chain
            let body = decodePayload(type: type, UnsafeRawBufferPointer(start: p + hdrBytes, count: len))
            if first {
                guard case .segmentHeader(let sh) = body else {
                    return problem("segment does not start with a segment header record", at: offset, crcFailure: false)
                }
                if sh.formatVersion != WALFormat.version {
                    throw .unsupportedVersion(segment: segment.name, version: sh.formatVersion, supported: WALFormat.version)
                }
                if sh.sequence != segment.sequence || sh.firstIndex != segment.firstIndex {
                    return problem(
                        "segment header says sequence \(sh.sequence) first index \(sh.firstIndex), the file name says \(segment.sequence) \(segment.firstIndex)",
                        at: offset, crcFailure: false)
                }
                if isFirst {
                    chainSeed = sh.previousChainCRC
                } else {
                    if sh.previousChainCRC != state.chain {
                        return problem(
                            "CRC chain broken between segments: header carries \(hex32(sh.previousChainCRC)), previous segment ended with \(hex32(state.chain))",
                            at: offset, crcFailure: false)
                    }
                    let expectedFirst = (state.lastEntryIndex ?? (state.baseIndex &- 1)) &+ 1
                    if sh.firstIndex != expectedFirst {
                        return problem(
                            "segment first index \(sh.firstIndex) does not follow the previous segment's last index \(expectedFirst &- 1)",
                            at: offset, crcFailure: false)
                    }
                }
            }
            let chain = crc32c(chainSeed, p + 16, 4)
            guard chain == h.chainCRC else {
                return problem(
                    "chain CRC mismatch (stored \(hex32(h.chainCRC)), expected \(hex32(chain))): record belongs to another position, segment or file",
                    at: offset, crcFailure: true)
            }
            guard let body else {
                return problem("malformed \(type) payload of \(len) bytes", at: offset, crcFailure: false)
            }
            if !first, case .segmentHeader = body {
                return problem("segment header record in the middle of a segment", at: offset, crcFailure: false)
            }
            if case .record(let record) = body {
                switch record {
                case .entry(let e):
                    let last = state.lastEntryIndex ?? (state.baseIndex &- 1)
                    if e.index > last &+ 1 {
                        return problem("entry index gap: index \(e.index) follows \(last)", at: offset, crcFailure: false)
                    }
                    if e.index < state.baseIndex {
                        // Overwrite below what this scan has seen: restart term tracking there.
                        state.baseIndex = e.index
                        state.terms.removeAll()
                    } else {
                        state.terms.removeSubrange(Int(e.index - state.baseIndex)...)
                    }
                    if let prevTerm = state.terms.last, e.term < prevTerm {
                        return problem(
                            "term decreased: entry \(e.index) has term \(e.term), entry \(e.index - 1) has term \(prevTerm)",
                            at: offset, crcFailure: false)
                    }
                    state.terms.append(e.term)
                    state.lastEntryIndex = e.index
                    result.entryCount += 1
                case .hardState(let hs):
                    if hs.term < state.lastHardStateTerm {
                        return problem(
                            "hard state term decreased from \(state.lastHardStateTerm) to \(hs.term)", at: offset, crcFailure: false)
                    }
                    state.lastHardStateTerm = hs.term
                    result.hardState = hs
                case .metadata(let m):
                    if let existing = result.metadata, existing != m {
                        return problem(
                            "metadata changed within the log (cluster \(hexID(m.clusterID)) member \(hexID(m.memberID)), earlier cluster \(hexID(existing.clusterID)) member \(hexID(existing.memberID)))",
                            at: offset, crcFailure: false)
                    }
                    result.metadata = m
                case .snapshot(let s):
                    result.snapshotMarkers.append(s)
                    // Entries may resume right after a snapshot the log never held.
                    if s.index > (state.lastEntryIndex ?? (state.baseIndex &- 1)) {
                        state.baseIndex = s.index &+ 1
                        state.terms.removeAll()
                        state.lastEntryIndex = s.index
                    }
                }
            }
            visit(WALLocation(segment: segment.name, offset: Int64(offset), recordNumber: result.recordCount), body)
            result.tailBatchStart = min(Int64(h.batchStart), Int64(offset))
            state.chain = chain
            result.chainCRC = chain
            result.recordCount += 1
            let frame = WALFormat.frameBytes(payloadBytes: len)
            result.logBytes += Int64(frame)
            if let last = state.lastEntryIndex { result.lastIndex = last }
            offset += frame
            first = false
        }
    }

    /// Tells a torn tail from mid-log corruption for damage at `failedAt`.
    ///
    /// Only the last segment can have a torn tail. There, the damage is a torn tail
    /// unless some later frame is intact on its own and belongs to a later write
    /// (its batch started after the damaged offset): a later write is only issued
    /// after the earlier one was synced, so its presence proves durable data was lost.
    func classify(_ raw: UnsafeRawBufferPointer, failedAt: Int, isLast: Bool) -> WALProblem.Kind {
        guard isLast else { return .corruption }
        var y = failedAt + 8
        let base = raw.baseAddress!
        while y + WALFormat.frameHeaderBytes <= raw.count {
            // Fast path over zeros and implausible headers: the type byte must name a record type.
            let word = base.load(fromByteOffset: y, as: UInt64.self)
            let typeCode = UInt8(truncatingIfNeeded: UInt64(littleEndian: word) >> 32)
            if typeCode >= 1 && typeCode <= 5, let h = frameSelfValid(raw, at: y), h.batchStart > UInt64(failedAt) {
                return .corruption
            }
            y += 8
        }
        return .tornTail
    }
}

func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
}

/// Whether `raw[from..<from+count]` (to the end when count is nil) is all zero.
func allZero(_ raw: UnsafeRawBufferPointer, from: Int, count: Int? = nil) -> Bool {
    let end = count.map { min(raw.count, from + $0) } ?? raw.count
    var i = from
    let base = raw.baseAddress!
    while i < end && (i & 7) != 0 {
        if base.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
        i += 1
    }
    while i + 32 <= end {
        let a = base.load(fromByteOffset: i, as: UInt64.self) | base.load(fromByteOffset: i + 8, as: UInt64.self)
        let b = base.load(fromByteOffset: i + 16, as: UInt64.self) | base.load(fromByteOffset: i + 24, as: UInt64.self)
        if a | b != 0 { return false }
        i += 32
    }
    while i < end {
        if base.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
        i += 1
    }
    return true
}
