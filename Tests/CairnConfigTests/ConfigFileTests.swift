import CairnConfig
import Testing

@Suite struct ConfigFileTests {
    static let full = """
        name: n1
        data-dir: /var/lib/cairn
        wal-dir: /wal
        listen-client-urls: http://127.0.0.1:2379,http://10.0.0.1:2379
        advertise-client-urls: http://n1:2379
        listen-peer-urls: http://10.0.0.1:2380
        initial-advertise-peer-urls: http://n1:2380
        initial-cluster: n1=http://n1:2380,n2=http://n2:2380
        initial-cluster-token: tok
        initial-cluster-state: existing
        snapshot-count: 10000
        heartbeat-interval: 50
        election-timeout: 500
        quota-backend-bytes: 8589934592
        max-request-bytes: 1000
        max-txn-ops: 64
        max-snapshots: 1
        max-wals: 2
        listen-metrics-urls: http://127.0.0.1:9090
        log-level: warn
        enable-v2: true
        """

    @Test func everyKey() throws {
        let (config, warnings) = try served(["--config-file", "c.yaml"], files: ["c.yaml": Self.full])
        #expect(config.name == "n1")
        #expect(config.dataDirectory == "/var/lib/cairn")
        #expect(config.walDirectory == "/wal")
        #expect(config.listenClientURLs.map(\.string) == ["http://10.0.0.1:2379", "http://127.0.0.1:2379"])
        #expect(config.advertiseClientURLs.map(\.string) == ["http://n1:2379"])
        #expect(config.listenPeerURLs.map(\.string) == ["http://10.0.0.1:2380"])
        #expect(config.initialAdvertisePeerURLs.map(\.string) == ["http://n1:2380"])
        #expect(config.initialCluster.map(\.name) == ["n1", "n2"])
        #expect(config.initialClusterToken == "tok")
        #expect(config.initialClusterState == .existing)
        #expect(config.snapshotCount == 10000)
        #expect(config.heartbeatIntervalMilliseconds == 50)
        #expect(config.electionTimeoutMilliseconds == 500)
        #expect(config.quotaBackendBytes == 8_589_934_592)
        #expect(config.maxRequestBytes == 1000)
        #expect(config.maxTxnOps == 64)
        #expect(config.maxSnapshots == 1)
        #expect(config.maxWALs == 2)
        #expect(config.listenMetricsURLs.map(\.port) == [9090])
        #expect(config.logLevel == .warn)
        #expect(config.configFile == "c.yaml")
        // etcd ignores keys it does not know; Cairn ignores them too, with a warning.
        #expect(warnings == ["config file c.yaml: ignoring unknown key \"enable-v2\""])
    }

    @Test func fileWinsOverFlagsAndEnvironment() throws {
        let files = ["c.yaml": "name: fromfile\n"]
        let (config, warnings) = try served(
            ["--config-file", "c.yaml", "--name", "flag", "--snapshot-count", "7"],
            environment: ["CAIRN_NAME": "env", "CAIRN_MAX_WALS": "abc"], files: files)
        #expect(config.name == "fromfile")
        #expect(config.snapshotCount == 100_000)
        #expect(config.maxWALs == 5)
        #expect(config.dataDirectory == "fromfile.cairn")
        #expect(config.initialCluster.map(\.name) == ["fromfile"])
        #expect(warnings == ["no data-dir provided, using default data-dir ./fromfile.cairn"])
        // CAIRN_CONFIG_FILE works like the flag; flag syntax errors still count.
        #expect(try served([], environment: ["CAIRN_CONFIG_FILE": "c.yaml"], files: files).0.name == "fromfile")
        #expect(refusal(["--config-file", "c.yaml", "--bogus"], files: files)?.message
            == "flag provided but not defined: -bogus")
        #expect(refusal(["--config-file", "c.yaml", "extra"], files: files)?.message == "'extra' is not a valid flag")
    }

    @Test func yamlDetails() throws {
        // Empty file, nulls, empty URL lists: defaults. Case-insensitive keys, last duplicate wins, YAML ints.
        var empty = try served(["--config-file", "e"], files: ["e": ""]).0
        #expect(empty.configFile == "e")
        empty.configFile = nil
        #expect(empty == (try served([]).0))
        let text = """
            name:
            listen-client-urls: ""
            Snapshot-Count: 0x10
            max-wals: 1
            max-wals: 3
            """
        let (config, _) = try served(["--config-file", "c"], files: ["c": text])
        #expect(config.name == "default")
        #expect(config.listenClientURLs.map(\.string) == ["http://localhost:2379"])
        #expect(config.snapshotCount == 16)
        #expect(config.maxWALs == 3)
    }

    @Test func errors() {
        let cases: [(String, String)] = [
            ("snapshot-count: abc", "config file c: cannot unmarshal string into field snapshot-count of type uint64"),
            ("snapshot-count: \"100\"", "config file c: cannot unmarshal string into field snapshot-count of type uint64"),
            ("max-wals: -1", "config file c: cannot unmarshal number -1 into field max-wals of type uint"),
            ("max-wals: 1.5", "config file c: cannot unmarshal number 1.5 into field max-wals of type uint"),
            ("quota-backend-bytes: [1]", "config file c: cannot unmarshal array into field quota-backend-bytes of type int64"),
            ("name: 123", "config file c: cannot unmarshal number into field name of type string"),
            ("name: true", "config file c: cannot unmarshal bool into field name of type string"),
            ("name: {a: b}", "config file c: cannot unmarshal object into field name of type string"),
            ("- a\n- b", "config file c: cannot unmarshal array into the configuration (expected a mapping)"),
            ("name: [a", "error converting YAML to JSON: yaml: line 2: did not find expected ',' or ']'"),
            ("initial-cluster-state: foo", "unexpected clusterState \"foo\""),
            ("log-level: verbose",
             "invalid log-level \"verbose\" in config file: unknown level (supported: debug, info, warn, error, panic, fatal)"),
            ("listen-client-urls: http://a",
             "unexpected error setting up listen-client-urls: URL address does not have the form \"host:port\": http://a"),
            ("initial-cluster: foo", "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: "),
            ("heartbeat-interval: 100\nelection-timeout: 300",
             "--election-timeout[300ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
        ]
        for (text, message) in cases {
            #expect(refusal(["--config-file", "c"], files: ["c": text])?.message == message, "\(text)")
        }
        #expect(refusal(["--config-file", "missing.yaml"])?.message
            == "cannot read config file \"missing.yaml\": no such file")
        // The advertise-client-urls requirement is for flags only, as in etcd.
        #expect(throws: Never.self) {
            try served(["--config-file", "c"], files: ["c": "listen-client-urls: http://127.0.0.1:12379"])
        }
    }
}
