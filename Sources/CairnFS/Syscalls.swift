#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The raw system calls Cairn's storage code makes, as replaceable closures.
///
/// Every closure follows the C convention of its syscall: it returns -1 (or a
/// negative count) and reports the error number through the returned `errno`
/// value instead of the global, so injected faults need no global state.
/// Tests build a `Syscalls` from `.live` and override single members to inject
/// ENOSPC, EIO on fsync, or short writes; production code uses `.live`.
public struct Syscalls: Sendable {
    /// `open(path, flags, mode)` → fd or -errno.
    public var open: @Sendable (_ path: String, _ flags: Int32, _ mode: UInt32) -> Int32
    /// `close(fd)` → 0 or -errno.
    public var close: @Sendable (_ fd: Int32) -> Int32
    /// `pwrite(fd, buf, offset)` → bytes written (possibly short) or -errno.
    public var pwrite: @Sendable (_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64) -> Int
    /// `pread(fd, buf, offset)` → bytes read or -errno.
    public var pread: @Sendable (_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ offset: Int64) -> Int
    /// `fdatasync(fd)` → 0 or -errno.
    public var fdatasync: @Sendable (_ fd: Int32) -> Int32
    /// `fsync(fd)` → 0 or -errno (files and directories).
    public var fsync: @Sendable (_ fd: Int32) -> Int32
    /// `fallocate(fd, 0, offset, length)` → 0 or -errno.
    public var fallocate: @Sendable (_ fd: Int32, _ offset: Int64, _ length: Int64) -> Int32
    /// `ftruncate(fd, length)` → 0 or -errno.
    public var ftruncate: @Sendable (_ fd: Int32, _ length: Int64) -> Int32
    /// `rename(from, to)` → 0 or -errno.
    public var rename: @Sendable (_ from: String, _ to: String) -> Int32
    /// `unlink(path)` → 0 or -errno.
    public var unlink: @Sendable (_ path: String) -> Int32
    /// `flock(fd, op)` → 0 or -errno.
    public var flock: @Sendable (_ fd: Int32, _ operation: Int32) -> Int32
    /// `mkdir(path, mode)` → 0 or -errno (-EEXIST when the path exists).
    public var mkdir: @Sendable (_ path: String, _ mode: UInt32) -> Int32

    public init(
        open: @escaping @Sendable (String, Int32, UInt32) -> Int32,
        close: @escaping @Sendable (Int32) -> Int32,
        pwrite: @escaping @Sendable (Int32, UnsafeRawBufferPointer, Int64) -> Int,
        pread: @escaping @Sendable (Int32, UnsafeMutableRawBufferPointer, Int64) -> Int,
        fdatasync: @escaping @Sendable (Int32) -> Int32,
        fsync: @escaping @Sendable (Int32) -> Int32,
        fallocate: @escaping @Sendable (Int32, Int64, Int64) -> Int32,
        ftruncate: @escaping @Sendable (Int32, Int64) -> Int32,
        rename: @escaping @Sendable (String, String) -> Int32,
        unlink: @escaping @Sendable (String) -> Int32,
        flock: @escaping @Sendable (Int32, Int32) -> Int32,
        mkdir: @escaping @Sendable (String, UInt32) -> Int32 = { path, mode in
            Glibc.mkdir(path, mode_t(mode)) == 0 ? 0 : -errno
        }
    ) {
        self.open = open
        self.close = close
        self.pwrite = pwrite
        self.pread = pread
        self.fdatasync = fdatasync
        self.fsync = fsync
        self.fallocate = fallocate
        self.ftruncate = ftruncate
        self.rename = rename
        self.unlink = unlink
        self.flock = flock
        self.mkdir = mkdir
    }

    /// The real system calls.
    public static let live = Syscalls(
        open: { path, flags, mode in
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode_t(mode))
            return fd >= 0 ? fd : -errno
        },
        close: { fd in Glibc.close(fd) == 0 ? 0 : -errno },
        pwrite: { fd, buf, offset in
            while true {
                let n = Glibc.pwrite(fd, buf.baseAddress, buf.count, off_t(offset))
                if n >= 0 { return n }
                if errno == EINTR { continue }
                return -Int(errno)
            }
        },
        pread: { fd, buf, offset in
            while true {
                let n = Glibc.pread(fd, buf.baseAddress, buf.count, off_t(offset))
                if n >= 0 { return n }
                if errno == EINTR { continue }
                return -Int(errno)
            }
        },
        fdatasync: { fd in
            #if os(Linux)
            return Glibc.fdatasync(fd) == 0 ? 0 : -errno
            #else
            return Glibc.fsync(fd) == 0 ? 0 : -errno
            #endif
        },
        fsync: { fd in Glibc.fsync(fd) == 0 ? 0 : -errno },
        fallocate: { fd, offset, length in
            #if os(Linux)
            let e = posix_fallocate(fd, off_t(offset), off_t(length))
            if e == 0 { return 0 }
            // Filesystems without fallocate (tmpfs on old kernels, some FUSE): extend instead.
            if e == EOPNOTSUPP || e == EINVAL {
                var st = stat()
                if fstat(fd, &st) == 0, Int64(st.st_size) < offset + length {
                    return Glibc.ftruncate(fd, off_t(offset + length)) == 0 ? 0 : -errno
                }
                return 0
            }
            return -e
            #else
            return Glibc.ftruncate(fd, off_t(offset + length)) == 0 ? 0 : -errno
            #endif
        },
        ftruncate: { fd, length in Glibc.ftruncate(fd, off_t(length)) == 0 ? 0 : -errno },
        rename: { from, to in Glibc.rename(from, to) == 0 ? 0 : -errno },
        unlink: { path in Glibc.unlink(path) == 0 ? 0 : -errno },
        flock: { fd, op in
            while true {
                guard let flockFunction = cFlock else { return -ENOSYS }
                if flockFunction(fd, op) == 0 { return 0 }
                if errno == EINTR { continue }
                return -errno
            }
        }
    )
}

/// `flock(2)`: Swift imports the `struct flock` of <fcntl.h> under the same name,
/// which hides the function, so it is looked up once by symbol.
private let cFlock: (@convention(c) (Int32, Int32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "flock") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
}()
