#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads a bbolt database file: picks the newest valid meta page, then walks bucket trees
/// page by page with `pread`, so memory holds one root-to-leaf path of pages at a time.
///
/// Every page read is bounds-checked against the meta's page count and the file's size, every
/// element against its page; a malformed file gives a `BoltError` saying what and where.
public final class BoltReader {
    public let path: String
    /// The meta page in use: the valid one with the highest transaction id.
    public let meta: BoltMeta
    /// Bytes of the file that belong to the database (an etcd snapshot has a trailer after them).
    public let fileSizeBytes: Int
    private let fd: Int32

    public var pageSizeBytes: Int { Int(meta.pageSizeBytes) }
    /// Size of the database proper: pages × page size (what bbolt calls `Tx.Size`).
    public var databaseSizeBytes: Int { Int(meta.pageCount) * pageSizeBytes }

    /// Deepest tree walked; bbolt trees of any real size are under 10 levels.
    static let maxDepth = 64

    /// Opens `path`; `sizeBytes` limits the database to the file's first bytes (nil: all of it).
    public init(path: String, sizeBytes: Int? = nil) throws(BoltError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw .io(path: path, operation: "stat", errno: e)
        }
        let size = min(Int(st.st_size), sizeBytes ?? Int.max)
        do {
            self.meta = try Self.chooseMeta(fd: fd, path: path, sizeBytes: size)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        self.fileSizeBytes = size
        let needed = Int(meta.pageCount) * Int(meta.pageSizeBytes)
        guard meta.pageCount >= 2, meta.pageCount < (1 << 40) else {
            throw .corrupt("meta page count \(meta.pageCount) is impossible")
        }
        guard needed <= size else {
            throw .truncated("the database has \(meta.pageCount) pages of \(meta.pageSizeBytes) bytes (\(needed) bytes) but the file holds \(size)")
        }
        guard meta.rootPage >= 2, meta.rootPage < meta.pageCount else {
            throw .corrupt("root bucket page \(meta.rootPage) is outside pages 2..<\(meta.pageCount)")
        }
    }

    deinit { close(fd) }

    private static func chooseMeta(fd: Int32, path: String, sizeBytes: Int) throws(BoltError) -> BoltMeta {
        let firstBytes = BoltFormat.pageHeaderSizeBytes + BoltFormat.metaSizeBytes
        guard sizeBytes >= firstBytes else {
            if sizeBytes >= BoltFormat.pageHeaderSizeBytes + 4 {
                let head = try readAt(fd: fd, path: path, offset: 0, count: BoltFormat.pageHeaderSizeBytes + 4)
                let magic = head.withUnsafeBytes { BoltFormat.load($0, BoltFormat.pageHeaderSizeBytes, as: UInt32.self) }
                if magic != BoltFormat.magic { throw .notBolt("bad magic") }
            }
            throw .truncated("the file has \(sizeBytes) bytes, less than one meta page")
        }
        var problems: [BoltMeta.Problem] = []
        var valid: [BoltMeta] = []
        let meta0 = try readMeta(fd: fd, path: path, offset: 0)
        var secondOffsets: [Int] = []
        switch meta0 {
        case .success(let m):
            valid.append(m)
            secondOffsets = [Int(m.pageSizeBytes)]
        case .failure(let p):
            problems.append(p.problem)
            // Meta 0 is unreadable: try the page sizes bbolt is used with for meta 1.
            secondOffsets = [4096, 8192, 16384, 32768, 65536]
        }
        for offset in secondOffsets where offset + firstBytes <= sizeBytes {
            switch try readMeta(fd: fd, path: path, offset: offset) {
            case .success(let m) where Int(m.pageSizeBytes) == offset:
                valid.append(m)
            case .success: problems.append(.badChecksum)
            case .failure(let p): problems.append(p.problem)
            }
            if valid.count == 2 || (meta0.isFailure && valid.count == 1) { break }
        }
        if let best = valid.max(by: { $0.txid < $1.txid }) {
            let ps = Int(best.pageSizeBytes)
            guard ps >= 512, ps <= 1 << 20, ps & (ps - 1) == 0 else { throw .corrupt("page size \(ps) is not a power of two") }
            return best
        }
        if problems.allSatisfy({ $0 == .badMagic }) { throw .notBolt("bad magic") }
        for p in problems { if case .badVersion(let v) = p { throw .unsupportedVersion(v) } }
        throw .checksumMismatch
    }

