import ArgumentParser
import CairnBolt
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

        func execute(_ context: CommandContext) async throws {
            guard self.args.count == 1 else { throw CtlError.badArgs("snapshot save expects one argument") }
            guard context.endpoints.count == 1 else {
                throw CtlError.badArgs("snapshot must be requested to one selected node, not multiple [\(context.endpoints.joined(separator: " "))]")
            }
            let path = self.args[0]
            let partPath = path + ".part"
            try await wrapping { try await Self.download(context, to: partPath) }
            guard rename(partPath, path) == 0 else {
                throw CtlError(exitCode: CtlError.exitError, message: "could not rename \(partPath) to \(path) (\(String(cString: strerror(errno))))")
            }
            emit("Snapshot saved at \(path)\n")
        }

        /// Streams the snapshot into `partPath`, fsyncs it, and checks that its last 32 bytes are
        /// the SHA-256 of everything before them (the trailer etcd appends to the bbolt file).
        static func download(_ context: CommandContext, to partPath: String) async throws {
            let client = try context.client()
            guard FileManager.default.createFile(atPath: partPath, contents: nil), let file = FileHandle(forWritingAtPath: partPath) else {
                throw CtlError(exitCode: CtlError.exitError, message: "could not create \(partPath)")
            }
            defer { try? file.close() }
            let call = try await client.serverStream(EtcdMethods.snapshot, Etcdserverpb_SnapshotRequest())
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
            guard tail.count == 32, Array(hasher.finalize()) == tail else {
                throw CtlError(exitCode: CtlError.exitError, message: "snapshot file integrity check failed: SHA-256 trailer does not match (\(partPath) kept)")
            }
        }
    }

    static let needsBoltReader = "etcd snapshot files (bbolt databases) cannot be read by cairnctl yet: \"snapshot status\" and \"snapshot restore\" need the bbolt reader of Cairn's snapshot interchange work (issue 7)"

    struct Status: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Gets backend snapshot status of a given file (not yet supported)")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []
        func execute(_ context: CommandContext) async throws {
            throw CtlError(exitCode: CtlError.exitBadFeature, message: SnapshotCommand.needsBoltReader)
        }
    }

    struct Restore: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Restores an etcd member snapshot to an etcd directory (not yet supported)")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []
        @Option(name: .customLong("data-dir")) var dataDir = ""
        @Option(name: .customLong("name")) var name = ""
        @Option(name: .customLong("initial-cluster")) var initialCluster = ""
        @Option(name: .customLong("initial-cluster-token")) var initialClusterToken = ""
        @Option(name: .customLong("initial-advertise-peer-urls")) var initialAdvertisePeerURLs = ""
        @Flag(name: .customLong("skip-hash-check")) var skipHashCheck = false
        func execute(_ context: CommandContext) async throws {
            throw CtlError(exitCode: CtlError.exitBadFeature, message: SnapshotCommand.needsBoltReader)
        }
    }
}
