import ArgumentParser
import CairnBackend
import CairnFS
import CairnLMDB
import CairnMVCC
import Foundation
import Logging

/// The Cairn server.
///
/// What exists today: the member's keyspace (LMDB) is opened or created in
/// the data dir and its state reported; the process then holds the data dir
/// until SIGINT or SIGTERM. The etcd v3 client API, Raft and the WAL are
/// wired in by later work (see docs/status.md).
@main
struct Cairn: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "Cairn: an etcd-compatible, strongly consistent key-value store.")

    @Option(name: .customLong("name"), help: "Human-readable name for this member.")
    var name: String = ProcessInfo.processInfo.environment["CAIRN_NAME"] ?? "default"

    @Option(name: .customLong("data-dir"), help: "Path to the data directory (default: <name>.cairn).")
    var dataDir: String? = ProcessInfo.processInfo.environment["CAIRN_DATA_DIR"]

    @Option(name: .customLong("quota-backend-bytes"), help: "Raise an alarm when the keyspace exceeds this size.")
    var quotaBackendBytes: Int64 = BackendConfiguration.defaultQuotaBytes

    @Option(name: .customLong("log-level"), help: "debug, info, warn or error.")
    var logLevel: String = ProcessInfo.processInfo.environment["CAIRN_LOG_LEVEL"] ?? "info"

    func run() throws {
        let level: Logger.Level
        switch logLevel {
        case "debug": level = .debug
        case "info": level = .info
        case "warn": level = .warning
        case "error": level = .error
        default: throw ValidationError("--log-level must be debug, info, warn or error, not \(logLevel)")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "cairn")
        let dir = dataDir ?? "\(name).cairn"
        let keyspaceDir = dir + "/member/keyspace"
        // Created durably (each new directory fsynced into its parent), then
        // locked: a second server or `cairn-wal repair` on it is refused.
        try FileSystem.live.createDirectory(dir + "/member")
        let lock: DataDirLock
        do {
            lock = try DataDirLock.acquire(directory: dir, owner: "cairn")
        } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }
        defer { lock.unlock() }
        let config = BackendConfiguration(tables: Keyspace<LMDBBackend>.tableNames, quotaBytes: quotaBackendBytes)
        let keyspace = try Keyspace(backend: try LMDBBackend(path: keyspaceDir, configuration: config))
        let stats = try keyspace.backend.stats()
        logger.info(
            "opened member keyspace",
            metadata: [
                "name": "\(name)", "data-dir": "\(dir)", "revision": "\(keyspace.revision)",
                "compacted-revision": "\(keyspace.compactedRevision)", "keys": "\(keyspace.keyCount)",
                "applied-index": "\(keyspace.appliedIndex)", "db-size-bytes": "\(stats.sizeBytes)",
            ])
        logger.warning(
            "the etcd v3 client API, Raft and the WAL are not part of this build yet; the member holds its data dir until SIGINT or SIGTERM"
        )
        // Wait for a termination signal, then sync and exit 0.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let done = DispatchSemaphore(value: 0)
        let sources = [SIGINT, SIGTERM].map { sig in
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { done.signal() }
            s.resume()
            return s
        }
        done.wait()
        for s in sources { s.cancel() }
        try keyspace.backend.sync()
        logger.info("stopped")
    }
}
