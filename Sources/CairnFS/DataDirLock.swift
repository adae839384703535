import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An exclusive advisory lock on a data directory, held by the server and by
/// any offline tool that modifies the directory.
///
/// The lock is an `flock(LOCK_EX | LOCK_NB)` on the file `LOCK` in the
/// directory. The holder writes its pid and program name into the file so a
/// refused locker can say who holds it. The lock is released by `unlock()` or
/// when the process exits (the kernel drops flocks with the descriptor).
public final class DataDirLock: Sendable {
    /// The name of the lock file inside a data directory.
    public static let fileName = "LOCK"

    /// Why a data directory could not be locked.
    public enum LockError: Error, CustomStringConvertible, Equatable {
        /// Another process holds the lock; `holder` is what it wrote into the file.
        case held(lockPath: String, holder: String)
        /// The lock file could not be opened or locked.
        case io(FSError)

        public var description: String {
            switch self {
            case .held(let lockPath, let holder):
                let who = holder.isEmpty ? "another process" : holder
                return "data directory is in use: \(lockPath) is locked by \(who)"
            case .io(let error): return "cannot lock data directory: \(error)"
            }
        }
    }

    /// Path of the lock file.
    public let path: String
    private let file: FSFile
    /// Whether `unlock()` already closed `file` (guards against closing a reused descriptor).
    private let released = Mutex(false)

    private init(path: String, file: FSFile) {
        self.path = path
        self.file = file
    }

    /// Takes the lock on `directory`, failing when another process still holds it
    /// after `patienceMilliseconds`.
    ///
    /// The short patience covers a lock that is being released: a process that
    /// spawns a child shares its descriptors with the child until the child's
    /// `exec` closes them (O_CLOEXEC), so a lock closed by the parent can stay held
    /// for that instant.
    /// - Parameter owner: a short description written into the lock file (program name).
    public static func acquire(
        directory: String, owner: String, patienceMilliseconds: Int = 250, fileSystem: FileSystem = .live
    ) throws(LockError) -> DataDirLock {
        let path = directory + "/" + fileName
        let file: FSFile
        do { file = try fileSystem.open(path, flags: O_RDWR | O_CREAT, mode: 0o600) } catch { throw .io(error) }
        var r = fileSystem.syscalls.flock(file.fd, LOCK_EX | LOCK_NB)
        var waitedMilliseconds = 0
        while r != 0 && (-r == EWOULDBLOCK || -r == EAGAIN) && waitedMilliseconds < patienceMilliseconds {
            usleep(5_000)
            waitedMilliseconds += 5
            r = fileSystem.syscalls.flock(file.fd, LOCK_EX | LOCK_NB)
        }
        if r != 0 {
            let holder = (try? file.read(at: 0, count: 512)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            file.close()
            if -r == EWOULDBLOCK || -r == EAGAIN {
                throw .held(lockPath: path, holder: holder.trimmingCharacters())
            }
            throw .io(FSError(operation: "flock", path: path, errno: -r))
        }
        let note = Array("pid \(getpid()) (\(owner))\n".utf8)
        do {
            try file.truncate(to: 0)
            try file.write(note, at: 0)
        } catch {
            file.close()
            throw .io(error)
        }
        return DataDirLock(path: path, file: file)
    }

    /// Releases the lock (closing the descriptor drops the flock). Idempotent:
    /// only the first call closes the descriptor, so a later call cannot close a
    /// descriptor number the process has since reused.
    public func unlock() {
        let first = released.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        if first { file.close() }
    }
}

extension String {
    fileprivate func trimmingCharacters() -> String {
        var s = Substring(self)
        while let last = s.last, last.isWhitespace || last == "\0" { s = s.dropLast() }
        return String(s)
    }
}

/// Names of files in a member directory (`<data-dir>/member`) that more than one module writes.
public enum MemberFiles {
    /// Present while the keyspace holds data the WAL does not (restored from an etcd snapshot,
    /// before the member's first snapshot of its own). Written by the restore into its staging
    /// directory, so it lands with the keyspace; removed by the server after that snapshot.
    public static let keyspaceRestoredFlag = "keyspace.restored"
}
