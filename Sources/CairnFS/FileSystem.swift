#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed file-system operation: which call, on which path, and the errno.
public struct FSError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The operation that failed ("pwrite", "fdatasync", …).
    public var operation: String
    /// The file or directory it was applied to.
    public var path: String
    /// The POSIX error number.
    public var errno: Int32

    public init(operation: String, path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    /// True when the device is out of space (ENOSPC, EDQUOT).
    public var isOutOfSpace: Bool { errno == ENOSPC || errno == EDQUOT }

    public var description: String {
        let message = String(cString: strerror(errno))
        return "\(operation) \(path): \(message) (errno \(errno))"
    }
}

/// The single place Cairn's storage layer performs file-system syscalls.
///
/// Wraps a `Syscalls` table so tests can inject faults; every method throws
/// `FSError` naming the operation and the path.
public struct FileSystem: Sendable {
    /// The syscalls in use.
    public var syscalls: Syscalls

    public init(syscalls: Syscalls = .live) {
        self.syscalls = syscalls
    }

    /// The real file system.
    public static let live = FileSystem()

    /// Opens `path` with POSIX `flags` (O_RDONLY, O_RDWR|O_CREAT, …).
    public func open(_ path: String, flags: Int32, mode: UInt32 = 0o644) throws(FSError) -> FSFile {
        let fd = syscalls.open(path, flags, mode)
        if fd < 0 { throw FSError(operation: "open", path: path, errno: -fd) }
        return FSFile(fd: fd, path: path, syscalls: syscalls)
    }

    /// Renames `from` to `to` (atomic replace on POSIX file systems).
    public func rename(_ from: String, _ to: String) throws(FSError) {
        let r = syscalls.rename(from, to)
        if r != 0 { throw FSError(operation: "rename to \(to)", path: from, errno: -r) }
    }

    /// Removes a file.
    public func unlink(_ path: String) throws(FSError) {
        let r = syscalls.unlink(path)
        if r != 0 { throw FSError(operation: "unlink", path: path, errno: -r) }
    }

    /// Fsyncs a directory so creations, renames and removals in it are durable.
    public func fsyncDirectory(_ path: String) throws(FSError) {
        let fd = syscalls.open(path, O_RDONLY | O_DIRECTORY, 0)
        if fd < 0 { throw FSError(operation: "open directory", path: path, errno: -fd) }
        defer { _ = syscalls.close(fd) }
        let r = syscalls.fsync(fd)
        if r != 0 { throw FSError(operation: "fsync directory", path: path, errno: -r) }
    }

    /// Creates a directory (and its parents) if missing.
    ///
    /// Each directory this call creates is made durable in its parent: the parent
    /// is fsynced after the `mkdir`, so a crash cannot lose the new directory (and
    /// with it every file later created and synced inside it).
    public func createDirectory(_ path: String, mode: UInt32 = 0o700) throws(FSError) {
        var components: [String] = []
        var current = ""
        for part in path.split(separator: "/", omittingEmptySubsequences: false) {
            components.append(String(part))
            current = components.joined(separator: "/")
            if current.isEmpty { continue }
            let r = syscalls.mkdir(current, mode)
            if r == -EEXIST { continue }
            if r != 0 { throw FSError(operation: "mkdir", path: current, errno: -r) }
            try fsyncDirectory(parentDirectory(of: current))
        }
    }

