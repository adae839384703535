import ArgumentParser
import CairnClient
import CairnProto
import Foundation

struct LeaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease", abstract: "Lease related commands",
        subcommands: [Grant.self, Revoke.self, TimeToLive.self, List.self, KeepAlive.self])

    /// The one argument of revoke/timetolive/keep-alive: a lease ID in hex.
    static func leaseArgument(_ args: [String], command: String) throws(CtlError) -> Int64 {
        guard args.count == 1 else { throw CtlError.badArgs("lease \(command) command needs 1 argument") }
        return try parseLeaseID(args[0])
    }

    struct Grant: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Creates leases")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []

        func execute(_ context: CommandContext) async throws {
            guard self.args.count == 1 else { throw CtlError.badArgs("lease grant command needs TTL argument") }
            guard let ttl = Int64(self.args[0]) else {
                throw CtlError.badArgs("bad TTL (strconv.ParseInt: parsing \(GoFormat.quote(self.args[0])): invalid syntax)")
            }
            var request = Etcdserverpb_LeaseGrantRequest()
            request.ttl = ttl
            let response = try await wrapping(CtlError.exitError, { "failed to grant lease (\($0))" }) {
                try await context.call(EtcdMethods.leaseGrant, request)
            }
            emit(try context.printer.leaseGrant(response))
        }
    }

    struct Revoke: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Revokes leases")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []

        func execute(_ context: CommandContext) async throws {
            var request = Etcdserverpb_LeaseRevokeRequest()
            request.id = try LeaseCommand.leaseArgument(self.args, command: "revoke")
            let response = try await wrapping(CtlError.exitError, { "failed to revoke lease (\($0))" }) {
                try await context.call(EtcdMethods.leaseRevoke, request)
            }
            emit(try context.printer.leaseRevoke(id: request.id, response))
        }
    }

    struct TimeToLive: CtlCommand {
        static let configuration = CommandConfiguration(commandName: "timetolive", abstract: "Get lease information")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []
        @Flag(help: "Get keys attached to this lease") var keys = false

        func execute(_ context: CommandContext) async throws {
            var request = Etcdserverpb_LeaseTimeToLiveRequest()
            request.id = try LeaseCommand.leaseArgument(self.args, command: "timetolive")
            request.keys = self.keys
            let response = try await wrapping(CtlError.exitBadConnection) {
                try await context.call(EtcdMethods.leaseTimeToLive, request)
            }
            emit(try context.printer.leaseTimeToLive(response, keysRequested: self.keys))
        }
    }

    struct List: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "List all active leases")
        @OptionGroup var global: GlobalOptions

        func execute(_ context: CommandContext) async throws {
            let response = try await wrapping(CtlError.exitBadConnection, { "failed to list leases (\($0))" }) {
                try await context.call(EtcdMethods.leaseLeases, Etcdserverpb_LeaseLeasesRequest())
            }
            emit(try context.printer.leaseList(response))
        }
    }

    struct KeepAlive: CtlCommand {
        static let configuration = CommandConfiguration(commandName: "keep-alive", abstract: "Keeps leases alive (renew)")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []
        @Flag(help: "Resets the keep-alive time to its original value and exits immediately") var once = false

        func execute(_ context: CommandContext) async throws {
            var request = Etcdserverpb_LeaseKeepAliveRequest()
            request.id = try LeaseCommand.leaseArgument(self.args, command: "keep-alive")
            let client = try context.client()
            if self.once {
                let response = try await wrapping(CtlError.exitBadConnection) { try await Self.keepAliveOnce(client, request, timeout: context.commandTimeout) }
                if response.ttl <= 0 {
                    throw CtlError(exitCode: CtlError.exitBadConnection, message: "etcdserver: requested lease not found")
                }
                emit(try context.printer.leaseKeepAlive(response))
                return
            }
            // Renews every third of the TTL until the lease is gone or the stream fails.
            while true {
                let response = try await wrapping(CtlError.exitBadConnection) { try await Self.keepAliveOnce(client, request, timeout: context.commandTimeout) }
                if response.ttl <= 0 {
                    emit("lease \(GoFormat.hex016(UInt64(bitPattern: request.id))) expired or revoked.\n")
                    return
                }
                emit(try context.printer.leaseKeepAlive(response))
                try await Task.sleep(for: .seconds(max(1, response.ttl / 3)))
            }
        }

        /// One request and its response on a LeaseKeepAlive stream; a lease the server does not
        /// know comes back with TTL 0, reported as etcd's "requested lease not found".
        static func keepAliveOnce(_ client: EtcdClient, _ request: Etcdserverpb_LeaseKeepAliveRequest, timeout: Duration) async throws -> Etcdserverpb_LeaseKeepAliveResponse {
            let call = try await client.bidiStream(EtcdMethods.leaseKeepAlive, timeout: timeout)
            defer { call.cancel() }
            try await call.send(request)
            for try await response in call.responses {
                return response
            }
            throw CtlError(exitCode: CtlError.exitBadConnection, message: "keep-alive stream ended")
        }
    }
}
