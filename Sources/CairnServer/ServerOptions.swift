import CairnMVCC
import CairnWAL

/// What a member needs to know to run (the subset of etcd's flags the core uses).
public struct ServerOptions: Sendable {
    public var name = "default"
    /// The member's data directory (`--data-dir`); the member's files live in `<dataDirectory>/member`.
    public var dataDirectory: String
    /// Where the WAL lives (`--wal-dir`); default `<dataDirectory>/member/wal`.
    public var walDirectory: String?
    public var initialClusterToken = "etcd-cluster"
    /// This member's advertised peer URLs (`--initial-advertise-peer-urls`).
    public var peerURLs = ["http://localhost:2380"]
    /// This member's advertised client URLs (`--advertise-client-urls`).
    public var clientURLs = ["http://localhost:2379"]
    /// One Raft tick (`--heartbeat-interval`).
    public var heartbeatIntervalMilliseconds = 100
    /// `--election-timeout`; divided by the heartbeat interval gives the election ticks.
    public var electionTimeoutMilliseconds = 1000
    /// Applied entries between two snapshots (`--snapshot-count`).
    public var snapshotCount: UInt64 = 100_000
    /// Entries kept in the in-memory Raft log behind a snapshot, for slow followers.
    public var snapshotCatchUpEntries: UInt64 = 5000
    /// Snapshot files kept (`--max-snapshots`; 0 = all).
    public var maxSnapshots = 5
    /// WAL segments kept once a snapshot covers them (`--max-wals`; 0 = all).
    public var maxWALs = 5
    /// How WAL segments get their space. Zeros written ahead of use make each sync flush only
    /// data: on ext4 a write into `fallocate`d (unwritten) space also commits the journal to
    /// convert the extent. Measured here (5,000-byte appends + fdatasync): p50 97 µs and 44 µs
    /// of CPU against 155 µs and 61 µs (docs/benchmarks.md). A new member writes its first
    /// segment's 64 MiB of zeros before it starts (about 0.2 s here); later ones are prepared
    /// in the background.
    public var walPreallocation: WALPreallocation = .zeroFill
    /// The backend quota (`--quota-backend-bytes`); reached, writes fail with NOSPACE.
    public var quotaBackendBytes: Int64 = 2 << 30
    /// Writes waiting for their entry to be applied; beyond it, "etcdserver: too many requests".
    public var maxPendingRequests = 50_000
    /// A write not applied within this fails with "etcdserver: request timed out" (its outcome
    /// is then unknown, as with etcd). nil: etcd's 5 s + 2 × the election timeout.
    public var requestTimeoutMilliseconds: Int?
    /// Committed entries waiting for the applier before the Raft loop stops taking more.
    public var maxApplyBacklogEntries = 100_000
    /// Entries applied in one backend write transaction, at most.
    public var maxApplyBatchEntries = 8192
    /// Lease expiry is checked this often on the leader.
    public var leaseCheckIntervalMilliseconds = 500
    /// Most expired leases revoked per check.
    public var maxLeaseRevokesPerCheck = 1000
    /// etcd's server version reported by Status and /version.
    public var etcdVersion = "3.4.0"

    public init(dataDirectory: String) {
        self.dataDirectory = dataDirectory
    }

    public var effectiveRequestTimeoutMilliseconds: Int { requestTimeoutMilliseconds ?? 5000 + 2 * electionTimeoutMilliseconds }

    public var memberDirectory: String { dataDirectory + "/member" }
    public var resolvedWALDirectory: String { walDirectory ?? memberDirectory + "/wal" }
    public var snapshotDirectory: String { memberDirectory + "/snap" }
    public var keyspaceDirectory: String { memberDirectory + "/keyspace" }

    /// The member's WAL settings (the library's defaults but for the preallocation).
    public var walConfiguration: WALConfiguration {
        var c = WALConfiguration()
        c.preallocation = walPreallocation
        return c
    }

    /// Election timeout in ticks (at least 2, as Raft requires it above the heartbeat's 1).
    public var electionTicks: Int { max(2, electionTimeoutMilliseconds / max(1, heartbeatIntervalMilliseconds)) }

    /// etcd's smallest lease TTL: 1.5 election timeouts, rounded up to whole seconds.
    public var minLeaseTTLSeconds: Int64 {
        let ms = Int64(electionTicks * 3 / 2) * Int64(heartbeatIntervalMilliseconds)
        return (ms + 999) / 1000
    }
}

/// The identity every response header carries.
public struct ServerIdentity: Sendable, Equatable {
    public var name: String
    public var memberID: UInt64
    public var clusterID: UInt64
    public var peerURLs: [String]
    public var clientURLs: [String]

    /// A new member's ids, derived from its peer URLs and the cluster token (stable across
    /// restarts of the same configuration, different between clusters).
    public static func derive(name: String, peerURLs: [String], clientURLs: [String], token: String) -> ServerIdentity {
        let member = nonZero(fnv1a64(Array((peerURLs.sorted().joined(separator: ",") + "|" + token).utf8)))
        var clusterInput = Array(token.utf8)
        withUnsafeBytes(of: member.bigEndian) { clusterInput.append(contentsOf: $0) }
        let cluster = nonZero(fnv1a64(clusterInput))
        return ServerIdentity(
            name: name, memberID: member, clusterID: cluster, peerURLs: peerURLs, clientURLs: clientURLs)
    }

    static func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        // Mix the bits so nearby inputs give unrelated ids.
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }

    static func nonZero(_ v: UInt64) -> UInt64 { v == 0 ? 1 : v }
}
