import ArgumentParser
import CairnBolt
import CairnRestore
import CairnClient
import CairnProto
import Foundation

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Manages etcd node snapshots", subcommands: [Save.self, Status.self, Restore.self])

    struct Save: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Stores an etcd node backend snapshot to a given file")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []
        @Option(
            name: .customLong("format"),
            help: "etcd (a bbolt database with a SHA-256 trailer, as etcdctl saves) or cairn (Cairn's own zstd snapshot file)")
        var format = "etcd"

        func execute(_ context: CommandContext) async throws {
            guard self.args.count == 1 else { throw CtlError.badArgs("snapshot save expects one argument") }
            guard context.endpoints.count == 1 else {
                throw CtlError.badArgs("snapshot must be requested to one selected node, not multiple [\(context.endpoints.joined(separator: " "))]")
            }
            guard self.format == "etcd" || self.format == "cairn" else {
                throw CtlError.badArgs("--format must be etcd or cairn, not \(self.format)")
            }
            let path = self.args[0]
            let partPath = path + ".part"
            try await wrapping { try await Self.download(context, to: partPath, cairnFormat: self.format == "cairn") }
            guard rename(partPath, path) == 0 else {
                throw CtlError(exitCode: CtlError.exitError, message: "could not rename \(partPath) to \(path) (\(String(cString: strerror(errno))))")
            }
            emit("Snapshot saved at \(path)\n")
        }

        /// Streams the snapshot into `partPath`, fsyncs it, and checks that its last 32 bytes are
        /// the SHA-256 of everything before them (the trailer etcd appends to the bbolt file).
        /// `cairnFormat` asks a Cairn server for its own snapshot file (checked by its own checksums).
        static func download(_ context: CommandContext, to partPath: String, cairnFormat: Bool = false) async throws {
            let client = try context.client()
            guard FileManager.default.createFile(atPath: partPath, contents: nil), let file = FileHandle(forWritingAtPath: partPath) else {
                throw CtlError(exitCode: CtlError.exitError, message: "could not create \(partPath)")
            }
            defer { try? file.close() }
            let call = try await client.serverStream(
                EtcdMethods.snapshot, Etcdserverpb_SnapshotRequest(), metadata: cairnFormat ? [(snapshotFormatHeader, "cairn")] : [])
            var hasher = SHA256()
            var tail: [UInt8] = []  // the last 32 bytes seen, held back from the hash
            for try await chunk in call.responses {
                try file.write(contentsOf: chunk.blob)
                tail += chunk.blob
                if tail.count > 32 {
                    hasher.update(tail[..<(tail.count - 32)])
                    tail.removeFirst(tail.count - 32)
                }
            }
            try file.synchronize()
            if cairnFormat { return }
            guard tail.count == 32, Array(hasher.finalize()) == tail else {
                throw CtlError(exitCode: CtlError.exitError, message: "snapshot file integrity check failed: SHA-256 trailer does not match (\(partPath) kept)")
            }
        }
    }

    /// The request metadata with which a Cairn server is asked for a given snapshot format.
    static let snapshotFormatHeader = "cairn-snapshot-format"

    struct Status: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Gets backend snapshot status of a given file")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []
        func execute(_ context: CommandContext) async throws {
            guard self.args.count == 1 else { throw CtlError.badArgs("snapshot status requires exactly one argument") }
            let status: EtcdSnapshot.Status
            do {
                // As etcdctl: the trailer is not checked here, only the database.
                status = try EtcdSnapshot.status(try BoltReader(path: self.args[0]))
            } catch {
                throw CtlError(exitCode: CtlError.exitError, message: "\(error)")
            }
            emit(try Self.render(status, context.printer.format))
        }

        /// etcdctl 3.4's output of `snapshot status` per format.
        static func render(_ s: EtcdSnapshot.Status, _ format: OutputFormat) throws(CtlError) -> String {
            let row = [String(s.hash, radix: 16), "\(s.revision)", "\(s.totalKeys)", GoFormat.humanBytes(UInt64(s.totalSizeBytes))]
            switch format {
            case .simple: return row.joined(separator: ", ") + "\n"
            case .table: return Table.render(header: ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], rows: [row])
            case .json:
                return "{\"hash\":\(s.hash),\"revision\":\(s.revision),\"totalKey\":\(s.totalKeys),\"totalSize\":\(s.totalSizeBytes)}\n"
            case .fields:
                return "\"Hash\" : \(s.hash)\n\"Revision\" : \(s.revision)\n\"Keys\" : \(s.totalKeys)\n\"Size\" : \(s.totalSizeBytes)\n"
            case .protobuf: throw .unsupported(format)
            }
        }
    }

    struct Restore: CtlCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restores an etcd member snapshot to a Cairn data directory (start cairn on it with the same --name, peer URLs and token)")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []
        @Option(name: .customLong("data-dir"), help: "Path to the data directory (default <name>.etcd)") var dataDir = ""
        @Option(name: .customLong("name"), help: "Human-readable name for this member") var name = "default"
        @Option(name: .customLong("initial-cluster"), help: "Initial cluster configuration for restore bootstrap")
        var initialCluster = "default=http://localhost:2380"
        @Option(name: .customLong("initial-cluster-token"), help: "Initial cluster token for the etcd cluster during restore bootstrap")
        var initialClusterToken = "etcd-cluster"
        @Option(name: .customLong("initial-advertise-peer-urls"), help: "List of this member's peer URLs to advertise to the rest of the cluster")
        var initialAdvertisePeerURLs = "http://localhost:2380"
        @Option(name: .customLong("wal-dir"), help: "Path to the WAL directory (use --data-dir if none given)") var walDir = ""
        @Flag(name: .customLong("skip-hash-check"), help: "Ignore snapshot integrity hash value (required if copied from data directory)")
        var skipHashCheck = false

        func execute(_ context: CommandContext) async throws {
            guard self.args.count == 1 else { throw CtlError.badArgs("snapshot restore requires exactly one argument") }
            let request = EtcdSnapshotRestore(
                snapshotPath: self.args[0], dataDirectory: self.dataDir.isEmpty ? self.name + ".etcd" : self.dataDir,
                name: self.name, initialCluster: self.initialCluster, initialClusterToken: self.initialClusterToken,
                peerURLs: self.initialAdvertisePeerURLs, skipHashCheck: self.skipHashCheck)
            let summary: EtcdSnapshotRestore.Summary
            do { summary = try request.run() } catch EtcdSnapshotRestore.Failure.badArguments(let message) {
                throw CtlError.badArgs(message)
            } catch {
                throw CtlError(exitCode: CtlError.exitError, message: "\(error)")
            }
            emit(
                "Snapshot restored into \(request.dataDirectory): revision \(summary.revision), \(summary.keys) keys, "
                    + "\(summary.revisions) revisions since compaction at \(summary.compactedRevision), \(summary.leases) leases\n")
            if !self.walDir.isEmpty {
                // A restored Cairn directory has no WAL yet: the member creates it at first start.
                emit("Start cairn with --wal-dir \(self.walDir) to keep its WAL there\n")
            }
        }
    }
}
