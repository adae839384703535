import ArgumentParser
import CairnConfig
import CairnMetrics
import CairnAPI
import CairnBackend
import CairnFS
import CairnGRPC
import CairnLMDB
import CairnMVCC
import CairnRestore
import CairnServer
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The Cairn server: one member serving etcd's v3 gRPC API, started as etcd is (etcd's flags,
/// `CAIRN_*` variables, `--config-file`).
@main
struct Cairn {
    static func main() async {
        let command: ServerCommand
        do {
            command = try ServerConfiguration.parse(
                arguments: Array(CommandLine.arguments.dropFirst()), environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("cairn: \(error.message)\n".utf8))
            if error.isUsageError { FileHandle.standardError.write(Data(ServerConfiguration.usage.utf8)) }
            exit(1)  // unknown, malformed or conflicting options: exit code 1
        }
        switch command {
        case .printHelp:
            print(ServerConfiguration.usage)
        case .printVersion:
            print("cairn Version: \(ServerMain.version)\netcd API Version: \(ServerMain.etcdVersion)")
        case .serve(let config, let warnings):
            let level: Logger.Level
            switch config.logLevel {
            case .debug: level = .debug
            case .info: level = .info
            case .warn: level = .warning
            case .error, .panic, .fatal: level = .error
            }
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            let logger = Logger(label: "cairn")
            for w in warnings { logger.warning("\(w)") }
            do {
                try await ServerMain.run(config, logger: logger)
            } catch let e as ExitCode {
                exit(e.rawValue)
            } catch {
                logger.error("cairn: \(error)")
                exit(1)
            }
        }
    }
}

enum ServerMain {
    static let version = "0.1.0"
    static let etcdVersion = "3.4.0"

