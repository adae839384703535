import ArgumentParser
import CairnAPI
import CairnBackend
import CairnFS
import CairnGRPC
import CairnLMDB
import CairnMVCC
import CairnServer
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The Cairn server: one member serving etcd's v3 gRPC API.
@main
struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "Cairn: an etcd-compatible, strongly consistent key-value store.")

    @Option(name: .customLong("name"), help: "Human-readable name for this member.")
    var name: String = "default"

    @Option(name: .customLong("data-dir"), help: "Path to the data directory (default: <name>.cairn).")
    var dataDir: String?

    @Option(name: .customLong("listen-client-urls"), help: "URLs to serve clients on.")
    var listenClientURLs: String = "http://localhost:2379"

    @Option(name: .customLong("advertise-client-urls"), help: "Client URLs advertised to the cluster.")
    var advertiseClientURLs: String = "http://localhost:2379"

    @Option(name: .customLong("quota-backend-bytes"), help: "Raise an alarm when the keyspace exceeds this size.")
    var quotaBackendBytes: Int64 = BackendConfiguration.defaultQuotaBytes

    @Option(name: .customLong("snapshot-count"), help: "Applied entries between snapshots.")
    var snapshotCount: UInt64 = 100_000

    @Option(name: .customLong("log-level"), help: "debug, info, warn or error.")
    var logLevel: String = "info"

    func run() async throws {
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
        var options = ServerOptions(dataDirectory: dataDir ?? "\(name).cairn")
        options.name = name
        options.clientURLs = advertiseClientURLs.split(separator: ",").map(String.init)
        options.quotaBackendBytes = quotaBackendBytes
        options.snapshotCount = snapshotCount
        var listen: [(host: String, port: Int)] = []
        for url in listenClientURLs.split(separator: ",") {
            guard let hp = ClientURL.parse(String(url)) else {
                throw ValidationError("--listen-client-urls: \(url) is not an http://host:port URL")
            }
            listen.append(hp)
        }
        try await ServerMain.run(options: options, listen: listen, logger: logger)
    }
}

enum ClientURL {
    static func parse(_ s: String) -> (host: String, port: Int)? {
        guard s.hasPrefix("http://") else { return nil }
        let rest = s.dropFirst(7)
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]) else { return nil }
        return (String(rest[..<colon]), port)
    }
}

enum ServerMain {
    static func run(options: ServerOptions, listen: [(host: String, port: Int)], logger: Logger) async throws {
        // Created durably (each new directory fsynced into its parent), then locked: a second
        // server or `cairn-wal repair` on it is refused.
        try FileSystem.live.createDirectory(options.memberDirectory)
        let lock: DataDirLock
        do {
            lock = try DataDirLock.acquire(directory: options.dataDirectory, owner: "cairn")
        } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }
        defer { lock.unlock() }
        // The quota is a soft limit (NOSPACE is raised when it is reached); the backend's hard
        // limit leaves room above it so that entries already committed can always be applied.
        let hardLimit = options.quotaBackendBytes + options.quotaBackendBytes / 4 + (64 << 20)
        let config = BackendConfiguration(tables: Keyspace<LMDBBackend>.tableNames, quotaBytes: hardLimit)
        let backend = try LMDBBackend(path: options.keyspaceDirectory, configuration: config)
        let server = try RaftServer.open(options: options, backend: backend, logger: logger)
        try server.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        var router = GRPCRouter()
        EtcdServices.register(
            on: &router, server: server, maxRequestBytes: KVService.defaultMaxRequestBytes,
            maxTxnOps: KVService.defaultMaxTxnOps, logger: logger)
        var listeners: [GRPCServer] = []
        for (host, port) in listen {
            do {
                listeners.append(try await GRPCServer.start(host: host, port: port, group: group, router: router))
                logger.info("serving client requests", metadata: ["address": "\(host):\(port)"])
            } catch {
                logger.error("cannot listen for clients", metadata: ["address": "\(host):\(port)", "error": "\(error)"])
                server.stop()
                try await group.shutdownGracefully()
                throw ExitCode(1)
            }
        }
        let sig = await waitForSignal()
        logger.info("shutting down", metadata: ["signal": "\(sig)"])
        for l in listeners { try? await l.close() }
        server.stop()
        try await group.shutdownGracefully()
    }

    /// Waits for SIGINT or SIGTERM.
    static func waitForSignal() async -> Int32 {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        return await withCheckedContinuation { (c: CheckedContinuation<Int32, Never>) in
            let once = LockedValue(false)
            for sig in [SIGINT, SIGTERM] {
                let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                s.setEventHandler {
                    let first = once.withLock { done -> Bool in
                        defer { done = true }
                        return !done
                    }
                    if first { c.resume(returning: sig) }
                }
                s.resume()
                signalSources.withLock { $0.append(s) }  // kept alive for the process's life
            }
        }
    }
}

/// The signal sources `waitForSignal` installs; a dropped source would never fire.
let signalSources = LockedValue<[any DispatchSourceSignal]>([])
