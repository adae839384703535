// etcdctl 3.4's commands and flags (names, defaults, descriptions as its usage text shows them),
// for the commands cairnctl has. Flags etcdctl has and cairnctl does not implement are listed
// (so the usage text is etcdctl's) and marked `implemented: false`: setting one is an error.

enum CommandTable {
    static let programName = "cairnctl"
    static let version = "0.1.0"
    static let apiVersion = "3.4"

    static let globalFlags: [FlagSpec] = [
        .string("cacert", "", "verify certificates of TLS-enabled secure servers using this CA bundle", implemented: false),
        .string("cert", "", "identify secure client using this TLS certificate file", implemented: false),
        FlagSpec("command-timeout", .duration, "5s", "timeout for short running command (excluding dial timeout)"),
        .bool("debug", "enable client-side debug logging"),
        FlagSpec("dial-timeout", .duration, "2s", "dial timeout for client connections"),
        FlagSpec("discovery-srv", .string, "", "domain name to query for SRV records describing cluster endpoints", short: "d", implemented: false),
        .string("discovery-srv-name", "", "service name to query when using DNS discovery", implemented: false),
        FlagSpec("endpoints", .stringSlice, "[127.0.0.1:2379]", "gRPC endpoints"),
        .bool("hex", "print byte strings as hex encoded strings"),
        FlagSpec("insecure-discovery", .bool, "true", "accept insecure SRV records describing cluster endpoints", implemented: false),
        .bool(
            "insecure-skip-tls-verify", "skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)",
            implemented: false),
        FlagSpec("insecure-transport", .bool, "true", "disable transport security for client connections", implemented: false),
        FlagSpec("keepalive-time", .duration, "2s", "keepalive time for client connections", implemented: false),
        FlagSpec("keepalive-timeout", .duration, "6s", "keepalive timeout for client connections", implemented: false),
        .string("key", "", "identify secure client using this TLS key file", implemented: false),
        .string("password", "", "password for authentication (if this option is used, --user option shouldn't include password)", implemented: false),
        .string("user", "", "username[:password] for authentication (prompt if password is not supplied)", implemented: false),
        FlagSpec("write-out", .string, "simple", "set the output format (fields, json, protobuf, simple, table)", short: "w"),
    ]

    static let clusterFlag = FlagSpec.bool("cluster", "use all endpoints from the cluster member list")

    static let putLong = """
        Puts the given key into the store.

        When <value> begins with '-', <value> is interpreted as a flag.
        Insert '--' for workaround:

        $ put <key> -- <value>
        $ put -- <key> <value>

        If <value> isn't given as a command line argument and '--ignore-value' is not specified,
        this command tries to read the value from standard input.

        If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
        this command tries to read the value from standard input.

        For example,
        $ cat file | put <key>
        will store the content of the file to <key>.
        """