    /// Names of the entries in a directory (without "." and ".."), sorted.
    public func listDirectory(_ path: String) throws(FSError) -> [String] {
        guard let dir = opendir(path) else { throw FSError(operation: "opendir", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Whether a path exists.
    public func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// Whether a path is a directory.
    public func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Size of a file in bytes.
    public func fileSize(_ path: String) throws(FSError) -> Int64 {
        var st = stat()
        if stat(path, &st) != 0 { throw FSError(operation: "stat", path: path, errno: errno) }
        return Int64(st.st_size)
    }

    /// Reads a whole file.
    public func readFile(_ path: String) throws(FSError) -> [UInt8] {
        let file = try open(path, flags: O_RDONLY)
        defer { file.close() }
        let size = try file.size()
        return try file.read(at: 0, count: Int(size))
    }

    /// Replaces `path` with `bytes` atomically and durably: written to `path.tmp`, fsynced,
    /// renamed over `path`, and the directory fsynced.
    public func writeFileDurably(_ path: String, _ bytes: [UInt8]) throws(FSError) {
        let tmp = path + ".tmp"
        let file = try open(tmp, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        do {
            try file.write(bytes, at: 0)
            try file.fsync()
        } catch {
            file.close()
            throw error
        }
        file.close()
        try rename(tmp, path)
        try fsyncDirectory(parentDirectory(of: path))
    }

    /// Removes `path` if it exists, durably (the directory fsynced).
    public func removeFileDurably(_ path: String) throws(FSError) {
        guard exists(path) else { return }
        try unlink(path)
        try fsyncDirectory(parentDirectory(of: path))
    }

    /// Copies a file byte for byte to `to` (created exclusively), fsyncing the copy
    /// and its directory: used to keep a copy before any repair.
    public func copyFile(_ from: String, to: String) throws(FSError) {
        let src = try open(from, flags: O_RDONLY)
        defer { src.close() }
        let dst = try open(to, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        defer { dst.close() }
        let chunkBytes = 1 << 20
        var offset: Int64 = 0
        while true {
            let chunk = try src.read(at: offset, count: chunkBytes)
            if chunk.isEmpty { break }
            try dst.write(chunk, at: offset)
            offset += Int64(chunk.count)
            if chunk.count < chunkBytes { break }
        }
        try dst.fsync()
        try fsyncDirectory(parentDirectory(of: to))
    }
}

/// The directory part of a path ("." when there is none).
public func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    if slash == path.startIndex { return "/" }
    return String(path[..<slash])
}

/// An open file descriptor whose I/O goes through a `Syscalls` table.
///
/// Not safe for concurrent use of `close()` with other calls; positional
/// reads and writes from several threads are fine (pread/pwrite).
public final class FSFile: Sendable {
    /// The descriptor.
    public let fd: Int32
    /// The path it was opened with.
    public let path: String
    let syscalls: Syscalls

    init(fd: Int32, path: String, syscalls: Syscalls) {
        self.fd = fd
        self.path = path
        self.syscalls = syscalls
    }

    /// Writes all of `bytes` at `offset`; a short write is retried for the rest,
    /// a write that makes no progress fails with EIO.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FSError) {
        var done = 0
        while done < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[done...])
            let n = syscalls.pwrite(fd, rest, offset + Int64(done))
            if n < 0 { throw FSError(operation: "pwrite", path: path, errno: Int32(-n)) }
            if n == 0 { throw FSError(operation: "pwrite (no progress)", path: path, errno: EIO) }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: [UInt8], at offset: Int64) throws(FSError) {
        let result: Result<Void, FSError> = bytes.withUnsafeBytes { raw in
            do throws(FSError) { try write(raw, at: offset); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// Writes the first `count` bytes of `bytes` at `offset`.
    public func write(_ bytes: [UInt8], prefix count: Int, at offset: Int64) throws(FSError) {
        precondition(count <= bytes.count)
        let result: Result<Void, FSError> = bytes.withUnsafeBytes { raw in
            do throws(FSError) {
                try write(UnsafeRawBufferPointer(rebasing: raw[0..<count]), at: offset)
                return .success(())
            } catch { return .failure(error) }
        }
        try result.get()
    }

    /// Reads up to `count` bytes at `offset` (fewer at end of file).
    public func read(at offset: Int64, count: Int) throws(FSError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let result: Result<Int, FSError> = out.withUnsafeMutableBytes { raw in
            do throws(FSError) { return .success(try read(into: raw, at: offset)) } catch { return .failure(error) }
        }
        let n = try result.get()
        if n < count { out.removeSubrange(n...) }
        return out
    }

    /// Fills `buffer` from `offset`; returns the number of bytes read (short only at end of file).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(FSError) -> Int {
        var done = 0
        while done < buffer.count {
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            let n = syscalls.pread(fd, rest, offset + Int64(done))
            if n < 0 { throw FSError(operation: "pread", path: path, errno: Int32(-n)) }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Flushes the file's data (and the metadata needed to read it) to stable storage.
    public func fdatasync() throws(FSError) {
        let r = syscalls.fdatasync(fd)
        if r != 0 { throw FSError(operation: "fdatasync", path: path, errno: -r) }
    }

    /// Flushes the file's data and metadata.
    public func fsync() throws(FSError) {
        let r = syscalls.fsync(fd)
        if r != 0 { throw FSError(operation: "fsync", path: path, errno: -r) }
    }

    /// Allocates `length` bytes from `offset` so later writes cannot fail for space.
    public func allocate(offset: Int64, length: Int64) throws(FSError) {
        let r = syscalls.fallocate(fd, offset, length)
        if r != 0 { throw FSError(operation: "fallocate", path: path, errno: -r) }
    }

    /// Sets the file's size.
    public func truncate(to length: Int64) throws(FSError) {
        let r = syscalls.ftruncate(fd, length)
        if r != 0 { throw FSError(operation: "ftruncate", path: path, errno: -r) }
    }

    /// The file's current size.
    public func size() throws(FSError) -> Int64 {
        var st = stat()
        if fstat(fd, &st) != 0 { throw FSError(operation: "fstat", path: path, errno: errno) }
        return Int64(st.st_size)
    }

    /// Closes the descriptor. Call once.
    public func close() {
        _ = syscalls.close(fd)
    }
}
