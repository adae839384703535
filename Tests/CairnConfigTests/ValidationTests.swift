import CairnConfig
import Testing

@Suite struct ValidationTests {
    @Test func timing() {
        let cases: [([String], String)] = [
            (["--heartbeat-interval", "100", "--election-timeout", "400"],
             "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
            (["--heartbeat-interval", "0"], "--heartbeat-interval must be >0 (set to 0ms)"),
            (["--election-timeout", "0"], "--election-timeout must be >0 (set to 0ms)"),
            (["--election-timeout", "60000"],
             "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
            (["--heartbeat-interval", "0x7fffffffffffffff"],
             "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[9223372036854775807ms]"),
        ]
        for (arguments, message) in cases {
            let error = refusal(arguments)
            #expect(error?.message == message)
            #expect(error?.exitCode == 1)
        }
        #expect(throws: Never.self) { try serve(["--heartbeat-interval", "200", "--election-timeout", "1000"]) }
        #expect(throws: Never.self) { try serve(["--election-timeout", "50000"]) }
    }

    @Test func urls() {
        #expect(refusal(["--listen-client-urls", "http://127.0.0.1:1"])?.message.hasPrefix(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly") == true)
        #expect(refusal(["--listen-client-urls", "http://example.com:1", "--advertise-client-urls", "http://x:1"])?.message
            == "expected IP in URL for binding (http://example.com:1)")
        #expect(refusal(["--listen-metrics-urls", "http://example.com:1"])?.message
            == "expected IP in URL for binding (http://example.com:1)")
        #expect(refusal(["--listen-peer-urls", "http://example.com:1"])?.message
            == "expected IP in URL for binding (http://example.com:1)")
        #expect(refusal(["--advertise-client-urls", "http://:1"])?.message
            == "--advertise-client-urls \"http://:1\" must be \"host:port\" (unexpected empty host (http://:1))")
        #expect(refusal(["--initial-advertise-peer-urls", "http://:1"])?.message
            == "--initial-advertise-peer-urls \"http://:1\" must be \"host:port\" (unexpected empty host (http://:1))")
    }

    @Test func initialClusterFollowsTheName() throws {
        // etcd rewrites the default initial cluster to name=initial-advertise-peer-urls for a named member.
        let named = try serve(["--name", "foo", "--initial-advertise-peer-urls", "http://10.0.0.2:2380,http://10.0.0.1:2380"])
        #expect(named.initialCluster.map(\.name) == ["foo"])
        #expect(named.initialCluster[0].peerURLs.map(\.string) == ["http://10.0.0.1:2380", "http://10.0.0.2:2380"])
        #expect(named.dataDirectory == "foo.cairn")
        #expect(throws: Never.self) { try named.validateInitialClusterForBootstrap() }
        // ...but not for the member named "default".
        let unnamed = try serve(["--initial-advertise-peer-urls", "http://127.0.0.1:12380"])
        #expect(unnamed.initialCluster[0].peerURLs.map(\.string) == ["http://localhost:2380"])
        #expect(throws: ConfigurationError(
            "--initial-cluster has default=http://localhost:2380 but missing from "
                + "--initial-advertise-peer-urls=http://127.0.0.1:12380 "
                + "(resolved urls: \"http://127.0.0.1:12380\" != \"http://localhost:2380\")")
        ) { try unnamed.validateInitialClusterForBootstrap() }
        let absent = try serve(["--name", "foo", "--initial-cluster", "bar=http://localhost:2380"])
        #expect(throws: ConfigurationError("couldn't find local name \"foo\" in the initial cluster configuration")) {
            try absent.validateInitialClusterForBootstrap()
        }
    }
}
