import CairnConfig
import Testing

/// Parses a command line (no environment, no file) and returns the configuration to serve.
func serve(_ arguments: [String], environment: [String: String] = [:]) throws -> ServerConfiguration {
    try served(arguments, environment: environment).0
}

func served(
    _ arguments: [String], environment: [String: String] = [:], files: [String: String] = [:]
) throws -> (ServerConfiguration, [String]) {
    let command = try ServerConfiguration.parse(arguments: arguments, environment: environment) { path in
        guard let text = files[path] else { throw TestFileMissing() }
        return text
    }
    guard case .serve(let configuration, let warnings) = command else {
        Issue.record("expected .serve, got \(command)")
        return (ServerConfiguration(), [])
    }
    return (configuration, warnings)
}

struct TestFileMissing: Error, CustomStringConvertible {
    var description: String { "no such file" }
}

/// The error a command line gives.
func refusal(_ arguments: [String], environment: [String: String] = [:], files: [String: String] = [:]) -> ConfigurationError? {
    do {
        let result = try served(arguments, environment: environment, files: files)
        Issue.record("expected an error, got \(result)")
        return nil
    } catch let error as ConfigurationError {
        return error
    } catch {
        Issue.record("unexpected error type \(error)")
        return nil
    }
}

@Suite struct CommandLineTests {
    @Test func defaultsAreEtcds() throws {
        let (config, warnings) = try served([])
        #expect(config.name == "default")
        #expect(config.dataDirectory == "default.cairn")
        #expect(warnings == ["no data-dir provided, using default data-dir ./default.cairn"])
        #expect(config.walDirectory == nil)
        #expect(config.listenClientURLs.map(\.string) == ["http://localhost:2379"])
        #expect(config.advertiseClientURLs.map(\.string) == ["http://localhost:2379"])
        #expect(config.listenPeerURLs.map(\.string) == ["http://localhost:2380"])
        #expect(config.initialAdvertisePeerURLs.map(\.string) == ["http://localhost:2380"])
        #expect(config.initialCluster == [ClusterMember(name: "default", peerURLs: config.initialAdvertisePeerURLs)])
        #expect(config.initialClusterToken == "etcd-cluster")
        #expect(config.initialClusterState == .new)
        #expect(config.snapshotCount == 100_000)
        #expect(config.heartbeatIntervalMilliseconds == 100)
        #expect(config.electionTimeoutMilliseconds == 1000)
        #expect(config.quotaBackendBytes == 0)
        #expect(config.effectiveQuotaBackendBytes == Int64(2_147_483_648))
        #expect(config.maxRequestBytes == 1_572_864)
        #expect(config.maxTxnOps == 128)
        #expect(config.maxSnapshots == 5)
        #expect(config.maxWALs == 5)
        #expect(config.listenMetricsURLs.isEmpty)
        #expect(config.logLevel == .info)
        #expect(config.configFile == nil)
    }

