#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes a compact bbolt database in one pass from sorted input.
///
/// ## Design
/// Pages are written in increasing page-id order, except the two meta pages, which are
/// written last:
///
/// - page 0, 1: meta (written by `finish`, when the root and page count are known);
/// - page 2: an empty freelist (every other page is in use);
/// - then, for each top-level bucket in name order, its leaf pages as its entries arrive
///   (each filled as full as a page allows), then its branch levels bottom-up;
/// - last, the root bucket's pages, whose entries map each bucket name to its root page.
///
/// Memory holds the page being filled and, per bucket, the first key and page id of each
/// page of the level below the one being built: about 1/50 of the keys for etcd's key
/// bucket. Nothing else is kept; written pages go to the file through a bounded buffer.
///
/// Every bucket gets its own root page (no inline buckets): bbolt reads and updates such
/// files as any other. Only top-level buckets are written (etcd has no nested ones).
public final class BoltWriter {
    public let path: String
    public let pageSizeBytes: Int
    private let fd: Int32
    private var nextPage: UInt64 = 3
    private var output: [UInt8] = []
    private var outputOffset = 3
    /// Bytes buffered before they are written.
    static let outputBufferBytes = 1 << 20

    private var buckets: [(name: [UInt8], root: UInt64)] = []
    private var current: TreeBuilder?
    private var finished = false

    /// Creates (or truncates) `path`.
    public init(path: String, pageSizeBytes: Int = BoltFormat.defaultPageSizeBytes) throws(BoltError) {
        guard pageSizeBytes >= 1024, pageSizeBytes & (pageSizeBytes - 1) == 0, pageSizeBytes <= 65536 else {
            throw .misuse("page size \(pageSizeBytes) is not a power of two in 1024...65536")
        }
        self.path = path
        self.pageSizeBytes = pageSizeBytes
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(path: path, operation: "create", errno: errno) }
        self.fd = fd
        output.reserveCapacity(Self.outputBufferBytes + pageSizeBytes)
        outputOffset = 2 * pageSizeBytes
        // Page 2: the freelist, empty.
        var freelist = [UInt8](repeating: 0, count: pageSizeBytes)
        freelist.withUnsafeMutableBytes { b in
            BoltFormat.store(UInt64(2), b, 0)
            BoltFormat.store(BoltFormat.freelistPageFlag, b, 8)
        }
        output += freelist
    }

    deinit { close(fd) }

    /// Starts the top-level bucket `name`; names must ascend.
    public func beginBucket(_ name: [UInt8]) throws(BoltError) {
        guard !finished, current == nil else { throw .misuse("beginBucket inside a bucket or after finish") }
        guard !name.isEmpty else { throw .misuse("empty bucket name") }
        if let last = buckets.last, !last.name.lexicographicallyPrecedes(name) {
            throw .misuse("bucket \"\(printable(name))\" does not come after \"\(printable(last.name))\"")
        }
        current = TreeBuilder(pageSizeBytes: pageSizeBytes)
        buckets.append((name, 0))
    }

    /// Adds an entry to the current bucket; keys must ascend.
    public func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(BoltError) {
        guard current != nil else { throw .misuse("put outside a bucket") }
        guard !key.isEmpty else { throw .misuse("empty key") }
        guard key.count <= 32768, value.count < Int(UInt32.max) / 2 else {
            throw .misuse("key of \(key.count) bytes or value of \(value.count) bytes is over bbolt's limits")
        }
        if let page = try current!.add(flags: 0, key, value) { try emitLeaf(page) }
    }

    public func put(_ key: [UInt8], _ value: [UInt8]) throws {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in try put(k, v) }
        }
    }

    /// Ends the current bucket: writes its last leaf and its branch levels.
    public func endBucket() throws(BoltError) {
        guard current != nil else { throw .misuse("endBucket outside a bucket") }
        let root = try finishTree()
        buckets[buckets.count - 1].root = root
        current = nil
    }

    /// Writes the root bucket and the meta pages, and syncs the file. Returns the file's size.
    @discardableResult
    public func finish(txid: UInt64 = 1) throws -> Int {
        guard !finished, current == nil else { throw BoltError.misuse("finish inside a bucket or twice") }
        current = TreeBuilder(pageSizeBytes: pageSizeBytes)
        var header = [UInt8](repeating: 0, count: BoltFormat.bucketHeaderSizeBytes)
        for b in buckets {
            header.withUnsafeMutableBytes { BoltFormat.store(b.root, $0, 0) }
            let page = try b.name.withUnsafeBytes { k in
                try header.withUnsafeBytes { v in try current!.add(flags: BoltFormat.bucketLeafFlag, k, v) }
            }
            if let page { try emitLeaf(page) }
        }
        let root = try finishTree()
        current = nil
        try flushOutput()
        finished = true
        let meta = BoltMeta(
            pageSizeBytes: UInt32(pageSizeBytes), rootPage: root, freelistPage: 2, pageCount: nextPage, txid: txid)
        try writeAll(meta.page(id: 0), at: 0)
        try writeAll(meta.page(id: 1), at: pageSizeBytes)
        guard fsync(fd) == 0 else { throw BoltError.io(path: path, operation: "fsync", errno: errno) }
        return Int(nextPage) * pageSizeBytes
    }

    // MARK: Pages

    private func finishTree() throws(BoltError) -> UInt64 {
        if let page = current!.takeLeaf(force: true) { try emitLeaf(page) }
        var level = current!.takeLevel()
        while level.count > 1 {
            var branch = TreeBuilder(pageSizeBytes: pageSizeBytes)
            for (key, id) in level {
                if let page = branch.addBranch(key, id) { try emit(page, into: &branch) }
            }
            if let page = branch.takeBranch() { try emit(page, into: &branch) }
            level = branch.takeLevel()
        }
        return level[0].page
    }

    private func emitLeaf(_ page: TreeBuilder.PendingPage) throws(BoltError) {
        try emit(page, into: &current!)
    }

    /// Assigns `page` the next page id, records it in `builder`'s level, and writes it.
    private func emit(_ page: TreeBuilder.PendingPage, into builder: inout TreeBuilder) throws(BoltError) {
        let id = nextPage
        var bytes = page.bytes
        bytes.withUnsafeMutableBytes { BoltFormat.store(id, $0, 0) }
        nextPage += UInt64(bytes.count / pageSizeBytes)
        builder.level.append((page.firstKey, id))
        output += bytes
        if output.count >= Self.outputBufferBytes { try flushOutput() }
    }

    private func flushOutput() throws(BoltError) {
        guard !output.isEmpty else { return }
        try writeAll(output, at: outputOffset)
        outputOffset += output.count
        output.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: [UInt8], at offset: Int) throws(BoltError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { b in pwrite(fd, b.baseAddress! + done, b.count - done, off_t(offset + done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "write", errno: errno)
            }
            done += n
        }
    }
}

