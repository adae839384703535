import CairnBackend
import CairnBolt
import CairnFS
import CairnLMDB
import CairnMVCC
import Foundation

/// An etcd 3.4 snapshot file into a new Cairn data directory: `cairnctl snapshot restore`, and
/// `cairn --initial-etcd-snapshot` on a first start.
///
/// ## The directory it makes
/// `<data-dir>/member/keyspace`: the LMDB keyspace holding the snapshot's `key` bucket (every
/// revision kept since the last compaction, tombstones included), its `lease` bucket, and
/// from its `meta` bucket the compaction revisions — but no `consistent_index`. Nothing else:
/// no WAL, no snapshot files. `cairn` opens such a directory as a new member whose keyspace is
/// already populated: `RaftServer.open` accepts a directory without a WAL only when the
/// keyspace's applied index is 0 and there are no snapshot files, then creates the WAL with a
/// Raft log starting at index 1, so applied index 0 and the log agree. The keyspace keeps its
/// revisions (the next write gets revision + 1), versions, leases and compaction revision.
/// The member's ids derive from `--name`, the peer URLs and the token when `cairn` first starts,
/// so start it with the same values as the restore (as with etcd).
///
/// ## Refusals
/// The file is verified before anything is written: bbolt structure, size (truncation), the
/// SHA-256 trailer (unless `--skip-hash-check`), etcd's buckets, and every revision key and
/// value as the keyspace decodes them. The directory is built beside the target
/// (`<data-dir>.restoring-<random>`) and renamed into place only when complete; on any
/// failure it is removed and the target does not exist.
public struct EtcdSnapshotRestore: Sendable {
    public var snapshotPath: String
    public var dataDirectory: String
    public var name: String
    public var initialCluster: String
    public var initialClusterToken: String
    public var peerURLs: String
    public var skipHashCheck: Bool

    public init(
        snapshotPath: String, dataDirectory: String, name: String, initialCluster: String, initialClusterToken: String,
        peerURLs: String, skipHashCheck: Bool
    ) {
        self.snapshotPath = snapshotPath
        self.dataDirectory = dataDirectory
        self.name = name
        self.initialCluster = initialCluster
        self.initialClusterToken = initialClusterToken
        self.peerURLs = peerURLs
        self.skipHashCheck = skipHashCheck
    }

    public struct Summary: Sendable {
        public var revision: Int64
        public var keys: Int
        public var revisions: Int
        public var compactedRevision: Int64
        public var leases: Int
    }

    /// Why a restore was refused or failed; nothing is left in the target directory.
    public enum Failure: Error, CustomStringConvertible {
        /// The arguments are malformed (a bad `--initial-cluster` entry).
        case badArguments(String)
        case failed(String)
        public var description: String {
            switch self {
            case .badArguments(let m), .failed(let m): return m
            }
        }
    }

    /// Entries per backend write transaction while copying.
    static let batchEntries = 10_000
    /// Buckets copied into the keyspace's tables of the same name.
    static let copiedBuckets = ["key", "lease", "meta"]
    /// `meta` entries not copied: the applied index belongs to the source's Raft log.
    static let droppedMetaKeys: Set<[UInt8]> = [Array("consistent_index".utf8)]

    public func run() throws -> Summary {
        try self.checkMembership()
        if FileManager.default.fileExists(atPath: self.dataDirectory) {
            throw Failure.failed("data-dir \"\(self.dataDirectory)\" exists")
        }
        let reader: BoltReader
        do { reader = try EtcdSnapshot.open(path: self.snapshotPath, skipHashCheck: self.skipHashCheck) } catch {
            throw Failure.failed("\(self.snapshotPath): \(error)")
        }
        let staging = self.dataDirectory + ".restoring-\(UInt64.random(in: 0...UInt64.max))"
        do {
            let summary = try self.build(from: reader, in: staging)
            // The keyspace holds data no WAL does until the member's first snapshot: say so
            // in the same rename, so a machine crash before that snapshot never rebuilds it
            // from the WAL alone (see the server's KeyspaceCrashGuard).
            let fs = FileSystem.live
            try fs.writeFileDurably(
                staging + "/member/" + MemberFiles.keyspaceRestoredFlag, Array("restored from \(self.snapshotPath)\n".utf8))
            try fs.fsyncDirectory(staging + "/member/keyspace")
            try fs.fsyncDirectory(staging)
            guard rename(staging, self.dataDirectory) == 0 else {
                throw Failure.failed("could not rename \(staging) to \(self.dataDirectory): \(String(cString: strerror(errno)))")
            }
            try fs.fsyncDirectory(parentDirectory(of: self.dataDirectory))
            return summary
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        }
    }