    @Test func everyFlagInEveryGoForm() throws {
        let config = try serve([
            "--name", "n1", "-data-dir=/d", "--wal-dir=/w",
            "--listen-client-urls", "http://127.0.0.1:2379,http://10.0.0.1:2379",
            "--advertise-client-urls=http://n1:2379", "-listen-peer-urls", "http://[::1]:2380",
            "--initial-advertise-peer-urls", "http://n1:2380",
            "--initial-cluster", "n1=http://n1:2380,n2=http://n2:2380,n2=http://n2b:2380",
            "--initial-cluster-token", "tok", "--initial-cluster-state", "existing",
            "--snapshot-count", "0x10", "--heartbeat-interval", "50", "--election-timeout=250",
            "--quota-backend-bytes", "-1", "--max-request-bytes", "1_000", "--max-txn-ops", "010",
            "--max-snapshots", "0", "--max-wals", "0b11", "--listen-metrics-urls", "http://0.0.0.0:9090",
            "--log-level", "debug",
        ])
        #expect(config.name == "n1")
        #expect(config.dataDirectory == "/d")
        #expect(config.walDirectory == "/w")
        // Sorted, as etcd sorts URL lists.
        #expect(config.listenClientURLs.map(\.string) == ["http://10.0.0.1:2379", "http://127.0.0.1:2379"])
        #expect(config.listenClientURLs.map(\.port) == [2379, 2379])
        #expect(config.advertiseClientURLs.map(\.host) == ["n1"])
        #expect(config.listenPeerURLs.map(\.host) == ["::1"])
        #expect(config.initialCluster.map(\.name) == ["n1", "n2"])
        #expect(config.initialCluster[1].peerURLs.map(\.host) == ["n2", "n2b"])
        #expect(config.initialClusterToken == "tok")
        #expect(config.initialClusterState == .existing)
        #expect(config.snapshotCount == 16)
        #expect(config.heartbeatIntervalMilliseconds == 50)
        #expect(config.electionTimeoutMilliseconds == 250)
        #expect(config.quotaBackendBytes == -1)
        #expect(config.effectiveQuotaBackendBytes == nil)
        #expect(config.maxRequestBytes == 1000)
        #expect(config.maxTxnOps == 8)
        #expect(config.maxSnapshots == 0)
        #expect(config.maxWALs == 3)
        #expect(config.listenMetricsURLs.map(\.string) == ["http://0.0.0.0:9090"])
        #expect(config.logLevel == .debug)
    }

    @Test func lastValueWinsAndDoubleDashEndsFlags() throws {
        #expect(try serve(["--name", "a", "--name", "b"]).name == "b")
        #expect(refusal(["--", "--name"])?.message == "'--name' is not a valid flag")
        #expect(refusal(["extra-arg"])?.message == "'extra-arg' is not a valid flag")
        #expect(refusal(["-", "x"])?.message == "'-' is not a valid flag")
    }

    @Test func versionAndHelp() throws {
        for arguments in [["--version"], ["-version"], ["--version=true"], ["--name", "x", "--version"]] {
            #expect(try ServerConfiguration.parse(arguments: arguments, environment: [:]) == .printVersion)
        }
        for arguments in [["-h"], ["--help"], ["-help"], ["--name", "x", "-h", "--bogus"]] {
            #expect(try ServerConfiguration.parse(arguments: arguments, environment: [:]) == .printHelp)
        }
        // --version=false serves; flag errors before --version still count.
        #expect(try serve(["--version=false"]).name == "default")
        #expect(refusal(["--bogus", "--version"])?.message == "flag provided but not defined: -bogus")
        #expect(refusal(["--version=maybe"])?.message == "invalid boolean value \"maybe\" for -version: parse error")
        #expect(ServerConfiguration.usage.contains("--initial-cluster-token 'etcd-cluster'"))
    }

    @Test func flagSyntaxErrors() {
        let bogus = refusal(["--bogus"])
        #expect(bogus?.message == "flag provided but not defined: -bogus")
        #expect(bogus?.exitCode == 2)
        #expect(refusal(["--name"])?.message == "flag needs an argument: -name")
        #expect(refusal(["---name", "x"])?.message == "bad flag syntax: ---name")
        #expect(refusal(["-=x"])?.message == "bad flag syntax: -=x")
        // Flags etcd has but Cairn does not are unknown here.
        #expect(refusal(["--enable-v2"])?.message == "flag provided but not defined: -enable-v2")
    }