/// Fills one level of a tree: elements go into the page being filled until the next one does
/// not fit; then the page is handed out and a new one begins.
struct TreeBuilder {
    struct PendingPage {
        var bytes: [UInt8]
        var firstKey: [UInt8]
    }

    let pageSizeBytes: Int
    /// The (first key, page id) of each page written at this level.
    var level: [(key: [UInt8], page: UInt64)] = []
    private var flags: [UInt32] = []
    private var keys: [UInt8] = []
    private var keyEnds: [Int] = []
    private var values: [UInt8] = []
    private var valueEnds: [Int] = []
    private var pages: [UInt64] = []

    init(pageSizeBytes: Int) {
        self.pageSizeBytes = pageSizeBytes
    }

    private var count: Int { keyEnds.count }
    private var usedBytes: Int { BoltFormat.pageHeaderSizeBytes + count * 16 + keys.count + values.count }

    /// Adds a leaf element; returns the previous page when it was full.
    mutating func add(flags f: UInt32, _ k: UnsafeRawBufferPointer, _ v: UnsafeRawBufferPointer) throws(BoltError) -> PendingPage? {
        guard follows(k) else { throw .misuse("keys not ascending: \"\(printable([UInt8](k)))\" is not after the previous key") }
        var out: PendingPage?
        if count > 0, usedBytes + 16 + k.count + v.count > pageSizeBytes || count == Int(UInt16.max) {
            out = takeLeaf(force: false)
        }
        flags.append(f)
        keys += k
        keyEnds.append(keys.count)
        values += v
        valueEnds.append(values.count)
        return out
    }

