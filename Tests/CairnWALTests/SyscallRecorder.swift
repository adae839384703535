import CairnFS
import Foundation
import Synchronization

/// One call through a recording `Syscalls` table, with its result.
enum SyscallEvent: Equatable, Sendable {
    case open(path: String, directory: Bool, fd: Int32)
    case close(fd: Int32)
    case pwrite(fd: Int32, offset: Int64, count: Int)
    case fdatasync(fd: Int32, result: Int32)
    case fsync(fd: Int32, result: Int32)
    case mkdir(path: String, result: Int32)
}

/// Wraps a `Syscalls` table and records every open, close, pwrite, sync and mkdir in order.
final class SyscallRecorder: Sendable {
    private let log = Mutex<[SyscallEvent]>([])

    var events: [SyscallEvent] { log.withLock { $0 } }

    func clear() { log.withLock { $0.removeAll() } }

    private func add(_ event: SyscallEvent) { log.withLock { $0.append(event) } }

    /// `base` with recording wrapped around it (faults injected into `base` are recorded too).
    func syscalls(_ base: Syscalls = .live) -> Syscalls {
        var s = base
        s.open = { path, flags, mode in
            let fd = base.open(path, flags, mode)
            self.add(.open(path: path, directory: flags & O_DIRECTORY != 0, fd: fd))
            return fd
        }
        s.close = { fd in
            self.add(.close(fd: fd))
            return base.close(fd)
        }
        s.pwrite = { fd, buf, offset in
            self.add(.pwrite(fd: fd, offset: offset, count: buf.count))
            return base.pwrite(fd, buf, offset)
        }
        s.fdatasync = { fd in
            let r = base.fdatasync(fd)
            self.add(.fdatasync(fd: fd, result: r))
            return r
        }
        s.fsync = { fd in
            let r = base.fsync(fd)
            self.add(.fsync(fd: fd, result: r))
            return r
        }
        s.mkdir = { path, mode in
            let r = base.mkdir(path, mode)
            self.add(.mkdir(path: path, result: r))
            return r
        }
        return s
    }

    /// The path descriptor `fd` named at event `position` (the last open before it that returned `fd`).
    func path(of fd: Int32, at position: Int, in events: [SyscallEvent]) -> (path: String, directory: Bool)? {
        for event in events[..<position].reversed() {
            if case .open(let path, let directory, let opened) = event, opened == fd { return (path, directory) }
        }
        return nil
    }

    /// Paths of directories fsynced, in order.
    func fsyncedDirectories() -> [String] {
        let all = events
        var out: [String] = []
        for (i, event) in all.enumerated() {
            if case .fsync(let fd, _) = event, let p = path(of: fd, at: i, in: all), p.directory { out.append(p.path) }
        }
        return out
    }
}
