extension ServerConfiguration {
    /// The `--help` text: every option with its default.
    public static let usage = """
        Usage:

          cairn [flags]
            Start a Cairn member (etcd 3.4's flags; each flag can also be given as a CAIRN_* environment
            variable, e.g. --initial-cluster-token as CAIRN_INITIAL_CLUSTER_TOKEN).

          cairn --version          Print the version.
          cairn -h | --help        Print this help.
          cairn --config-file FILE Read the options from a YAML file whose keys are the flag names;
                                   other flags and CAIRN_* variables are then ignored.

        Member:
          --name 'default'                      Human-readable name of this member.
          --data-dir '${name}.cairn'            Data directory.
          --wal-dir ''                          Dedicated WAL directory (default: inside the data directory).
          --initial-etcd-snapshot ''            First start only: build the data directory from this etcd 3.4
                                                snapshot file (as cairnctl snapshot restore does), then serve it.
          --snapshot-count '100000'             Committed entries between two snapshots.
          --heartbeat-interval '100'            Heartbeat interval, in milliseconds.
          --election-timeout '1000'             Election timeout, in milliseconds (at least 5 heartbeats, at most 50000).
          --listen-peer-urls 'http://localhost:2380'        URLs to listen on for peer traffic.
          --listen-client-urls 'http://localhost:2379'      URLs to listen on for client traffic.
          --max-snapshots '5'                   Snapshot files to keep (0: all).
          --max-wals '5'                        WAL files to keep (0: all).
          --quota-backend-bytes '0'             Backend size that raises the NOSPACE alarm (0: 2 GiB; negative: none).
          --max-txn-ops '128'                   Most operations in one transaction.
          --max-request-bytes '1572864'         Largest client request accepted, in bytes.

        Clustering:
          --initial-advertise-peer-urls 'http://localhost:2380'   This member's peer URLs, as told to the cluster.
          --initial-cluster 'default=http://localhost:2380'       Members at bootstrap: name=peer-url,...
          --initial-cluster-state 'new'         'new' or 'existing'.
          --initial-cluster-token 'etcd-cluster'  Token that keeps separate clusters apart at bootstrap.
          --advertise-client-urls 'http://localhost:2379'         This member's client URLs, as told to clients
                                                (required when --listen-client-urls is given).

        Monitoring:
          --listen-metrics-urls ''              Extra URLs serving /metrics and /health.

        Logging:
          --log-level 'info'                    debug, info, warn, error, panic or fatal.

        Only http:// URLs are supported so far (no TLS, no unix sockets).
        """
}
