/// The on-disk layout of a bbolt database, as Cairn reads and writes it (docs/bbolt-format.md).
///
/// Every multi-byte integer is little-endian (bbolt writes its structs in the machine's order,
/// and every platform etcd ships on is little-endian).
public enum BoltFormat {
    /// The first field of a meta page.
    public static let magic: UInt32 = 0xED0C_DAED
    /// The only data-format version bbolt (and so etcd 3.x) writes.
    public static let version: UInt32 = 2
    /// The page size Cairn writes: etcd's bbolt uses the OS page size, 4096 on Linux/amd64.
    public static let defaultPageSizeBytes = 4096

    /// Page header: id (u64), flags (u16), count (u16), overflow (u32).
    public static let pageHeaderSizeBytes = 16
    /// A leaf element: flags (u32), pos (u32), ksize (u32), vsize (u32).
    public static let leafElementSizeBytes = 16
    /// A branch element: pos (u32), ksize (u32), pgid (u64).
    public static let branchElementSizeBytes = 16
    /// A bucket's header stored as its value: root page (u64), sequence (u64).
    public static let bucketHeaderSizeBytes = 16
    /// The meta struct after the page header; the checksum covers its first 56 bytes.
    public static let metaSizeBytes = 64
    static let metaChecksummedBytes = 56

    /// Page types (the header's flags).
    public static let branchPageFlag: UInt16 = 0x01
    public static let leafPageFlag: UInt16 = 0x02
    public static let metaPageFlag: UInt16 = 0x04
    public static let freelistPageFlag: UInt16 = 0x10

    /// A leaf element whose value is a nested bucket.
    public static let bucketLeafFlag: UInt32 = 0x01

    /// The meta's freelist field when the freelist is not stored (bbolt's NoFreelistSync).
    public static let noFreelistPage = UInt64.max

    /// FNV-1a, 64 bits: the meta page checksum.
    static func fnv1a64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }

    @inline(__always)
    static func load<T: FixedWidthInteger>(_ b: UnsafeRawBufferPointer, _ offset: Int, as: T.Type) -> T {
        T(littleEndian: b.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    @inline(__always)
    static func store<T: FixedWidthInteger>(_ v: T, _ b: UnsafeMutableRawBufferPointer, _ offset: Int) {
        b.storeBytes(of: v.littleEndian, toByteOffset: offset, as: T.self)
    }
}

/// One meta page's fields.
public struct BoltMeta: Sendable, Equatable {
    public var pageSizeBytes: UInt32
    public var flags: UInt32 = 0
    /// The root bucket's root page.
    public var rootPage: UInt64
    public var rootSequence: UInt64 = 0
    /// The freelist's page, or `BoltFormat.noFreelistPage`.
    public var freelistPage: UInt64
    /// The high-water mark: the number of pages of the database.
    public var pageCount: UInt64
    public var txid: UInt64

    public init(pageSizeBytes: UInt32, rootPage: UInt64, freelistPage: UInt64, pageCount: UInt64, txid: UInt64) {
        self.pageSizeBytes = pageSizeBytes
        self.rootPage = rootPage
        self.freelistPage = freelistPage
        self.pageCount = pageCount
        self.txid = txid
    }

    /// Why a meta page is unusable.
    enum Problem: Equatable { case badMagic, badVersion(UInt32), badChecksum }

    /// Parses the meta struct at the start of `b` (the page's bytes after its header).
    static func parse(_ b: UnsafeRawBufferPointer) -> Result<BoltMeta, MetaProblem> {
        guard b.count >= BoltFormat.metaSizeBytes else { return .failure(MetaProblem(.badMagic)) }
        guard BoltFormat.load(b, 0, as: UInt32.self) == BoltFormat.magic else { return .failure(MetaProblem(.badMagic)) }
        let version = BoltFormat.load(b, 4, as: UInt32.self)
        guard version == BoltFormat.version else { return .failure(MetaProblem(.badVersion(version))) }
        let sum = BoltFormat.fnv1a64(UnsafeRawBufferPointer(rebasing: b[0..<BoltFormat.metaChecksummedBytes]))
        guard sum == BoltFormat.load(b, 56, as: UInt64.self) else { return .failure(MetaProblem(.badChecksum)) }
        var m = BoltMeta(
            pageSizeBytes: BoltFormat.load(b, 8, as: UInt32.self), rootPage: BoltFormat.load(b, 16, as: UInt64.self),
            freelistPage: BoltFormat.load(b, 32, as: UInt64.self), pageCount: BoltFormat.load(b, 40, as: UInt64.self),
            txid: BoltFormat.load(b, 48, as: UInt64.self))
        m.flags = BoltFormat.load(b, 12, as: UInt32.self)
        m.rootSequence = BoltFormat.load(b, 24, as: UInt64.self)
        return .success(m)
    }

    /// A whole meta page (`pageSizeBytes` bytes) for page `id` (0 or 1).
    func page(id: UInt64) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: Int(pageSizeBytes))
        p.withUnsafeMutableBytes { b in
            BoltFormat.store(id, b, 0)
            BoltFormat.store(BoltFormat.metaPageFlag, b, 8)
            let m = UnsafeMutableRawBufferPointer(rebasing: b[BoltFormat.pageHeaderSizeBytes...])
            BoltFormat.store(BoltFormat.magic, m, 0)
            BoltFormat.store(BoltFormat.version, m, 4)
            BoltFormat.store(pageSizeBytes, m, 8)
            BoltFormat.store(flags, m, 12)
            BoltFormat.store(rootPage, m, 16)
            BoltFormat.store(rootSequence, m, 24)
            BoltFormat.store(freelistPage, m, 32)
            BoltFormat.store(pageCount, m, 40)
            BoltFormat.store(txid, m, 48)
            let sum = BoltFormat.fnv1a64(UnsafeRawBufferPointer(rebasing: m[0..<BoltFormat.metaChecksummedBytes]))
            BoltFormat.store(sum, m, 56)
        }
        return p
    }
}

struct MetaProblem: Error {
    let problem: BoltMeta.Problem
    init(_ p: BoltMeta.Problem) { problem = p }
}

/// What is wrong with a bbolt file, or with using one.
public enum BoltError: Error, CustomStringConvertible, Equatable {
    case io(path: String, operation: String, errno: Int32)
    case notBolt(String)
    case unsupportedVersion(UInt32)
    case checksumMismatch
    case truncated(String)
    case corrupt(String)
    case noSuchBucket(String)
    case misuse(String)

    public var description: String {
        switch self {
        case .io(let path, let op, let e): return "\(op) \(path): \(String(cString: strerror(e)))"
        case .notBolt(let why): return "not a bbolt file: \(why)"
        case .unsupportedVersion(let v): return "unsupported bbolt version \(v) (expected \(BoltFormat.version))"
        case .checksumMismatch: return "checksum mismatch in both meta pages"
        case .truncated(let why): return "truncated: \(why)"
        case .corrupt(let why): return "corrupt bbolt file: \(why)"
        case .noSuchBucket(let name): return "no bucket \"\(name)\""
        case .misuse(let why): return "bbolt writer misuse: \(why)"
        }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