    /// Adds a branch element pointing at `page`; returns the previous page when it was full.
    mutating func addBranch(_ k: [UInt8], _ page: UInt64) -> PendingPage? {
        var out: PendingPage?
        if count > 0, usedBytes + 16 + k.count > pageSizeBytes || count == Int(UInt16.max) { out = takeBranch() }
        keys += k
        keyEnds.append(keys.count)
        valueEnds.append(0)
        pages.append(page)
        return out
    }

    /// Whether `k` sorts after the last key added at this level.
    private func follows(_ k: UnsafeRawBufferPointer) -> Bool {
        if count > 0 { return key(count - 1).lexicographicallyPrecedes(k) }
        if let last = level.last?.key { return last.lexicographicallyPrecedes(k) }
        return true
    }

    private func key(_ i: Int) -> ArraySlice<UInt8> { keys[(i == 0 ? 0 : keyEnds[i - 1])..<keyEnds[i]] }

    /// The page being filled as a leaf page (an empty one if `force` and nothing is pending,
    /// so that an empty bucket still has its root page).
    mutating func takeLeaf(force: Bool) -> PendingPage? {
        if count == 0 && !(force && level.isEmpty) { return nil }
        var bytes = pageBytes(flag: BoltFormat.leafPageFlag)
        bytes.withUnsafeMutableBytes { b in
            var data = BoltFormat.pageHeaderSizeBytes + count * 16
            var vStart = 0
            for i in 0..<count {
                let e = BoltFormat.pageHeaderSizeBytes + i * 16
                let k = key(i)
                let v = values[vStart..<valueEnds[i]]
                BoltFormat.store(flags[i], b, e)
                BoltFormat.store(UInt32(data - e), b, e + 4)
                BoltFormat.store(UInt32(k.count), b, e + 8)
                BoltFormat.store(UInt32(v.count), b, e + 12)
                for x in k { b[data] = x; data += 1 }
                v.withUnsafeBytes { src in
                    UnsafeMutableRawBufferPointer(rebasing: b[data..<(data + src.count)]).copyMemory(from: src)
                }
                data += v.count
                vStart = valueEnds[i]
            }
        }
        return reset(bytes)
    }

    /// The page being filled as a branch page.
    mutating func takeBranch() -> PendingPage? {
        guard count > 0 else { return nil }
        var bytes = pageBytes(flag: BoltFormat.branchPageFlag)
        bytes.withUnsafeMutableBytes { b in
            var data = BoltFormat.pageHeaderSizeBytes + count * 16
            for i in 0..<count {
                let e = BoltFormat.pageHeaderSizeBytes + i * 16
                let k = key(i)
                BoltFormat.store(UInt32(data - e), b, e)
                BoltFormat.store(UInt32(k.count), b, e + 4)
                BoltFormat.store(pages[i], b, e + 8)
                for x in k { b[data] = x; data += 1 }
            }
        }
        return reset(bytes)
    }

    /// A zeroed page (with overflow pages when the content needs them) with its header filled in.
    private func pageBytes(flag: UInt16) -> [UInt8] {
        let pageCount = (usedBytes + pageSizeBytes - 1) / pageSizeBytes
        var bytes = [UInt8](repeating: 0, count: max(1, pageCount) * pageSizeBytes)
        bytes.withUnsafeMutableBytes { b in
            BoltFormat.store(flag, b, 8)
            BoltFormat.store(UInt16(count), b, 10)
            BoltFormat.store(UInt32(max(1, pageCount) - 1), b, 12)
        }
        return bytes
    }

    private mutating func reset(_ bytes: [UInt8]) -> PendingPage {
        let first = count > 0 ? Array(key(0)) : []
        flags.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
        keyEnds.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
        valueEnds.removeAll(keepingCapacity: true)
        pages.removeAll(keepingCapacity: true)
        return PendingPage(bytes: bytes, firstKey: first)
    }

    mutating func takeLevel() -> [(key: [UInt8], page: UInt64)] {
        defer { level = [] }
        return level
    }
}