    static let root = CommandSpec(
        programName, "", "A simple command line client for etcd3.", persistentFlags: globalFlags,
        subcommands: [
            CommandSpec("version", "", "Prints the version of \(programName)"),
            CommandSpec(
                "put", "[options] <key> <value> (<value> can also be given from stdin)", "Puts the given key into the store", long: putLong,
                flags: [
                    .bool("ignore-lease", "updates the key using its current lease"),
                    .bool("ignore-value", "updates the key using its current value"),
                    .string("lease", "0", "lease ID (in hexadecimal) to attach to the key"),
                    .bool("prev-kv", "return the previous key-value pair before modification"),
                ]),
            CommandSpec(
                "get", "[options] <key> [range_end]", "Gets the key or a range of keys",
                flags: [
                    .string("consistency", "l", "Linearizable(l) or Serializable(s)"),
                    .bool("from-key", "Get keys that are greater than or equal to the given key using byte compare"),
                    .bool("keys-only", "Get only the keys"),
                    .int64("limit", "Maximum number of results"),
                    .string("order", "", "Order of results; ASCEND or DESCEND (ASCEND by default)"),
                    .bool("prefix", "Get keys with matching prefix"),
                    .bool("print-value-only", "Only write values when using the \"simple\" output format"),
                    .int64("rev", "Specify the kv revision"),
                    .string("sort-by", "", "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION"),
                ]),
            CommandSpec(
                "del", "[options] <key> [range_end]", "Removes the specified key or range of keys [key, range_end)",
                flags: [
                    .bool("from-key", "delete keys that are greater than or equal to the given key using byte compare"),
                    .bool("prefix", "delete keys with matching prefix"),
                    .bool("prev-kv", "return deleted key-value pairs"),
                ]),
            CommandSpec(
                "txn", "[options]", "Txn processes all the requests in one transaction",
                flags: [.bool("interactive", "Input transaction in interactive mode", short: "i")]),
            CommandSpec(
                "compaction", "[options] <revision>", "Compacts the event history in etcd",
                flags: [.bool("physical", "'true' to wait for compaction to physically remove all old revisions")]),
            CommandSpec(
                "watch", "[options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]", "Watches events stream on keys or prefixes",
                flags: [
                    .bool("interactive", "Interactive mode", short: "i", implemented: false),
                    .bool("prefix", "Watch on a prefix if prefix is set"),
                    .bool("prev-kv", "get the previous key-value pair before the event happens"),
                    .int64("rev", "Revision to start watching"),
                ], usesArgsLenAtDash: true),
            CommandSpec(
                "lease", "<subcommand>", "Lease related commands",
                subcommands: [
                    CommandSpec("grant", "<ttl>", "Creates leases"),
                    CommandSpec("revoke", "<leaseID>", "Revokes leases"),
                    CommandSpec("timetolive", "<leaseID> [options]", "Get lease information", flags: [.bool("keys", "Get keys attached to this lease")]),
                    CommandSpec("list", "", "List all active leases"),
                    CommandSpec(
                        "keep-alive", "[options] <leaseID>", "Keeps leases alive (renew)",
                        flags: [.bool("once", "Resets the keep-alive time to its original value and exits immediately")]),
                ]),
            CommandSpec(
                "member", "<subcommand>", "Membership related commands",
                subcommands: [
                    CommandSpec(
                        "add", "<memberName> [options]", "Adds a member into the cluster",
                        flags: [
                            .bool("learner", "indicates if the new member is raft learner"),
                            .string("peer-urls", "", "comma separated peer URLs for the new member."),
                        ]),
                    CommandSpec("remove", "<memberID>", "Removes a member from the cluster"),
                    CommandSpec(
                        "update", "<memberID> [options]", "Updates a member in the cluster",
                        flags: [.string("peer-urls", "", "comma separated peer URLs for the updated member.")]),
                    CommandSpec(
                        "list", "", "Lists all members in the cluster",
                        long: "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.\n"
                            + "The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner."),
                    CommandSpec(
                        "promote", "<memberID>", "Promotes a non-voting member in the cluster",
                        long: "Promotes a non-voting learner member to a voting one in the cluster."),
                ]),
            CommandSpec(
                "endpoint", "<subcommand>", "Endpoint related commands", persistentFlags: [clusterFlag],
                subcommands: [
                    CommandSpec("health", "", "Checks the healthiness of endpoints specified in `--endpoints` flag"),
                    CommandSpec(
                        "status", "", "Prints out the status of endpoints specified in `--endpoints` flag",
                        long: "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.\n"
                            + "The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors."),
                ]),
            CommandSpec(
                "alarm", "<subcommand>", "Alarm related commands",
                subcommands: [CommandSpec("disarm", "", "Disarms all alarms"), CommandSpec("list", "", "Lists all alarms")]),
            CommandSpec(
                "defrag", "", "Defragments the storage of the etcd members with given endpoints",
                flags: [
                    clusterFlag,
                    .string("data-dir", "", "Optional. If present, defragments a data directory not in use by etcd.", implemented: false),
                ]),
            CommandSpec(
                "snapshot", "<subcommand>", "Manages etcd node snapshots",
                subcommands: [
                    CommandSpec(
                        "save", "<filename>", "Stores an etcd node backend snapshot to a given file",
                        flags: [
                            FlagSpec(
                                "format", .string, "etcd", "etcd (bbolt + SHA-256 trailer) or cairn (Cairn's own snapshot file)",
                                cairnOnly: true)
                        ]),
                    CommandSpec(
                        "status", "<filename>", "Gets backend snapshot status of a given file",
                        long: "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.\n"
                            + "The items in the lists are hash, revision, total keys, total size."),
                    CommandSpec(
                        "restore", "<filename> [options]", "Restores an etcd member snapshot to an etcd directory",
                        flags: [
                            .string("data-dir", "", "Path to the data directory"),
                            .string(
                                "initial-advertise-peer-urls", "http://localhost:2380",
                                "List of this member's peer URLs to advertise to the rest of the cluster"),
                            .string("initial-cluster", "default=http://localhost:2380", "Initial cluster configuration for restore bootstrap"),
                            .string("initial-cluster-token", "etcd-cluster", "Initial cluster token for the etcd cluster during restore bootstrap"),
                            .string("name", "default", "Human-readable name for this member"),
                            .bool("skip-hash-check", "Ignore snapshot integrity hash value (required if copied from data directory)"),
                            .string("wal-dir", "", "Path to the WAL directory (use --data-dir if none given)"),
                        ]),
                ]),
            CommandSpec("move-leader", "<transferee-member-id>", "Transfers leadership to another etcd cluster member."),
            CommandSpec(
                "help", "[command]", "Help about any command",
                long: "Help provides help for any command in the application.\nSimply type \(programName) help [path to command] for full details."),
        ])
}
