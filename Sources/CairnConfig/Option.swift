/// The options `cairn` accepts, by etcd flag name, and how each value is read and stored.
enum Option: String, CaseIterable {
    case name
    case dataDir = "data-dir"
    case walDir = "wal-dir"
    case listenClientURLs = "listen-client-urls"
    case advertiseClientURLs = "advertise-client-urls"
    case listenPeerURLs = "listen-peer-urls"
    case initialAdvertisePeerURLs = "initial-advertise-peer-urls"
    case initialCluster = "initial-cluster"
    case initialClusterToken = "initial-cluster-token"
    case initialClusterState = "initial-cluster-state"
    case snapshotCount = "snapshot-count"
    case heartbeatInterval = "heartbeat-interval"
    case electionTimeout = "election-timeout"
    case quotaBackendBytes = "quota-backend-bytes"
    case maxRequestBytes = "max-request-bytes"
    case maxTxnOps = "max-txn-ops"
    case maxSnapshots = "max-snapshots"
    case maxWALs = "max-wals"
    case listenMetricsURLs = "listen-metrics-urls"
    case logLevel = "log-level"
    case configFile = "config-file"
    case initialEtcdSnapshot = "initial-etcd-snapshot"
    case version
    case help

    /// How a value is typed (in YAML, what JSON type etcd's config struct expects).
    enum Kind {
        case string, unsigned, signed, boolean
    }

    var kind: Kind {
        if self.unsignedField != nil { return .unsigned }
        switch self {
        case .quotaBackendBytes: return .signed
        case .version, .help: return .boolean
        default: return .string
        }
    }

    /// The Go type etcd declares for the YAML key (for error messages).
    var goTypeName: String {
        switch self {
        case .snapshotCount: "uint64"
        case .quotaBackendBytes: "int64"
        case .version, .help: "bool"
        default: self.kind == .unsigned ? "uint" : "string"
        }
    }

    /// etcd's environment variable for the flag, with Cairn's prefix: `initial-cluster-token` → `CAIRN_INITIAL_CLUSTER_TOKEN`.
    var environmentVariable: String {
        "CAIRN_" + self.rawValue.uppercased().replacingDashes()
    }

    /// Where a URL-list option is stored.
    var urlsField: WritableKeyPath<ServerConfiguration, [ServerURL]>? {
        switch self {
        case .listenClientURLs: \.listenClientURLs
        case .advertiseClientURLs: \.advertiseClientURLs
        case .listenPeerURLs: \.listenPeerURLs
        case .initialAdvertisePeerURLs: \.initialAdvertisePeerURLs
        case .listenMetricsURLs: \.listenMetricsURLs
        default: nil
        }
    }

    /// Where an unsigned option is stored.
    private var unsignedField: WritableKeyPath<ServerConfiguration, Int>? {
        switch self {
        case .snapshotCount: \.snapshotCount
        case .heartbeatInterval: \.heartbeatIntervalMilliseconds
        case .electionTimeout: \.electionTimeoutMilliseconds
        case .maxRequestBytes: \.maxRequestBytes
        case .maxTxnOps: \.maxTxnOps
        case .maxSnapshots: \.maxSnapshots
        case .maxWALs: \.maxWALs
        default: nil
        }
    }

