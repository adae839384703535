import CairnFS
import CairnWAL
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Tells a machine crash from a process crash for the keyspace, which commits without fsync.
///
/// The backend (LMDB with `MDB_NOSYNC`) is synced only after each snapshot, before WAL segments
/// are released, and at a clean stop: the WAL is the durable record in between. A killed
/// process loses nothing (its commits are in the kernel's page cache), but after a machine
/// crash the file may have lost its last commits, or hold a B-tree whose pages were written
/// out of order, which LMDB cannot detect. So while a member runs, `member/keyspace.unsynced`
/// holds the kernel's boot id (written before the backend is opened, removed after the sync of
/// a clean stop). At the next start, a marker from another boot means the machine went down
/// with unsynced commits: the keyspace is moved aside unopened (`member/keyspace.unclean-<unix
/// time>`, never deleted by the server) and the member rebuilds it from the newest snapshot and
/// the WAL, which hold every committed entry. A marker from this boot (a killed process) leaves
/// the keyspace as it is. When the keyspace is kept although the marker names another boot
/// (it cannot be rebuilt), the marker keeps that boot's id, so the question is asked again at
/// the next start (for example once a late-mounted `--wal-dir` is back).
///
/// A keyspace restored from an etcd snapshot (`cairnctl snapshot restore`,
/// `--initial-etcd-snapshot`) holds data that the WAL does not, until the member's first
/// snapshot: `member/keyspace.restored` says so (the restore writes it with the keyspace), the
/// member takes that snapshot as soon as it starts, and until then a keyspace from another
/// boot is kept (with an error in the log), as it cannot be rebuilt.
public enum KeyspaceCrashGuard {
    static func markerPath(_ options: ServerOptions) -> String { options.memberDirectory + "/keyspace.unsynced" }
    static func restoredPath(_ options: ServerOptions) -> String {
        options.memberDirectory + "/" + MemberFiles.keyspaceRestoredFlag
    }
    /// Set-aside keyspaces are named `keyspace.unclean-<unix seconds>[-n]` in the member directory.
    public static let setAsidePrefix = "keyspace.unclean-"

    /// The kernel's id of this boot (`/proc/sys/kernel/random/boot_id`); nil if unreadable.
    public static func currentBootID() -> String? {
        // A /proc file reports size 0: read what one read returns (a UUID and a newline).
        guard let file = try? FileSystem.live.open("/proc/sys/kernel/random/boot_id", flags: O_RDONLY) else { return nil }
        defer { file.close() }
        var buffer = [UInt8](repeating: 0, count: 128)
        let n = (try? buffer.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }) ?? 0
        let id = String(decoding: buffer[0..<n], as: UTF8.self).trimmingWhitespace
        return id.isEmpty ? nil : id
    }

    /// Call before the backend is opened. If the keyspace was left with unsynced commits by
    /// another boot and can be rebuilt, moves it aside and returns where it went; then (in
    /// every case) records this boot in the marker, before anything is written.
    public static func prepare(_ options: ServerOptions, bootID: String?, logger: Logger) throws -> String? {
        let fs = FileSystem.live
        let marker = markerPath(options)
        var setAside: String?
        var keptFromAnotherBoot = false
        if fs.exists(marker), fs.isDirectory(options.keyspaceDirectory) {
            let recorded = String(decoding: try fs.readFile(marker), as: UTF8.self).trimmingWhitespace
            // Without a boot id nothing tells the two crashes apart: assume the worse.
            if bootID == nil || recorded != bootID {
                setAside = try setAsideIfRebuildable(options, recordedBoot: recorded, logger: logger)
                keptFromAnotherBoot = setAside == nil
            }
        }
        if !keptFromAnotherBoot { try fs.writeFileDurably(marker, Array(((bootID ?? "unknown") + "\n").utf8)) }
        return setAside
    }

    private static func setAsideIfRebuildable(_ options: ServerOptions, recordedBoot: String, logger: Logger) throws -> String? {
        let fs = FileSystem.live
        let walDir = options.resolvedWALDirectory
        let hasWAL = try fs.isDirectory(walDir) && fs.listDirectory(walDir).contains { $0.hasSuffix(WALFormat.segmentSuffix) }
        // Without the restored flag, the WAL from index 1, or from a snapshot it has a marker
        // for (segments are released only after one), holds every entry the keyspace applied.
        guard hasWAL, !fs.exists(restoredPath(options)) else {
            logger.error(
                "the machine restarted while the keyspace had unsynced commits, and it cannot be rebuilt (restored from an etcd snapshot, no snapshot of its own yet, or no WAL): keeping it as it is; check it with etcdctl endpoint hashkv, or restore again",
                metadata: ["keyspace": "\(options.keyspaceDirectory)", "written-in-boot": "\(recordedBoot)"])
            return nil
        }
        // Never overwrite an earlier copy: it may be the only one of something a failed rebuild
        // needed. (rename moves a symbolic link itself, not what it points to.)
        let stamp = options.memberDirectory + "/" + setAsidePrefix + String(time(nil))
        var aside = stamp
        var n = 1
        while fs.exists(aside) {
            n += 1
            aside = stamp + "-\(n)"
        }
        try fs.rename(options.keyspaceDirectory, aside)
        try fs.fsyncDirectory(options.memberDirectory)
        logger.warning(
            "the machine restarted while the keyspace had unsynced commits: moved it aside unopened; rebuilding it from the newest snapshot and the WAL (remove the copy once the member serves)",
            metadata: ["moved-to": "\(aside)", "written-in-boot": "\(recordedBoot)"])
        return aside
    }

    /// Call after a clean stop synced the backend: nothing is unsynced any more.
    public static func markClean(_ options: ServerOptions) throws {
        try FileSystem.live.removeFileDurably(markerPath(options))
    }

    /// A new member over a restored keyspace: until its first snapshot, the WAL cannot rebuild it.
    static func markRestored(_ options: ServerOptions) throws {
        guard !FileSystem.live.exists(restoredPath(options)) else { return }
        try FileSystem.live.writeFileDurably(
            restoredPath(options), Array("restored from a snapshot; the member has no snapshot of its own yet\n".utf8))
    }

    /// After the member's snapshot (and backend sync): the keyspace can be rebuilt again.
    static func clearRestored(_ options: ServerOptions) throws {
        try FileSystem.live.removeFileDurably(restoredPath(options))
    }

    static func isRestored(_ options: ServerOptions) -> Bool { FileSystem.live.exists(restoredPath(options)) }

}

extension String {
    fileprivate var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
