import CCRC32C
import CZstd
import CairnBackend
import CairnFS
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Errors of snapshot writing, reading and restoring.
public enum SnapshotError: Error, Equatable, Sendable, CustomStringConvertible {
    case notASnapshot(path: String, reason: String)
    case unsupportedVersion(path: String, version: UInt32, supported: UInt32)
    case corrupt(path: String, reason: String)
    case zstd(String)
    case io(FSError)
    case backend(String)
    case restoreInProgress(markerPath: String)

    public var description: String {
        switch self {
        case .notASnapshot(let path, let reason): return "not a Cairn snapshot: \(path): \(reason)"
        case .unsupportedVersion(let path, let version, let supported):
            return "unsupported snapshot format version \(version) in \(path) (this build reads version \(supported))"
        case .corrupt(let path, let reason): return "corrupt snapshot \(path): \(reason)"
        case .zstd(let message): return "zstd: \(message)"
        case .io(let error): return "snapshot I/O error: \(error)"
        case .backend(let message): return "snapshot backend error: \(message)"
        case .restoreInProgress(let marker): return "an earlier snapshot restore did not finish (marker \(marker)); restore again"
        }
    }
}

/// The fixed header at the start of every snapshot file (see docs/snapshot-format.md).
public struct SnapshotHeader: Equatable, Sendable {
    public static let magic: [UInt8] = Array("CAIRNSNP".utf8)
    public static let version: UInt32 = 1
    /// Bytes of the fixed part; membership bytes follow, then zero padding to a multiple of 8.
    public static let fixedBytes = 72

    public var formatVersion: UInt32 = SnapshotHeader.version
    public var term: UInt64
    public var index: UInt64
    /// Bytes of the uncompressed content stream.
    public var uncompressedBytes: UInt64 = 0
    /// Bytes of the zstd frame that follows the header.
    public var compressedBytes: UInt64 = 0
    /// Number of key-value records in the content.
    public var recordCount: UInt64 = 0
    /// CRC32C of the uncompressed content stream.
    public var contentCRC32C: UInt32 = 0
    /// zstd level used.
    public var zstdLevel: Int32 = 3
    /// Opaque membership blob (the server's encoding of the member list).
    public var membership: [UInt8] = []

    public init(term: UInt64, index: UInt64, membership: [UInt8]) {
        self.term = term
        self.index = index
        self.membership = membership
    }

    /// Total header bytes on disk (8-aligned).
    public var encodedBytes: Int { (Self.fixedBytes + membership.count + 7) & ~7 }

    /// Layout (little-endian): magic 0..<8, version 8, headerBytes 12, term 16, index 24,
    /// uncompressedBytes 32, compressedBytes 40, recordCount 48, contentCRC32C 56,
    /// zstdLevel 60, membershipBytes 64, headerCRC32C 68 (over 0..<68 then the membership),
    /// membership from 72, zero padding to 8.
    public func encode() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: encodedBytes)
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            Self.magic.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: 8) }
            p.storeBytes(of: formatVersion.littleEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: UInt32(encodedBytes).littleEndian, toByteOffset: 12, as: UInt32.self)
            p.storeBytes(of: term.littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: index.littleEndian, toByteOffset: 24, as: UInt64.self)
            p.storeBytes(of: uncompressedBytes.littleEndian, toByteOffset: 32, as: UInt64.self)
            p.storeBytes(of: compressedBytes.littleEndian, toByteOffset: 40, as: UInt64.self)
            p.storeBytes(of: recordCount.littleEndian, toByteOffset: 48, as: UInt64.self)
            p.storeBytes(of: contentCRC32C.littleEndian, toByteOffset: 56, as: UInt32.self)
            p.storeBytes(of: UInt32(bitPattern: zstdLevel).littleEndian, toByteOffset: 60, as: UInt32.self)
            p.storeBytes(of: UInt32(membership.count).littleEndian, toByteOffset: 64, as: UInt32.self)
            membership.withUnsafeBytes { m in
                if m.count > 0 { (p + 72).copyMemory(from: m.baseAddress!, byteCount: m.count) }
            }
            var crc = cairn_crc32c_update(0, p, 68)
            crc = cairn_crc32c_update(crc, p + 72, membership.count)
            p.storeBytes(of: crc.littleEndian, toByteOffset: 68, as: UInt32.self)
        }
        return out
    }

    /// Reads a header from the start of `file`.
    public static func read(from file: FSFile) throws(SnapshotError) -> SnapshotHeader {
        let fixed: [UInt8]
        do { fixed = try file.read(at: 0, count: fixedBytes) } catch { throw .io(error) }
        guard fixed.count == fixedBytes, Array(fixed[0..<8]) == magic else {
            throw .notASnapshot(path: file.path, reason: "file does not start with the magic \"CAIRNSNP\"")
        }
        func u32(_ o: Int) -> UInt32 { fixed.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt32.self)) } }
        func u64(_ o: Int) -> UInt64 { fixed.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt64.self)) } }
        let version = u32(8)
        let membershipBytes = Int(u32(64))
        guard membershipBytes <= 64 << 20 else {
            throw .corrupt(path: file.path, reason: "header declares \(membershipBytes) membership bytes")
        }
        let membership: [UInt8]
        do { membership = try file.read(at: Int64(fixedBytes), count: membershipBytes) } catch { throw .io(error) }
        var crc = fixed.withUnsafeBytes { cairn_crc32c_update(0, $0.baseAddress, 68) }
        crc = membership.withUnsafeBytes { cairn_crc32c_update(crc, $0.baseAddress, $0.count) }
        guard membership.count == membershipBytes, crc == u32(68) else {
            throw .corrupt(path: file.path, reason: "header CRC mismatch (stored \(hex32(u32(68))), computed \(hex32(crc)))")
        }
        guard version == Self.version else { throw .unsupportedVersion(path: file.path, version: version, supported: Self.version) }
        var h = SnapshotHeader(term: u64(16), index: u64(24), membership: membership)
        h.formatVersion = version
        h.uncompressedBytes = u64(32)
        h.compressedBytes = u64(40)
        h.recordCount = u64(48)
        h.contentCRC32C = u32(56)
        h.zstdLevel = Int32(bitPattern: u32(60))
        guard Int(u32(12)) == h.encodedBytes else {
            throw .corrupt(path: file.path, reason: "header size \(u32(12)) does not match its membership length")
        }
        return h
    }
}

func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
}

func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
