// Flags shared by every benchmark (etcd's benchmark tool's global and per-command flags),
// and the connections they describe.
import ArgumentParser
import CairnClient
import CairnGRPC
import CairnProto
import Logging
import NIOCore
import NIOPosix

struct BenchOptions: ParsableArguments {
    @Option(help: "gRPC endpoints, comma-separated host:port")
    var endpoints: String = "127.0.0.1:2379"

    @Option(help: "Total number of gRPC connections")
    var conns: Int = 1

    @Option(help: "Total number of concurrent clients (requests in flight)")
    var clients: Int = 1

    @Option(help: "Total number of requests")
    var total: Int = 10000

    @Option(help: "Maximum requests per second (0 is no limit)")
    var rate: Double = 0

    @Option(name: .customLong("key-size"), help: "Key size of a request, in bytes")
    var keySize: Int = 8

    @Option(name: .customLong("val-size"), help: "Value size of a put request, in bytes")
    var valSize: Int = 8

    @Option(name: .customLong("key-space-size"), help: "Maximum possible keys")
    var keySpaceSize: Int = 1

    @Flag(name: .customLong("sequential-keys"), help: "Use sequential keys (key i is i modulo the key space)")
    var sequentialKeys = false

    @Option(help: "Linearizable (l) or serializable (s) reads")
    var consistency: String = "l"

    @Flag(name: .customLong("target-leader"), help: "Connect only to the leader")
    var targetLeader = false

    @Flag(help: "Print the results as one JSON object on stdout")
    var json = false

    @Option(help: "Client event-loop threads (each drives its share of connections and clients)")
    var threads: Int = 1

    @Option(name: .customLong("timeout-ms"), help: "Per-request deadline in milliseconds (0 is none)")
    var timeoutMilliseconds: Int = 0

    var requestTimeout: Duration? { self.timeoutMilliseconds > 0 ? .milliseconds(self.timeoutMilliseconds) : nil }

    var endpointList: [Endpoint] {
        (try? self.parsedEndpoints()) ?? []
    }

    func parsedEndpoints() throws -> [Endpoint] {
        var list: [Endpoint] = []
        for text in self.endpoints.split(separator: ",") {
            do {
                list.append(try Endpoint(parsing: String(text)))
            } catch {
                throw ValidationError(error.message)
            }
        }
        return list
    }

    var serializable: Bool { self.consistency == "s" }

    func validate() throws {
        let endpoints = try self.parsedEndpoints()
        guard !endpoints.isEmpty else { throw ValidationError("--endpoints: no endpoint given") }
        guard self.conns >= 1 else { throw ValidationError("--conns must be at least 1, got \(self.conns)") }
        guard self.clients >= 1 else { throw ValidationError("--clients must be at least 1, got \(self.clients)") }
        guard self.total >= 0 else { throw ValidationError("--total must not be negative, got \(self.total)") }
        guard self.rate >= 0 else { throw ValidationError("--rate must not be negative, got \(self.rate)") }
        guard self.keySize >= 1 else { throw ValidationError("--key-size must be at least 1, got \(self.keySize)") }
        guard self.valSize >= 0 else { throw ValidationError("--val-size must not be negative, got \(self.valSize)") }
        guard self.keySpaceSize >= 1 else {
            throw ValidationError("--key-space-size must be at least 1, got \(self.keySpaceSize)")
        }
        guard self.consistency == "l" || self.consistency == "s" else {
            throw ValidationError("--consistency must be l (linearizable) or s (serializable), got \"\(self.consistency)\"")
        }
        guard (1...64).contains(self.threads) else { throw ValidationError("--threads must be 1...64, got \(self.threads)") }
        guard self.threads <= self.conns else {
            throw ValidationError("--threads (\(self.threads)) must not exceed --conns (\(self.conns))")
        }
        guard self.timeoutMilliseconds >= 0 else { throw ValidationError("--timeout-ms must not be negative") }
    }
}

/// The benchmark's connections: `conns` of them, round-robin over the endpoints, spread over
/// one single-threaded event-loop group per client thread (connection c on loop c % threads).
final class Connections: Sendable {
    let groups: [MultiThreadedEventLoopGroup]
    let loops: [any EventLoop]
    let clients: [EtcdClient]
    let all: [GRPCClientConnection]

    private init(groups: [MultiThreadedEventLoopGroup], clients: [EtcdClient], all: [GRPCClientConnection]) {
        self.groups = groups
        self.loops = groups.map { $0.next() }
        self.clients = clients
        self.all = all
    }

    static func open(_ options: BenchOptions) async throws -> Connections {
        var logger = Logger(label: "cairn-bench")
        logger.logLevel = .warning
        let groups = (0..<options.threads).map { _ in MultiThreadedEventLoopGroup(numberOfThreads: 1) }
        var endpoints = try options.parsedEndpoints()
        if options.targetLeader {
            endpoints = try await leaders(endpoints, group: groups[0], logger: logger)
        }
        var clients: [EtcdClient] = []
        var all: [GRPCClientConnection] = []
        for c in 0..<options.conns {
            let client = EtcdClient(
                configuration: .init(endpoints: [endpoints[c % endpoints.count]]), group: groups[c % groups.count],
                logger: logger)
            clients.append(client)
            do {
                all.append(try await client.connection())
            } catch {
                throw BenchError("cannot connect to \(endpoints[c % endpoints.count]): \(error)")
            }
        }
        return Connections(groups: groups, clients: clients, all: all)
    }

    /// The endpoints whose member is the leader (Maintenance.Status: leader == own member ID).
    static func leaders(_ endpoints: [Endpoint], group: any EventLoopGroup, logger: Logger) async throws -> [Endpoint] {
        var found: [Endpoint] = []
        for e in endpoints {
            let client = EtcdClient(configuration: .init(endpoints: [e]), group: group, logger: logger)
            defer { Task { await client.close() } }
            if let status = try? await client.call(EtcdMethods.status, Etcdserverpb_StatusRequest(), timeout: .seconds(5)),
                status.leader == status.header.memberID
            {
                found.append(e)
            }
        }
        guard !found.isEmpty else { throw BenchError("--target-leader: no endpoint reports itself as the leader") }
        return found
    }

    func close() async {
        for c in self.clients { await c.close() }
        for g in self.groups { try? await g.shutdownGracefully() }
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
