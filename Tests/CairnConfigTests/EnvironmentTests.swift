import CairnConfig
import Testing

@Suite struct EnvironmentTests {
    @Test func variablesFillUnsetFlags() throws {
        let (config, warnings) = try served(
            ["--name", "n1"],
            environment: [
                "CAIRN_INITIAL_CLUSTER_TOKEN": "tok", "CAIRN_SNAPSHOT_COUNT": "5", "CAIRN_DATA_DIR": "/d",
                "CAIRN_LISTEN_CLIENT_URLS": "http://127.0.0.1:1", "CAIRN_ADVERTISE_CLIENT_URLS": "http://h:1",
                "CAIRN_BOGUS": "1", "CAIRN_MAX_WALS": "", "ETCD_NAME": "ignored", "PATH": "/bin",
            ])
        #expect(config.name == "n1")
        #expect(config.initialClusterToken == "tok")
        #expect(config.snapshotCount == 5)
        #expect(config.dataDirectory == "/d")
        #expect(config.listenClientURLs.map(\.string) == ["http://127.0.0.1:1"])
        #expect(config.maxWALs == 5)
        #expect(warnings == [
            "unrecognized environment variable CAIRN_BOGUS=1", "unrecognized environment variable CAIRN_MAX_WALS=",
        ])
    }

    @Test func flagAndVariableTogetherIsAnError() {
        for value in ["x", "y"] {
            let error = refusal(["--name", "x"], environment: ["CAIRN_NAME": value])
            #expect(error?.message == "conflicting environment variable \"CAIRN_NAME\" is shadowed by "
                + "corresponding command-line flag (either unset environment variable or disable flag)")
            #expect(error?.exitCode == 1)
        }
    }

    @Test func badValues() {
        #expect(refusal([], environment: ["CAIRN_SNAPSHOT_COUNT": "abc"])?.message
            == "invalid value \"abc\" for CAIRN_SNAPSHOT_COUNT: parse error")
        #expect(refusal([], environment: ["CAIRN_LISTEN_CLIENT_URLS": "http://127.0.0.1:1"])?.message.hasPrefix(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly") == true)
        #expect(refusal([], environment: ["CAIRN_ELECTION_TIMEOUT": "100"])?.message
            == "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]")
    }

    @Test func versionIgnoresTheEnvironment() throws {
        #expect(try ServerConfiguration.parse(arguments: ["--version"], environment: ["CAIRN_SNAPSHOT_COUNT": "abc"])
            == .printVersion)
    }
}