    /// etcd's bootstrap checks: this member is in `--initial-cluster` with exactly its peer URLs.
    /// Cairn runs one member, so the cluster must name only this one.
    func checkMembership() throws(Failure) {
        var members: [String: [String]] = [:]
        for item in self.initialCluster.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw .badArguments("invalid --initial-cluster entry \"\(item)\": want name=url") }
            members[String(parts[0]), default: []].append(String(parts[1]))
        }
        guard let urls = members[self.name] else {
            throw Failure.failed("couldn't find local name \"\(self.name)\" in the initial cluster configuration")
        }
        let advertised = self.peerURLs.split(separator: ",").map(String.init)
        guard urls.sorted() == advertised.sorted() else {
            throw Failure.failed("--initial-cluster has \(self.name)=\(urls.joined(separator: ",")) but missing from --initial-advertise-peer-urls=\(self.peerURLs)")
        }
        guard members.count == 1 else {
            throw Failure.failed("--initial-cluster names \(members.count) members; a Cairn data directory is for a one-member cluster")
        }
    }

    private func build(from reader: BoltReader, in staging: String) throws -> Summary {
        try FileManager.default.createDirectory(atPath: staging + "/member", withIntermediateDirectories: true)
        // Room for the data as LMDB lays it out, and at least the server's default.
        let quota = max(BackendConfiguration.defaultQuotaBytes, Int64(reader.databaseSizeBytes) * 3)
        do {
            let backend = try LMDBBackend(
                path: staging + "/member/keyspace",
                configuration: BackendConfiguration(tables: Keyspace<LMDBBackend>.tableNames, quotaBytes: quota))
            for name in Self.copiedBuckets {
                let table = try backend.table(named: name)
                var batch: [([UInt8], [UInt8])] = []
                batch.reserveCapacity(Self.batchEntries)
                func flush() throws {
                    let items = batch
                    try backend.write { tx in for (k, v) in items { try tx.put(table, k, v) } }
                    batch.removeAll(keepingCapacity: true)
                }
                do {
                    try reader.forEach(bucket: [Array(name.utf8)]) { k, v, isBucket in
                        guard !isBucket else { throw BoltError.corrupt("bucket \(name) holds a nested bucket") }
                        let key = [UInt8](k)
                        if name == "meta" && Self.droppedMetaKeys.contains(key) { return }
                        batch.append((key, [UInt8](v)))
                        if batch.count >= Self.batchEntries { try flush() }
                    }
                } catch BoltError.noSuchBucket where name == "lease" {
                    // etcd before 3.0's leases had none; nothing to copy.
                }
                try flush()
            }
            try backend.sync()
            // Opening the keyspace decodes every revision and lease, as the server will.
            let keyspace: Keyspace<LMDBBackend>
            do { keyspace = try Keyspace(backend: backend) } catch {
                throw Failure.failed("\(self.snapshotPath): not a usable etcd keyspace: \(error)")
            }
            // (stats(), not a read transaction's count: under cross-module optimization a plain
            // release build referenced LMDBReading.count, which CairnLMDB does not export.)
            let revisions = try backend.stats().entriesByTable["key"] ?? 0
            return Summary(
                revision: keyspace.revision, keys: keyspace.keyCount, revisions: revisions,
                compactedRevision: keyspace.compactedRevision, leases: keyspace.allLeases().count)
        }
    }
}
