import CairnBackend

/// The on-disk encodings of the keyspace, byte-compatible with etcd's:
///
/// - `key` table: 17-byte revision keys — 8-byte big-endian `main`, `_`,
///   8-byte big-endian `sub` — with an 18th byte `t` for tombstones; values
///   are protobuf-encoded `mvccpb.KeyValue` (a tombstone holds only the key).
/// - `meta` table: `consistent_index` (8-byte big-endian applied Raft index),
///   `scheduledCompactRev` and `finishedCompactRev` (17-byte revision keys).
/// - `lease` table: 8-byte big-endian lease id → protobuf `leasepb.Lease`.
///
/// Protobuf is written by hand here (fields in number order, zero values
/// omitted, as Go's marshaller writes them) so that the storage layer does not
/// depend on generated code and the hot path allocates only the result.
enum Codec {
    static let revisionKeySize = 17
    static let tombstoneMarker: UInt8 = UInt8(ascii: "t")

    // MARK: Revision keys

    static func revisionKey(_ rev: Revision, tombstone: Bool = false) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: tombstone ? 18 : 17) { buf, n in
            storeBigEndian(UInt64(bitPattern: rev.main), buf.baseAddress!)
            buf[8] = UInt8(ascii: "_")
            storeBigEndian(UInt64(bitPattern: rev.sub), buf.baseAddress! + 9)
            if tombstone { buf[17] = tombstoneMarker }
            n = tombstone ? 18 : 17
        }
    }

    /// Parses a revision key; nil when it is not one.
    static func parseRevisionKey(_ b: UnsafeRawBufferPointer) -> (Revision, tombstone: Bool)? {
        guard b.count == 17 || (b.count == 18 && b[17] == tombstoneMarker), b[8] == UInt8(ascii: "_") else {
            return nil
        }
        let main = Int64(bitPattern: loadBigEndian(b, 0))
        let sub = Int64(bitPattern: loadBigEndian(b, 9))
        return (Revision(main: main, sub: sub), b.count == 18)
    }

    static func bigEndian(_ v: UInt64) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 8) { buf, n in
            storeBigEndian(v, buf.baseAddress!)
            n = 8
        }
    }

    @inline(__always)
    static func storeBigEndian(_ v: UInt64, _ p: UnsafeMutablePointer<UInt8>) {
        var x = v.bigEndian
        withUnsafeBytes(of: &x) { src in
            for i in 0..<8 { p[i] = src[i] }
        }
    }

    @inline(__always)
    static func loadBigEndian(_ b: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(b[offset + i]) }
        return v
    }

    // MARK: Protobuf primitives

    @inline(__always)
    static func varintSize(_ v: UInt64) -> Int {
        var n = 1
        var x = v >> 7
        while x != 0 {
            n += 1
            x >>= 7
        }
        return n
    }

    @inline(__always)
    static func writeVarint(_ v: UInt64, _ p: UnsafeMutableRawBufferPointer, _ i: inout Int) {
        var x = v
        while x >= 0x80 {
            p[i] = UInt8(truncatingIfNeeded: x) | 0x80
            i += 1
            x >>= 7
        }
        p[i] = UInt8(x)
        i += 1
    }

    static func readVarint(_ b: UnsafeRawBufferPointer, _ i: inout Int) -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while i < b.count {
            let byte = b[i]
            i += 1
            if shift == 63 && byte > 1 { return nil }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }

    // MARK: mvccpb.KeyValue

    static func encodedSize(_ kv: KeyValue) -> Int {
        var n = 0
        if !kv.key.isEmpty { n += 1 + varintSize(UInt64(kv.key.count)) + kv.key.count }
        if kv.createRevision != 0 { n += 1 + varintSize(UInt64(bitPattern: kv.createRevision)) }
        if kv.modRevision != 0 { n += 1 + varintSize(UInt64(bitPattern: kv.modRevision)) }
        if kv.version != 0 { n += 1 + varintSize(UInt64(bitPattern: kv.version)) }
        if !kv.value.isEmpty { n += 1 + varintSize(UInt64(kv.value.count)) + kv.value.count }
        if kv.lease != 0 { n += 1 + varintSize(UInt64(bitPattern: kv.lease)) }
        return n
    }

    /// Writes `kv` into `p`, which holds exactly `encodedSize(kv)` bytes.
    static func encode(_ kv: KeyValue, into p: UnsafeMutableRawBufferPointer) {
        var i = 0
        func bytes(_ field: UInt8, _ v: [UInt8]) {
            guard !v.isEmpty else { return }
            p[i] = field << 3 | 2
            i += 1
            writeVarint(UInt64(v.count), p, &i)
            v.withUnsafeBytes { src in
                UnsafeMutableRawBufferPointer(rebasing: p[i..<(i + v.count)]).copyMemory(from: src)
            }
            i += v.count
        }
        func int(_ field: UInt8, _ v: Int64) {
            guard v != 0 else { return }
            p[i] = field << 3
            i += 1
            writeVarint(UInt64(bitPattern: v), p, &i)
        }
        bytes(1, kv.key)
        int(2, kv.createRevision)
        int(3, kv.modRevision)
        int(4, kv.version)
        bytes(5, kv.value)
        int(6, kv.lease)
    }

    static func encode(_ kv: KeyValue) -> [UInt8] {
        let n = encodedSize(kv)
        return [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            encode(kv, into: UnsafeMutableRawBufferPointer(buf))
            count = n
        }
    }

    /// Decodes an `mvccpb.KeyValue`; unknown fields are skipped as protobuf
    /// requires. `withValue: false` skips copying the value (keys-only reads).
    static func decodeKeyValue(_ b: UnsafeRawBufferPointer, withValue: Bool = true) -> KeyValue? {
        var kv = KeyValue(key: [])
        var i = 0
        while i < b.count {
            guard let tag = readVarint(b, &i) else { return nil }
            let field = tag >> 3
            switch tag & 7 {
            case 0:
                guard let v = readVarint(b, &i) else { return nil }
                switch field {
                case 2: kv.createRevision = Int64(bitPattern: v)
                case 3: kv.modRevision = Int64(bitPattern: v)
                case 4: kv.version = Int64(bitPattern: v)
                case 6: kv.lease = Int64(bitPattern: v)
                default: break
                }
            case 2:
                guard let len = readVarint(b, &i), len <= UInt64(b.count - i) else { return nil }
                let end = i + Int(len)
                if field == 1 {
                    kv.key = [UInt8](UnsafeRawBufferPointer(rebasing: b[i..<end]))
                } else if field == 5 && withValue {
                    kv.value = [UInt8](UnsafeRawBufferPointer(rebasing: b[i..<end]))
                }
                i = end
            case 1:
                guard i + 8 <= b.count else { return nil }
                i += 8
            case 5:
                guard i + 4 <= b.count else { return nil }
                i += 4
            default:
                return nil
            }
        }
        return kv
    }

    // MARK: leasepb.Lease

    static func encode(_ lease: LeaseRecord) -> [UInt8] {
        let fields: [(UInt8, Int64)] = [(1, lease.id), (2, lease.ttlSeconds), (3, lease.remainingTTLSeconds)]
        var n = 0
        for (_, v) in fields where v != 0 { n += 1 + varintSize(UInt64(bitPattern: v)) }
        return [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            let p = UnsafeMutableRawBufferPointer(buf)
            var i = 0
            for (f, v) in fields where v != 0 {
                p[i] = f << 3
                i += 1
                writeVarint(UInt64(bitPattern: v), p, &i)
            }
            count = i
        }
    }

    static func decodeLease(_ b: UnsafeRawBufferPointer) -> LeaseRecord? {
        var lease = LeaseRecord(id: 0, ttlSeconds: 0)
        var i = 0
        while i < b.count {
            guard let tag = readVarint(b, &i) else { return nil }
            switch tag & 7 {
            case 0:
                guard let v = readVarint(b, &i) else { return nil }
                switch tag >> 3 {
                case 1: lease.id = Int64(bitPattern: v)
                case 2: lease.ttlSeconds = Int64(bitPattern: v)
                case 3: lease.remainingTTLSeconds = Int64(bitPattern: v)
                default: break
                }
            case 2:
                guard let len = readVarint(b, &i), len <= UInt64(b.count - i) else { return nil }
                i += Int(len)
            case 1: i += 8
            case 5: i += 4
            default: return nil
            }
            if i > b.count { return nil }
        }
        return lease
    }
}

extension KeyValue {
    /// The protobuf (`mvccpb.KeyValue`) encoding, as etcd stores it.
    public func encoded() -> [UInt8] { Codec.encode(self) }

    /// Decodes the protobuf encoding; nil when malformed.
    public init?(encoded bytes: [UInt8]) {
        guard let kv = bytes.withUnsafeBytes({ Codec.decodeKeyValue($0) }) else { return nil }
        self = kv
    }
}
