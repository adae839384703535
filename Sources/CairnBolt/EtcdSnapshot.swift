import CCRC32C

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// etcd 3.4's snapshot files: a bbolt database holding etcd's buckets, followed by the
/// SHA-256 of the database's bytes (32 bytes), as `etcdctl snapshot save` writes them.
public enum EtcdSnapshot {
    /// The buckets etcd 3.4 creates, in bbolt's (bytewise) order.
    public static let bucketNames: [String] = [
        "alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta",
    ].sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }

    /// Buckets a file must have to be taken for an etcd snapshot.
    public static let requiredBuckets = ["key", "meta"]

    public static let trailerSizeBytes = 32

    /// What `etcdctl snapshot status` reports.
    public struct Status: Sendable, Equatable {
        /// CRC-32C (Castagnoli) of every bucket's name and every key and value, in order.
        public var hash: UInt32
        /// The main revision of the last entry of the `key` bucket.
        public var revision: Int64
        /// Entries in all buckets.
        public var totalKeys: Int
        /// The database's size (pages × page size), without the trailer.
        public var totalSizeBytes: Int
    }

    /// Why a file is refused as an etcd snapshot.
    public enum Problem: Error, CustomStringConvertible, Equatable {
        case bolt(BoltError)
        case missingTrailer(fileSizeBytes: Int, databaseSizeBytes: Int)
        case trailerMismatch(expected: String, actual: String)
        case notEtcd(missing: String, present: [String])
        case trailingBytes(fileSizeBytes: Int, databaseSizeBytes: Int)

        public var description: String {
            switch self {
            case .bolt(let e): return e.description
            case .missingTrailer(let f, let d):
                return "snapshot has no SHA-256 trailer: the file holds \(f) bytes, exactly its bbolt database "
                    + "(\(d) bytes); use --skip-hash-check to accept it (e.g. a db file copied from a data dir)"
            case .trailerMismatch(let expected, let actual):
                return "SHA-256 trailer mismatch: the file ends with \(actual) but the SHA-256 of the database before it is \(expected)"
            case .notEtcd(let missing, let present):
                return "not an etcd snapshot: the bbolt database has no \"\(missing)\" bucket (it has: \(present.isEmpty ? "no buckets" : present.joined(separator: ", ")))"
            case .trailingBytes(let f, let d):
                return "the file holds \(f) bytes: its bbolt database (\(d) bytes) is followed by \(f - d) bytes that are not a 32-byte SHA-256 trailer"
            }
        }
    }

    /// Opens `path` as an etcd snapshot, refusing what is not one: a file that is not bbolt, a
    /// truncated one, one whose SHA-256 trailer does not match (unless `skipHashCheck`, which
    /// also accepts a file without a trailer), one without etcd's buckets.
    public static func open(path: String, skipHashCheck: Bool = false) throws(Problem) -> BoltReader {
        let reader: BoltReader
        do { reader = try BoltReader(path: path) } catch { throw .bolt(error) }
        let fileSize = fileSizeBytes(path: path) ?? reader.fileSizeBytes
        let dbSize = reader.databaseSizeBytes
        if fileSize == dbSize + trailerSizeBytes {
            if !skipHashCheck {
                let actual: [UInt8]
                let expected: [UInt8]
                do {
                    actual = try BoltReader.readAt(fd: readerFD(path), path: path, offset: dbSize, count: trailerSizeBytes, closing: true)
                    expected = try sha256(path: path, count: dbSize)
                } catch { throw .bolt(error) }
                guard actual == expected else { throw .trailerMismatch(expected: hex(expected), actual: hex(actual)) }
            }
        } else if fileSize == dbSize {
            if !skipHashCheck { throw .missingTrailer(fileSizeBytes: fileSize, databaseSizeBytes: dbSize) }
        } else if fileSize < dbSize + trailerSizeBytes {
            throw .bolt(.truncated("the SHA-256 trailer has \(fileSize - dbSize) of its \(trailerSizeBytes) bytes"))
        } else if !skipHashCheck {
            throw .trailingBytes(fileSizeBytes: fileSize, databaseSizeBytes: dbSize)
        }
        let names: [String]
        do { names = try reader.bucketNames().map { printable($0) } } catch let e as BoltError { throw .bolt(e) } catch {
            throw .bolt(.corrupt("\(error)"))
        }
        for required in requiredBuckets where !names.contains(required) {
            throw .notEtcd(missing: required, present: names)
        }
        return reader
    }

    /// What `etcdctl snapshot status` prints for the database `reader` reads.
    public static func status(_ reader: BoltReader) throws -> Status {
        var crc: UInt32 = 0
        var status = Status(hash: 0, revision: 0, totalKeys: 0, totalSizeBytes: reader.databaseSizeBytes)
        for name in try reader.bucketNames() {
            crc = name.withUnsafeBytes { cairn_crc32c_update(crc, $0.baseAddress, $0.count) }
            let isKey = name == Array("key".utf8)
            try reader.forEach(bucket: [name]) { k, v, isBucket in
                crc = cairn_crc32c_update(crc, k.baseAddress, k.count)
                // etcd hashes a nested bucket's value as empty (bbolt hands it out as nil).
                if !isBucket { crc = cairn_crc32c_update(crc, v.baseAddress, v.count) }
                if isKey, k.count >= 8 {
                    var main: UInt64 = 0
                    for i in 0..<8 { main = main << 8 | UInt64(k[i]) }
                    status.revision = Int64(bitPattern: main)
                }
                status.totalKeys += 1
            }
        }
        status.hash = crc
        return status
    }

    /// SHA-256 of the first `count` bytes of `path`, read in bounded chunks.
    public static func sha256(path: String, count: Int) throws(BoltError) -> [UInt8] {
        let fd = try readerFD(path)
        defer { close(fd) }
        var hasher = SHA256()
        let chunkBytes = 1 << 20
        var offset = 0
        while offset < count {
            let n = min(chunkBytes, count - offset)
            hasher.update(try BoltReader.readAt(fd: fd, path: path, offset: offset, count: n))
            offset += n
        }
        return hasher.finalize()
    }

    static func readerFD(_ path: String) throws(BoltError) -> Int32 {
        #if canImport(Glibc)
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        #else
            let fd = Darwin.open(path, O_RDONLY | O_CLOEXEC)
        #endif
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        return fd
    }

    static func fileSizeBytes(path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

extension BoltReader {
    static func readAt(fd: Int32, path: String, offset: Int, count: Int, closing: Bool) throws(BoltError) -> [UInt8] {
        defer { if closing { close(fd) } }
        return try readAt(fd: fd, path: path, offset: offset, count: count)
    }
}