    /// `--initial-etcd-snapshot`: on a first start, the data dir is built from an etcd 3.4
    /// snapshot file exactly as `cairnctl snapshot restore` builds it (verified first, built
    /// beside the target and renamed into place); once a member exists the flag is ignored,
    /// as etcd ignores its bootstrap flags on a restart.
    static func restoreOnFirstStart(
        from snapshot: String, _ config: ServerConfiguration, _ options: ServerOptions, logger: Logger
    ) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: options.memberDirectory) {
            logger.info(
                "--initial-etcd-snapshot ignored: the data dir already holds a member",
                metadata: ["data-dir": "\(options.dataDirectory)"])
            return
        }
        if let segments = try? fm.contentsOfDirectory(atPath: options.resolvedWALDirectory),
            segments.contains(where: { $0.hasSuffix(".wal") })
        {
            logger.error(
                "--initial-etcd-snapshot: \(options.resolvedWALDirectory) holds another member's WAL; refusing to restore beside it")
            throw ExitCode(1)
        }
        if let leftovers = try? fm.contentsOfDirectory(atPath: options.dataDirectory) {
            guard leftovers.isEmpty else {
                logger.error(
                    "--initial-etcd-snapshot: \(options.dataDirectory) exists and is not empty but holds no member; refusing to restore over it")
                throw ExitCode(1)
            }
            try fm.removeItem(atPath: options.dataDirectory)
        }
        let cluster = config.initialCluster.flatMap { m in m.peerURLs.map { "\(m.name)=\($0.string)" } }
        let restore = EtcdSnapshotRestore(
            snapshotPath: snapshot, dataDirectory: options.dataDirectory, name: config.name,
            initialCluster: cluster.joined(separator: ","), initialClusterToken: config.initialClusterToken,
            peerURLs: config.initialAdvertisePeerURLs.map(\.string).joined(separator: ","), skipHashCheck: false)
        do {
            let summary = try restore.run()
            logger.notice(
                "data dir built from an etcd snapshot",
                metadata: [
                    "snapshot": "\(snapshot)", "data-dir": "\(options.dataDirectory)", "revision": "\(summary.revision)",
                    "keys": "\(summary.keys)", "leases": "\(summary.leases)",
                ])
        } catch {
            logger.error("--initial-etcd-snapshot: \(error)")
            throw ExitCode(1)
        }
    }

    static func run(_ config: ServerConfiguration, logger: Logger) async throws {
        var options = ServerOptions(dataDirectory: config.dataDirectory)
        options.name = config.name
        options.walDirectory = config.walDirectory
        options.initialClusterToken = config.initialClusterToken
        options.peerURLs = config.initialAdvertisePeerURLs.map(\.string)
        options.clientURLs = config.advertiseClientURLs.map(\.string)
        options.heartbeatIntervalMilliseconds = config.heartbeatIntervalMilliseconds
        options.electionTimeoutMilliseconds = config.electionTimeoutMilliseconds
        options.snapshotCount = UInt64(max(config.snapshotCount, 1))
        options.maxSnapshots = config.maxSnapshots
        options.maxWALs = config.maxWALs
        options.quotaBackendBytes = config.effectiveQuotaBackendBytes ?? ServerConfiguration.defaultQuotaBackendBytes
        options.etcdVersion = etcdVersion
        if config.initialCluster.count > 1 {
            logger.error(
                "this build serves one member only; --initial-cluster lists \(config.initialCluster.count) (multi-member clusters are not supported yet)")
            throw ExitCode(1)
        }
        if let snapshot = config.initialEtcdSnapshot {
            try restoreOnFirstStart(from: snapshot, config, options, logger: logger)
        }
        let metrics = PrometheusMetrics()
        metrics.bootstrapMetricsSystem()
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
        let backendConfig = BackendConfiguration(tables: Keyspace<LMDBBackend>.tableNames, quotaBytes: hardLimit)
        // After a machine crash the keyspace may have lost unsynced commits: set it aside to be
        // rebuilt from the newest snapshot and the WAL (a killed process keeps it as it is).
        _ = try KeyspaceCrashGuard.prepare(options, bootID: KeyspaceCrashGuard.currentBootID(), logger: logger)
        let backend = try LMDBBackend(path: options.keyspaceDirectory, configuration: backendConfig)
        let server = try RaftServer.open(options: options, backend: backend, logger: logger)
        try server.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        var router = GRPCRouter()
        EtcdServices.register(
            on: &router, server: server, maxRequestBytes: config.maxRequestBytes, maxTxnOps: config.maxTxnOps,
            logger: logger)
        let endpoints = { (clientPort: Bool) in
            HTTPEndpoints.etcd(
                health: { server.status.isLeader && server.status.halted == nil && server.activeAlarms.isEmpty },
                version: { HTTPEndpoints.Versions(server: etcdVersion, cluster: "3.4.0") },
                metrics: { metrics.render() }, servesVersion: clientPort, addsCORSHeaders: clientPort)
        }
        var grpcConfiguration = GRPCServerConfiguration()
        grpcConfiguration.httpEndpoints = endpoints(true)
        let connections = OpenConnections()
        grpcConfiguration.onConnection = { connections.add($0) }
        var listeners: [any ListeningServer] = []
        func fail(_ what: String, _ url: ServerURL, _ error: any Error) async throws -> Never {
            logger.error("cannot listen for \(what)", metadata: ["url": "\(url)", "error": "\(error)"])
            for l in listeners { try? await l.close() }
            server.stop()
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        for url in config.listenClientURLs {
            do {
                listeners.append(
                    try await GRPCServer.start(
                        host: url.host, port: url.port, group: group, router: router, configuration: grpcConfiguration))
                logger.info("serving client requests (gRPC and HTTP)", metadata: ["url": "\(url)"])
            } catch { try await fail("clients", url, error) }
        }
        for url in config.listenMetricsURLs {
            do {
                listeners.append(try await HTTPServer.start(host: url.host, port: url.port, group: group, endpoints: endpoints(false)))
                logger.info("serving metrics", metadata: ["url": "\(url)"])
            } catch { try await fail("metrics", url, error) }
        }
        let sig = await waitForSignal()
        logger.info("shutting down", metadata: ["signal": "\(sig)"])
        // Stop accepting; GOAWAY on every client connection and wait (at most
        // `drainTimeout`) for the unary calls in flight to be answered; then stop the member
        // (which completes or fails everything still waiting, syncs the backend, closes the WAL).
        for l in listeners { try? await l.close() }
        // As long as a write may wait for its answer (the request timeout, 7 s by default): a
        // write behind a slow disk is then answered or times out, never "server stopped".
        await connections.drain(
            on: group.next(), timeout: .milliseconds(Int64(options.effectiveRequestTimeoutMilliseconds) + 500), logger: logger)
        if server.stop() {
            do { try KeyspaceCrashGuard.markClean(options) } catch {
                logger.error("cannot record the clean stop", metadata: ["error": "\(error)"])
            }
        }
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

/// The open client connections, for the graceful stop's drain. Bounded by the connections the
/// listeners accepted and that are still open (each removes itself when it closes).
final class OpenConnections: Sendable {
    private let channels = LockedValue<[ObjectIdentifier: any Channel]>([:])
    /// Set when the drain begins: a connection accepted from then on is drained at once.
    private let draining = LockedValue(false)

    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let drainNow = channels.withLock { c -> Bool in
            c[id] = channel
            return draining.current
        }
        channel.closeFuture.whenComplete { [self] _ in channels.withLock { _ = $0.removeValue(forKey: id) } }
        if drainNow {
            // Accepted just before the listener closed; the gRPC handler completes the promise.
            channel.pipeline.fireUserInboundEventTriggered(GRPCDrainRequest(promise: channel.eventLoop.makePromise()))
        }
    }

    /// Sends every connection a `GRPCDrainRequest` and waits until all answered or `timeout`.
    func drain(on loop: any EventLoop, timeout: TimeAmount, logger: Logger) async {
        let open = channels.withLock { c -> [any Channel] in
            draining.withLock { $0 = true }
            return Array(c.values)
        }
        guard !open.isEmpty else { return }
        let promises = open.map { channel -> EventLoopPromise<Void> in
            let promise = channel.eventLoop.makePromise(of: Void.self)
            channel.pipeline.fireUserInboundEventTriggered(GRPCDrainRequest(promise: promise))
            channel.closeFuture.whenComplete { _ in promise.succeed() }  // a connection gone is drained
            return promise
        }
        let answered = LockedValue(0)
        for p in promises { p.futureResult.whenComplete { _ in answered.withLock { $0 += 1 } } }
        let all = loop.makePromise(of: Void.self)
        EventLoopFuture.andAllComplete(promises.map(\.futureResult), on: loop).cascade(to: all)
        let timer = loop.scheduleTask(in: timeout) { all.succeed() }  // a no-op once drained
        try? await all.futureResult.get()
        timer.cancel()
        let waiting = promises.count - answered.current
        if waiting > 0 {
            logger.warning("stopping with unary calls still in flight", metadata: ["connections": "\(waiting)"])
        }
        for p in promises { p.succeed() }  // no promise left unfulfilled (a no-op for the rest)
    }
}