    @Test func badValues() {
        let cases: [([String], String)] = [
            (["--snapshot-count", "abc"], "invalid value \"abc\" for flag -snapshot-count: parse error"),
            (["--snapshot-count=-1"], "invalid value \"-1\" for flag -snapshot-count: parse error"),
            (["--max-txn-ops", "99999999999999999999999"],
             "invalid value \"99999999999999999999999\" for flag -max-txn-ops: value out of range"),
            (["--quota-backend-bytes", "1.5"], "invalid value \"1.5\" for flag -quota-backend-bytes: parse error"),
            (["--heartbeat-interval", "08"], "invalid value \"08\" for flag -heartbeat-interval: parse error"),
            (["--max-wals", "1__0"], "invalid value \"1__0\" for flag -max-wals: parse error"),
            (["--max-wals", "0x"], "invalid value \"0x\" for flag -max-wals: parse error"),
            (["--initial-cluster-state", "foo"], "invalid value \"foo\" for flag -initial-cluster-state: invalid value"),
            (["--log-level", "verbose"],
             "invalid value \"verbose\" for flag -log-level: unknown level (supported: debug, info, warn, error, panic, fatal)"),
            (["--listen-client-urls", "foo"],
             "invalid value \"foo\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: foo"),
            (["--listen-peer-urls", "ftp://a:1"],
             "invalid value \"ftp://a:1\" for flag -listen-peer-urls: URL scheme must be http, https, unix, or unixs: ftp://a:1"),
            (["--listen-client-urls", "http://127.0.0.1"],
             "invalid value \"http://127.0.0.1\" for flag -listen-client-urls: URL address does not have the form \"host:port\": http://127.0.0.1"),
            (["--listen-client-urls", "http://[::1]"],
             "invalid value \"http://[::1]\" for flag -listen-client-urls: URL address does not have the form \"host:port\": http://[::1]"),
            (["--listen-client-urls", "http://127.0.0.1:12379/path"],
             "invalid value \"http://127.0.0.1:12379/path\" for flag -listen-client-urls: URL must not contain a path: http://127.0.0.1:12379/path"),
            (["--listen-client-urls", "http://127.0.0.1:x"],
             "invalid value \"http://127.0.0.1:x\" for flag -listen-client-urls: parse \"http://127.0.0.1:x\": invalid port \":x\" after host"),
            (["--listen-client-urls", "http://127.0.0.1:70000"],
             "invalid value \"http://127.0.0.1:70000\" for flag -listen-client-urls: parse \"http://127.0.0.1:70000\": invalid port \":70000\" after host"),
            (["--listen-client-urls", "http://127.0.0.1:1,"],
             "invalid value \"http://127.0.0.1:1,\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: "),
            (["--listen-client-urls", "https://127.0.0.1:2379"],
             "invalid value \"https://127.0.0.1:2379\" for flag -listen-client-urls: TLS (https) URLs are not supported yet: https://127.0.0.1:2379"),
            (["--advertise-client-urls", "unix://sock:1"],
             "invalid value \"unix://sock:1\" for flag -advertise-client-urls: unix socket URLs are not supported yet: unix://sock:1"),
            (["--initial-cluster", "foo"],
             "invalid value \"foo\" for flag -initial-cluster: URL scheme must be http, https, unix, or unixs: "),
        ]
        for (arguments, message) in cases {
            let error = refusal(arguments)
            #expect(error?.message == message, "\(arguments)")
            #expect(error?.exitCode == 2)
        }
    }

    @Test func urlDetails() throws {
        let url = try ServerURL(parsing: " http://user@127.0.0.1:2379?x=1 ")
        #expect(url.host == "127.0.0.1")
        #expect(url.port == 2379)
        #expect(url.hostIsIPAddress)
        #expect(try ServerURL(parsing: "http://[fe80::1:2]:1").hostIsIPAddress)
        #expect(try ServerURL(parsing: "http://[::ffff:10.0.0.1]:1").hostIsIPAddress)
        #expect(!(try ServerURL(parsing: "http://256.0.0.1:1").hostIsIPAddress))
        #expect(!(try ServerURL(parsing: "http://example.com:1").hostIsIPAddress))
        #expect(try serve(["--listen-client-urls", "", "--advertise-client-urls", ""]).listenClientURLs.isEmpty)
    }
}