    private static func readMeta(fd: Int32, path: String, offset: Int) throws(BoltError) -> Result<BoltMeta, MetaProblem> {
        let b = try readAt(fd: fd, path: path, offset: offset, count: BoltFormat.pageHeaderSizeBytes + BoltFormat.metaSizeBytes)
        return b.withUnsafeBytes { p in
            BoltMeta.parse(UnsafeRawBufferPointer(rebasing: p[BoltFormat.pageHeaderSizeBytes...]))
        }
    }

    static func readAt(fd: Int32, path: String, offset: Int, count: Int) throws(BoltError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { b in
                pread(fd, b.baseAddress! + done, count - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { throw .truncated("\(count) bytes at offset \(offset) are beyond the end of the file") }
            done += n
        }
        return out
    }

    // MARK: Pages

    /// A page's bytes (with its overflow pages), checked to be inside the database.
    func page(_ id: UInt64) throws(BoltError) -> [UInt8] {
        guard id >= 2, id < meta.pageCount else {
            throw .corrupt("page \(id) is referenced but the database has pages 2..<\(meta.pageCount)")
        }
        let offset = Int(id) * pageSizeBytes
        guard offset + pageSizeBytes <= fileSizeBytes else { throw .truncated("page \(id) beyond end of file") }
        var bytes = try Self.readAt(fd: fd, path: path, offset: offset, count: pageSizeBytes)
        let (pid, overflow) = bytes.withUnsafeBytes { (BoltFormat.load($0, 0, as: UInt64.self), BoltFormat.load($0, 12, as: UInt32.self)) }
        guard pid == id else { throw .corrupt("page \(id) says it is page \(pid)") }
        if overflow > 0 {
            guard id + UInt64(overflow) < meta.pageCount else {
                throw .corrupt("page \(id) overflows \(overflow) pages past the database's \(meta.pageCount)")
            }
            let extra = Int(overflow) * pageSizeBytes
            guard offset + pageSizeBytes + extra <= fileSizeBytes else {
                throw .truncated("page \(id) (overflow \(overflow)) beyond end of file")
            }
            bytes += try Self.readAt(fd: fd, path: path, offset: offset + pageSizeBytes, count: extra)
        }
        return bytes
    }

    /// The freelist's page ids (empty when the database keeps no freelist).
    public func freePages() throws -> [UInt64] {
        guard meta.freelistPage != BoltFormat.noFreelistPage else { return [] }
        let p = try page(meta.freelistPage)
        return try p.withUnsafeBytes { (b) throws(BoltError) -> [UInt64] in
            guard BoltFormat.load(b, 8, as: UInt16.self) == BoltFormat.freelistPageFlag else {
                throw .corrupt("freelist page \(meta.freelistPage) is not a freelist page")
            }
            var count = Int(BoltFormat.load(b, 10, as: UInt16.self))
            var start = BoltFormat.pageHeaderSizeBytes
            if count == 0xFFFF {  // the real count is the first element
                count = Int(BoltFormat.load(b, start, as: UInt64.self))
                start += 8
            }
            guard start + count * 8 <= b.count else { throw .corrupt("freelist page \(meta.freelistPage) holds more ids than fit") }
            return (0..<count).map { BoltFormat.load(b, start + 8 * $0, as: UInt64.self) }
        }
    }

    // MARK: Buckets

    /// Where a bucket's tree is: a root page, or a page stored inline in its parent's value.
    enum BucketRoot {
        case page(UInt64)
        case inline([UInt8])
    }

    private func bucketRoot(name: [UInt8], header v: UnsafeRawBufferPointer) throws(BoltError) -> BucketRoot {
        guard v.count >= BoltFormat.bucketHeaderSizeBytes else {
            throw .corrupt("bucket \"\(printable(name))\" has a \(v.count)-byte header")
        }
        let root = BoltFormat.load(v, 0, as: UInt64.self)
        if root != 0 { return .page(root) }
        let inline = [UInt8](UnsafeRawBufferPointer(rebasing: v[BoltFormat.bucketHeaderSizeBytes...]))
        guard inline.count >= BoltFormat.pageHeaderSizeBytes else {
            throw .corrupt("inline bucket \"\(printable(name))\" is shorter than a page header")
        }
        return .inline(inline)
    }

    /// The top-level buckets' names, in order.
    public func bucketNames() throws -> [[UInt8]] {
        var names: [[UInt8]] = []
        try walk(.page(meta.rootPage), depth: 0) { flags, k, _ in
            if flags & BoltFormat.bucketLeafFlag != 0 { names.append([UInt8](k)) }
        }
        return names
    }

    /// Calls `body` with each key/value of the bucket at `path` (top-level first), in key
    /// order; `isBucket` marks nested buckets (their value is the bucket header). The views are
    /// valid only during the call.
    public func forEach(
        bucket path: [[UInt8]],
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ isBucket: Bool) throws -> Void
    ) throws {
        var root = BucketRoot.page(meta.rootPage)
        for name in path {
            var found: BucketRoot?
            try walk(root, depth: 0) { flags, k, v in
                if found == nil, flags & BoltFormat.bucketLeafFlag != 0, k.elementsEqual(name) {
                    found = try bucketRoot(name: name, header: v)
                }
            }
            guard let f = found else { throw BoltError.noSuchBucket(printable(name)) }
            root = f
        }
        try walk(root, depth: 0) { flags, k, v in try body(k, v, flags & BoltFormat.bucketLeafFlag != 0) }
    }