    /// Stores `text` into `configuration`; the error is the reason alone (the caller adds which flag).
    func apply(_ text: String, to configuration: inout ServerConfiguration) throws(ConfigurationError) {
        if let field = self.urlsField {
            configuration[keyPath: field] = try ServerURL.parseList(text)
            return
        }
        if let field = self.unsignedField {
            configuration[keyPath: field] = try GoNumber.parseUnsigned(text)
            return
        }
        switch self {
        case .name: configuration.name = text
        case .dataDir: configuration.dataDirectory = text
        case .walDir: configuration.walDirectory = text.isEmpty ? nil : text
        case .initialCluster: configuration.initialCluster = try ClusterMember.parseList(text)
        case .initialClusterToken: configuration.initialClusterToken = text
        case .initialClusterState:
            guard let state = InitialClusterState(rawValue: text) else { throw ConfigurationError("invalid value") }
            configuration.initialClusterState = state
        case .logLevel:
            guard let level = LogLevel(rawValue: text) else {
                throw ConfigurationError(
                    "unknown level (supported: \(LogLevel.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            configuration.logLevel = level
        case .quotaBackendBytes: configuration.quotaBackendBytes = try GoNumber.parseSigned(text)
        case .configFile: configuration.configFile = text.isEmpty ? nil : text
        case .initialEtcdSnapshot: configuration.initialEtcdSnapshot = text.isEmpty ? nil : text
        case .version, .help: _ = try GoNumber.parseBool(text)
        default: preconditionFailure("option \(self.rawValue) has no storage")
        }
    }
}

extension String {
    func replacingDashes() -> String { String(self.map { $0 == "-" ? "_" : $0 }) }
}

extension ClusterMember {
    /// Parses etcd's `name1=url1,name1=url2,name2=url3` (a member may have several URLs; each
    /// member's URLs are sorted, members keep the order they were first named).
    static func parseList(_ text: String) throws(ConfigurationError) -> [ClusterMember] {
        var members: [ClusterMember] = []
        if text.isEmpty { return members }
        for pair in text.split(separator: ",", omittingEmptySubsequences: false) {
            let name: Substring
            let urlText: Substring
            if let equals = pair.firstIndex(of: "=") {
                name = pair[..<equals]
                urlText = pair[pair.index(after: equals)...]
            } else {
                name = pair
                urlText = ""
            }
            let url = try ServerURL(parsing: String(urlText))
            if let index = members.firstIndex(where: { $0.name == name }) {
                members[index].peerURLs.append(url)
                members[index].peerURLs.sort()
            } else {
                members.append(ClusterMember(name: String(name), peerURLs: [url]))
            }
        }
        return members
    }

    /// The `name=url,...` form etcd prints.
    static func format(_ members: [ClusterMember]) -> String {
        members.flatMap { member in member.peerURLs.map { "\(member.name)=\($0.string)" } }.joined(separator: ",")
    }
}

/// Go's `strconv` number syntax as its `flag` package reads it (base prefixes 0x, 0o, 0b, leading 0
/// for octal, underscores between digits), with its two errors: "parse error", "value out of range".
enum GoNumber {
    static func parseUnsigned(_ text: String) throws(ConfigurationError) -> Int {
        let magnitude = try self.parseMagnitude(Substring(text))
        guard magnitude <= UInt64(Int.max) else { throw ConfigurationError("value out of range") }
        return Int(magnitude)
    }

    static func parseSigned(_ text: String) throws(ConfigurationError) -> Int64 {
        var digits = Substring(text)
        var negative = false
        if let sign = digits.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            digits = digits.dropFirst()
        }
        let magnitude = try self.parseMagnitude(digits)
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { throw ConfigurationError("value out of range") }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { throw ConfigurationError("value out of range") }
        return Int64(magnitude)
    }

    static func parseBool(_ text: String) throws(ConfigurationError) -> Bool {
        switch text {
        case "1", "t", "T", "TRUE", "true", "True": return true
        case "0", "f", "F", "FALSE", "false", "False": return false
        default: throw ConfigurationError("parse error")
        }
    }

    private static func parseMagnitude(_ text: Substring) throws(ConfigurationError) -> UInt64 {
        let parseError = ConfigurationError("parse error")
        var digits = text
        var radix: UInt64 = 10
        var prefixed = false
        if digits.count > 1, digits.first == "0" {
            let marker = digits[digits.index(after: digits.startIndex)].lowercased()
            switch marker {
            case "x": radix = 16; digits = digits.dropFirst(2); prefixed = true
            case "o": radix = 8; digits = digits.dropFirst(2); prefixed = true
            case "b": radix = 2; digits = digits.dropFirst(2); prefixed = true
            default: radix = 8; digits = digits.dropFirst(); prefixed = true
            }
        }
        // Underscores only between digits (or right after a base prefix).
        if digits.hasSuffix("_") || digits.contains("__") || (!prefixed && digits.hasPrefix("_")) {
            throw parseError
        }
        if digits.isEmpty && !(prefixed && radix == 8) { throw parseError }
        var value: UInt64 = 0
        var overflow = false
        for character in digits where character != "_" {
            guard let digit = character.hexDigitValue, UInt64(digit) < radix else { throw parseError }
            let (shifted, overflowMultiply) = value.multipliedReportingOverflow(by: radix)
            let (sum, overflowAdd) = shifted.addingReportingOverflow(UInt64(digit))
            overflow = overflow || overflowMultiply || overflowAdd
            value = sum
        }
        if overflow { throw ConfigurationError("value out of range") }
        return value
    }
}
