/// Every option of the `cairn` server, with etcd 3.4's names, meanings and defaults.
///
/// Built by ``ServerConfiguration/parse(arguments:environment:readFile:)`` from the command line,
/// `CAIRN_*` environment variables or a YAML `--config-file`, with etcd's precedence, conflicts and
/// checks. Units are in the names; durations are milliseconds as in etcd.
///
/// ```swift
/// switch try ServerConfiguration.parse(arguments: Array(CommandLine.arguments.dropFirst()),
///                                      environment: ProcessInfo.processInfo.environment) {
/// case .serve(let configuration, let warnings): ...
/// case .printVersion: ...
/// case .printHelp: print(ServerConfiguration.usage)
/// }
/// ```
public struct ServerConfiguration: Sendable, Equatable {
    /// etcd's `--name`: human-readable name of this member.
    public var name = "default"
    /// etcd's `--data-dir`; `parse` fills in `<name>.cairn` when empty (etcd: `<name>.etcd`).
    public var dataDirectory = ""
    /// etcd's `--wal-dir`: a dedicated WAL directory; nil means inside the data dir.
    public var walDirectory: String?
    /// Cairn's own: on a first start (no member in the data dir yet), build the keyspace from
    /// this etcd 3.4 snapshot file, as `cairnctl snapshot restore` does, then start on it.
    public var initialEtcdSnapshot: String?
    /// etcd's `--listen-client-urls`.
    public var listenClientURLs = [ServerURL.defaultClient]
    /// etcd's `--advertise-client-urls`.
    public var advertiseClientURLs = [ServerURL.defaultClient]
    /// etcd's `--listen-peer-urls`.
    public var listenPeerURLs = [ServerURL.defaultPeer]
    /// etcd's `--initial-advertise-peer-urls`.
    public var initialAdvertisePeerURLs = [ServerURL.defaultPeer]
    /// etcd's `--initial-cluster`, in the order the members were first named.
    public var initialCluster = [ClusterMember(name: "default", peerURLs: [ServerURL.defaultPeer])]
    /// etcd's `--initial-cluster-token`.
    public var initialClusterToken = "etcd-cluster"
    /// etcd's `--initial-cluster-state`.
    public var initialClusterState = InitialClusterState.new
    /// etcd's `--snapshot-count`: committed entries between snapshots.
    public var snapshotCount = 100_000
    /// etcd's `--heartbeat-interval`.
    public var heartbeatIntervalMilliseconds = 100
    /// etcd's `--election-timeout`.
    public var electionTimeoutMilliseconds = 1000
    /// etcd's `--quota-backend-bytes`: 0 means the default (2 GiB), negative disables the quota.
    public var quotaBackendBytes: Int64 = 0
    /// etcd's `--max-request-bytes`.
    public var maxRequestBytes = 1_572_864
    /// etcd's `--max-txn-ops`.
    public var maxTxnOps = 128
    /// etcd's `--max-snapshots` (0 is unlimited).
    public var maxSnapshots = 5
    /// etcd's `--max-wals` (0 is unlimited).
    public var maxWALs = 5
    /// etcd's `--listen-metrics-urls`: extra HTTP listeners serving `/metrics` and `/health`.
    public var listenMetricsURLs: [ServerURL] = []
    /// etcd's `--log-level`.
    public var logLevel = LogLevel.info
    /// etcd's `--config-file` (or `CAIRN_CONFIG_FILE`) when the options came from a file.
    public var configFile: String?

    /// The defaults, as `cairn` with no flags, environment or file (data dir not filled in).
    public init() {}

    /// etcd's backend quota when `--quota-backend-bytes` is 0.
    public static let defaultQuotaBackendBytes: Int64 = 2 * 1024 * 1024 * 1024
    /// etcd's upper bound on `--election-timeout`.
    public static let maxElectionTimeoutMilliseconds = 50_000

    /// The quota to enforce: nil when disabled (negative), etcd's 2 GiB when 0.
    public var effectiveQuotaBackendBytes: Int64? {
        if self.quotaBackendBytes < 0 { return nil }
        return self.quotaBackendBytes == 0 ? Self.defaultQuotaBackendBytes : self.quotaBackendBytes
    }

    /// The data dir used when none is given: `<name>.cairn`.
    public static func defaultDataDirectory(name: String) -> String { "\(name).cairn" }

    /// etcd's initial cluster for a lone member: `name=<each initial advertise peer URL>`.
    public static func initialCluster(name: String, peerURLs: [ServerURL]) -> [ClusterMember] {
        [ClusterMember(name: name, peerURLs: peerURLs)]
    }
}

/// One member of `--initial-cluster`: a name and its peer URLs.
public struct ClusterMember: Sendable, Hashable {
    public var name: String
    public var peerURLs: [ServerURL]

    public init(name: String, peerURLs: [ServerURL]) {
        self.name = name
        self.peerURLs = peerURLs
    }
}

/// etcd's `--initial-cluster-state`.
public enum InitialClusterState: String, Sendable, CaseIterable {
    case new
    case existing
}

/// etcd's `--log-level` values.
public enum LogLevel: String, Sendable, CaseIterable {
    case debug, info, warn, error, panic, fatal
}

/// What the command line asks for.
public enum ServerCommand: Sendable, Equatable {
    /// Start the server with this configuration; `warnings` are for the log (unknown `CAIRN_*`
    /// variables, defaulted data dir, ignored config-file keys).
    case serve(ServerConfiguration, warnings: [String])
    /// `--version`: print the version and exit 0.
    case printVersion
    /// `-h`/`--help`: print ``ServerConfiguration/usage`` and exit 0.
    case printHelp
}
