extension ServerConfiguration {
    /// etcd 3.4's checks of a parsed configuration, in its order and with its messages.
    public func validate() throws(ConfigurationError) {
        for urls in [self.listenPeerURLs, self.listenClientURLs, self.listenMetricsURLs] {
            for url in urls where url.host != "localhost" && !url.hostIsIPAddress {
                throw ConfigurationError("expected IP in URL for binding (\(url))")
            }
        }
        let advertised = [
            ("--initial-advertise-peer-urls", self.initialAdvertisePeerURLs),
            ("--advertise-client-urls", self.advertiseClientURLs),
        ]
        for (flag, urls) in advertised {
            for url in urls where url.host.isEmpty {
                throw ConfigurationError("\(flag) \"\(url)\" must be \"host:port\" (unexpected empty host (\(url)))")
            }
        }
        let heartbeat = self.heartbeatIntervalMilliseconds
        let election = self.electionTimeoutMilliseconds
        if heartbeat == 0 {
            throw ConfigurationError("--heartbeat-interval must be >0 (set to \(heartbeat)ms)")
        }
        if election == 0 {
            throw ConfigurationError("--election-timeout must be >0 (set to \(election)ms)")
        }
        if heartbeat.multipliedReportingOverflow(by: 5).overflow || 5 * heartbeat > election {
            throw ConfigurationError(
                "--election-timeout[\(election)ms] should be at least as 5 times as --heartbeat-interval[\(heartbeat)ms]")
        }
        if election > Self.maxElectionTimeoutMilliseconds {
            throw ConfigurationError(
                "--election-timeout[\(election)ms] is too long, and should be set less than "
                    + "\(Self.maxElectionTimeoutMilliseconds)ms")
        }
    }

    /// etcd's checks when a member bootstraps a new cluster (a data dir without a WAL): this
    /// member's name must be in `--initial-cluster`, with exactly its `--initial-advertise-peer-urls`.
    ///
    /// URLs are compared as written (etcd also resolves host names before comparing).
    public func validateInitialClusterForBootstrap() throws(ConfigurationError) {
        guard let member = self.initialCluster.first(where: { $0.name == self.name }) else {
            throw ConfigurationError("couldn't find local name \"\(self.name)\" in the initial cluster configuration")
        }
        let advertised = self.initialAdvertisePeerURLs.sorted()
        if member.peerURLs.sorted() != advertised {
            let clusterSide = member.peerURLs.sorted().map(\.string).joined(separator: ",")
            let advertisedSide = advertised.map(\.string).joined(separator: ",")
            throw ConfigurationError(
                "--initial-cluster has \(self.name)=\(clusterSide) but missing from "
                    + "--initial-advertise-peer-urls=\(advertisedSide) "
                    + "(resolved urls: \"\(advertisedSide)\" != \"\(clusterSide)\")")
        }
    }
}