    /// Visits every leaf element under `root` in order, checking that keys ascend.
    private func walk(
        _ root: BucketRoot, depth: Int, _ body: (UInt32, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var last: [UInt8]? = nil
        switch root {
        case .page(let id): try walkPage(id, depth: depth, last: &last, body)
        case .inline(let bytes):
            try bytes.withUnsafeBytes { b in
                try visitPage(b, id: 0, depth: depth, last: &last, body)
            }
        }
    }

    private func walkPage(
        _ id: UInt64, depth: Int, last: inout [UInt8]?,
        _ body: (UInt32, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        guard depth < Self.maxDepth else { throw BoltError.corrupt("tree deeper than \(Self.maxDepth) levels at page \(id) (a cycle?)") }
        let bytes = try page(id)
        try bytes.withUnsafeBytes { b in try visitPage(b, id: id, depth: depth, last: &last, body) }
    }

    private func visitPage(
        _ b: UnsafeRawBufferPointer, id: UInt64, depth: Int, last: inout [UInt8]?,
        _ body: (UInt32, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let flags = BoltFormat.load(b, 8, as: UInt16.self)
        let count = Int(BoltFormat.load(b, 10, as: UInt16.self))
        let h = BoltFormat.pageHeaderSizeBytes
        let where_ = id == 0 ? "an inline bucket" : "page \(id)"
        guard h + count * BoltFormat.leafElementSizeBytes <= b.count else {
            throw BoltError.corrupt("\(where_) has \(count) elements, more than fit in it")
        }
        func slice(_ start: Int, _ n: Int) throws(BoltError) -> UnsafeRawBufferPointer {
            guard start >= 0, n >= 0, start <= b.count, n <= b.count - start else {
                throw .corrupt("an element of \(where_) points outside it")
            }
            return UnsafeRawBufferPointer(rebasing: b[start..<(start + n)])
        }
        func ordered(_ k: UnsafeRawBufferPointer) throws(BoltError) {
            if let l = last, !l.lexicographicallyPrecedes(k) {
                throw .corrupt("keys out of order in \(where_)")
            }
            last = [UInt8](k)
        }
        switch flags {
        case BoltFormat.leafPageFlag:
            for i in 0..<count {
                let e = h + i * BoltFormat.leafElementSizeBytes
                let eflags = BoltFormat.load(b, e, as: UInt32.self)
                let pos = Int(BoltFormat.load(b, e + 4, as: UInt32.self))
                let ksize = Int(BoltFormat.load(b, e + 8, as: UInt32.self))
                let vsize = Int(BoltFormat.load(b, e + 12, as: UInt32.self))
                let k = try slice(e + pos, ksize)
                let v = try slice(e + pos + ksize, vsize)
                try ordered(k)
                try body(eflags, k, v)
            }
        case BoltFormat.branchPageFlag:
            guard id != 0 else { throw BoltError.corrupt("an inline bucket holds a branch page") }
            for i in 0..<count {
                let e = h + i * BoltFormat.branchElementSizeBytes
                let pos = Int(BoltFormat.load(b, e, as: UInt32.self))
                let ksize = Int(BoltFormat.load(b, e + 4, as: UInt32.self))
                let child = BoltFormat.load(b, e + 8, as: UInt64.self)
                _ = try slice(e + pos, ksize)
                try walkPage(child, depth: depth + 1, last: &last, body)
            }
        default:
            throw BoltError.corrupt("\(where_) has type flags 0x\(String(flags, radix: 16)) where a branch or leaf page belongs")
        }
    }
}

/// Bytes as text for messages: UTF-8 when printable, else hex.
func printable(_ bytes: [UInt8]) -> String {
    if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) { return String(decoding: bytes, as: UTF8.self) }
    return bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

extension Result {
    var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}
