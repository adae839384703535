import CCRC32C

/// CRC32C of a buffer, continuing from `seed` (0 to start).
@inline(__always)
public func crc32c(_ seed: UInt32, _ p: UnsafeRawPointer, _ count: Int) -> UInt32 {
    cairn_crc32c_update(seed, p, count)
}

/// CRC32C of a byte array.
public func crc32c(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { cairn_crc32c_update(seed, $0.baseAddress, $0.count) }
}

/// Writes framed records into a byte buffer, carrying the CRC chain.
///
/// Frame: u32 payloadLength, u8 type, u8 0, u16 0, u64 batchStart,
/// u32 recordCRC (over bytes 0..<16 and the payload), u32 chainCRC
/// (CRC32C seeded with the previous chain value, over the 4 recordCRC bytes),
/// payload, zero padding to a multiple of 8.
struct FrameWriter {
    var buffer: [UInt8] = []
    var used = 0
    var chain: UInt32

    init(chain: UInt32, capacity: Int) {
        self.chain = chain
        buffer = [UInt8](repeating: 0, count: max(capacity, 64))
    }

    mutating func reset(capacity: Int) {
        if buffer.count < capacity {
            buffer = [UInt8](repeating: 0, count: capacity)
        }
        used = 0
    }

    private mutating func reserve(_ n: Int) {
        if used + n > buffer.count {
            buffer.append(contentsOf: [UInt8](repeating: 0, count: max(used + n - buffer.count, buffer.count)))
        }
    }

    /// Appends one frame whose payload `fill` writes; `batchStart` is the segment
    /// offset of the first frame of the write this frame belongs to.
    mutating func append(
        type: RecordType, payloadBytes: Int, batchStart: UInt64, fill: (UnsafeMutableRawPointer) -> Void
    ) {
        let frame = WALFormat.frameBytes(payloadBytes: payloadBytes)
        reserve(frame)
        let start = used
        var chainNow = chain
        buffer.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress! + start
            // Zero the frame first: padding and any stale bytes from a previous batch.
            p.initializeMemory(as: UInt8.self, repeating: 0, count: frame)
            storeLE32(UInt32(payloadBytes), p, 0)
            p.storeBytes(of: type.rawValue, toByteOffset: 4, as: UInt8.self)
            storeLE(batchStart, p, 8)
            fill(p + WALFormat.frameHeaderBytes)
            var crc = cairn_crc32c_update(0, p, 16)
            crc = cairn_crc32c_update(crc, p + WALFormat.frameHeaderBytes, payloadBytes)
            storeLE32(crc, p, 16)
            chainNow = cairn_crc32c_update(chainNow, p + 16, 4)
            storeLE32(chainNow, p, 20)
        }
        chain = chainNow
        used += frame
    }

    mutating func append(_ record: WALRecord, batchStart: UInt64) {
        append(type: record.recordType, payloadBytes: record.payloadBytes, batchStart: batchStart) {
            record.encodePayload(into: $0)
        }
    }

    mutating func appendSegmentHeader(_ h: WALSegmentHeader, batchStart: UInt64) {
        append(type: .segmentHeader, payloadBytes: WALFormat.segmentHeaderPayloadBytes, batchStart: batchStart) {
            encodeSegmentHeader(h, into: $0)
        }
    }
}

/// The fields of a frame header, read without validation.
struct FrameHeader {
    var payloadLength: UInt32
    var typeCode: UInt8
    var reservedNonZero: Bool
    var batchStart: UInt64
    var recordCRC: UInt32
    var chainCRC: UInt32

    init(_ p: UnsafeRawPointer) {
        payloadLength = loadLE32(p, 0)
        typeCode = p.load(fromByteOffset: 4, as: UInt8.self)
        reservedNonZero = p.load(fromByteOffset: 5, as: UInt8.self) != 0 || p.loadUnaligned(fromByteOffset: 6, as: UInt16.self) != 0
        batchStart = loadLE(p, 8)
        recordCRC = loadLE32(p, 16)
        chainCRC = loadLE32(p, 20)
    }
}

/// Whether a frame at `offset` is intact on its own (plausible header, record CRC
/// matches), ignoring the chain. Used to tell a torn tail from mid-log damage.
func frameSelfValid(_ raw: UnsafeRawBufferPointer, at offset: Int) -> FrameHeader? {
    guard offset + WALFormat.frameHeaderBytes <= raw.count else { return nil }
    let p = raw.baseAddress! + offset
    let h = FrameHeader(p)
    guard RecordType(rawValue: h.typeCode) != nil, !h.reservedNonZero else { return nil }
    let len = Int(h.payloadLength)
    guard len <= WALFormat.maxPayloadBytes, offset + WALFormat.frameHeaderBytes + len <= raw.count else { return nil }
    guard h.batchStart <= UInt64(offset), h.batchStart & 7 == 0 else { return nil }
    var crc = cairn_crc32c_update(0, p, 16)
    crc = cairn_crc32c_update(crc, p + WALFormat.frameHeaderBytes, len)
    return crc == h.recordCRC ? h : nil
}
