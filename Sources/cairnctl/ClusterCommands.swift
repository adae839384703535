import ArgumentParser
import CairnClient
import CairnGRPC
import CairnProto
import Foundation
import SwiftProtobuf

/// Parses a member ID written in hex, as etcdctl does.
func parseMemberID(_ args: [String], command: String) throws(CtlError) -> UInt64 {
    guard args.count == 1 else { throw CtlError.badArgs("member ID is not provided") }
    guard let id = UInt64(args[0], radix: 16) else {
        throw CtlError.badArgs("bad member ID arg (strconv.ParseUint: parsing \(GoFormat.quote(args[0])): invalid syntax), expecting ID in Hex")
    }
    return id
}

func peerURLs(_ text: String) throws(CtlError) -> [String] {
    let urls = text.split(separator: ",").map(String.init)
    guard !urls.isEmpty else { throw CtlError.badArgs("member peer urls not provided") }
    return urls
}

/// The responses of member remove, update and promote: a header and the members after the change.
protocol MemberChangeResponse: SwiftProtobuf.Message {
    var hasHeader: Bool { get }
    var header: Etcdserverpb_ResponseHeader { get }
    var members: [Etcdserverpb_Member] { get }
}

extension Etcdserverpb_MemberRemoveResponse: MemberChangeResponse {}
extension Etcdserverpb_MemberUpdateResponse: MemberChangeResponse {}
extension Etcdserverpb_MemberPromoteResponse: MemberChangeResponse {}

struct MemberCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "member", abstract: "Membership related commands",
        subcommands: [Add.self, Remove.self, Update.self, List.self, Promote.self])

    /// Sends a remove/update/promote request and prints "Member … <verb> … cluster …".
    static func change<Req, Resp: MemberChangeResponse>(
        _ context: CommandContext, _ method: UnaryMethod<Req, Resp>, _ request: Req, id: UInt64, verb: String
    ) async throws {
        let r = try await wrapping { try await context.call(method, request) }
        emit(try context.printer.memberChange(verb: verb, id: id, hasHeader: r.hasHeader, header: r.header, member: nil, members: r.members))
    }

    struct Add: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Adds a member into the cluster")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []
        @Option(name: .customLong("peer-urls"), help: "comma separated peer URLs for the new member.") var peerURLs = ""
        @Flag(help: "indicates if the new member is raft learner") var learner = false

        func execute(_ context: CommandContext) async throws {
            guard self.args.count == 1 else { throw CtlError.badArgs("member name not provided") }
            let name = self.args[0]
            var request = Etcdserverpb_MemberAddRequest()
            request.peerUrls = try cairnctl.peerURLs(self.peerURLs)
            request.isLearner = self.learner
            let r = try await wrapping { try await context.call(EtcdMethods.memberAdd, request) }
            emit(try context.printer.memberChange(
                verb: "added", id: r.member.id, isLearner: r.member.isLearner, hasHeader: r.hasHeader, header: r.header,
                member: r.hasMember ? r.member : nil, members: r.members))
            guard context.printer.format == .simple else { return }
            var cluster: [String] = []
            for m in r.members {
                for u in m.peerUrls { cluster.append("\(m.id == r.member.id ? name : m.name)=\(u)") }
            }
            emit("\nETCD_NAME=\(GoFormat.quote(name))\nETCD_INITIAL_CLUSTER=\(GoFormat.quote(cluster.joined(separator: ",")))\n"
                + "ETCD_INITIAL_ADVERTISE_PEER_URLS=\(GoFormat.quote(request.peerUrls.joined(separator: ",")))\n"
                + "ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n")
        }
    }

    struct Remove: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Removes a member from the cluster")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []

        func execute(_ context: CommandContext) async throws {
            var request = Etcdserverpb_MemberRemoveRequest()
            request.id = try parseMemberID(self.args, command: "remove")
            try await MemberCommand.change(context, EtcdMethods.memberRemove, request, id: request.id, verb: "removed")
        }
    }

    struct Update: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Updates a member in the cluster")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []
        @Option(name: .customLong("peer-urls"), help: "comma separated peer URLs for the updated member.") var peerURLs = ""

        func execute(_ context: CommandContext) async throws {
            var request = Etcdserverpb_MemberUpdateRequest()
            request.id = try parseMemberID(self.args, command: "update")
            request.peerUrls = try cairnctl.peerURLs(self.peerURLs)
            try await MemberCommand.change(context, EtcdMethods.memberUpdate, request, id: request.id, verb: "updated")
        }
    }

    struct Promote: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Promotes a non-voting member in the cluster")
        @OptionGroup var global: GlobalOptions
        @Argument var args: [String] = []

        func execute(_ context: CommandContext) async throws {
            var request = Etcdserverpb_MemberPromoteRequest()
            request.id = try parseMemberID(self.args, command: "promote")
            try await MemberCommand.change(context, EtcdMethods.memberPromote, request, id: request.id, verb: "promoted")
        }
    }

    struct List: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Lists all members in the cluster")
        @OptionGroup var global: GlobalOptions

        func execute(_ context: CommandContext) async throws {
            let r = try await wrapping { try await context.call(EtcdMethods.memberList, Etcdserverpb_MemberListRequest()) }
            emit(try context.printer.memberList(r))
        }
    }
}

/// The endpoints a per-endpoint command talks to: the flag's, or with `--cluster` every member's client URLs.
func targetEndpoints(_ context: CommandContext, cluster: Bool) async throws -> [String] {
    guard cluster else { return context.endpoints }
    let r = try await wrapping { try await context.call(EtcdMethods.memberList, Etcdserverpb_MemberListRequest()) }
    return r.members.flatMap(\.clientUrls)
}

struct EndpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoint", abstract: "Endpoint related commands", subcommands: [Health.self, Status.self])

    struct Health: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Checks the healthiness of endpoints specified in `--endpoints` flag")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "use all endpoints from the cluster member list") var cluster = false

        func execute(_ context: CommandContext) async throws {
            var results: [Printer.Health] = []
            for endpoint in try await targetEndpoints(context, cluster: self.cluster) {
                results.append(await Self.check(endpoint, context))
            }
            let (out, err) = try context.printer.health(results)
            emit(out)
            emitError(err)
            if results.contains(where: { !$0.healthy }) { throw CtlError(exitCode: CtlError.exitError, message: "unhealthy cluster") }
        }

        /// A linearizable read of the key "health" (any answer but an error, or permission denied,
        /// is healthy), then no active alarm.
        static func check(_ endpoint: String, _ context: CommandContext) async -> Printer.Health {
            let clock = ContinuousClock()
            let start = clock.now
            do {
                let client = try context.client(endpoints: [endpoint])
                defer { Task { await client.close() } }
                var get = Etcdserverpb_RangeRequest()
                get.key = Data("health".utf8)
                do {
                    _ = try await context.call(EtcdMethods.range, get, on: client, endpoint: endpoint)
                } catch let s as GRPCStatus where s.message == "etcdserver: permission denied" {}
                let took = clock.now - start
                let alarms = try? await context.call(EtcdMethods.alarm, Etcdserverpb_AlarmRequest(), on: client, endpoint: endpoint)
                if let alarms, !alarms.alarms.isEmpty {
                    let names = alarms.alarms.map { "\($0.alarm)".uppercased() }.joined(separator: ", ")
                    return .init(endpoint: endpoint, healthy: false, took: took, error: "Active Alarm(s): \(names)")
                }
                return .init(endpoint: endpoint, healthy: true, took: took, error: "")
            } catch {
                return .init(endpoint: endpoint, healthy: false, took: clock.now - start, error: describe(error))
            }
        }
    }

    struct Status: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Prints out the status of endpoints specified in `--endpoints` flag")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "use all endpoints from the cluster member list") var cluster = false

        func execute(_ context: CommandContext) async throws {
            var statuses: [(String, Etcdserverpb_StatusResponse)] = []
            for endpoint in try await targetEndpoints(context, cluster: self.cluster) {
                do {
                    let client = try context.client(endpoints: [endpoint])
                    statuses.append((endpoint, try await context.call(EtcdMethods.status, Etcdserverpb_StatusRequest(), on: client, endpoint: endpoint)))
                    await client.close()
                } catch {
                    emitError("Failed to get the status of endpoint \(endpoint) (\(describe(error)))\n")
                }
            }
            emit(try context.printer.status(statuses))
        }
    }
}

struct AlarmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alarm", abstract: "Alarm related commands", subcommands: [List.self, Disarm.self])

    static func run(_ context: CommandContext, action: Etcdserverpb_AlarmRequest.AlarmAction) async throws {
        var request = Etcdserverpb_AlarmRequest()
        request.action = action
        if action == .deactivate {
            // Disarming deactivates every alarm the cluster reports.
            let list = try await wrapping { try await context.call(EtcdMethods.alarm, Etcdserverpb_AlarmRequest()) }
            var merged = Etcdserverpb_AlarmResponse()
            merged.header = list.header
            for alarm in list.alarms {
                request.memberID = alarm.memberID
                request.alarm = alarm.alarm
                let r = try await wrapping { try await context.call(EtcdMethods.alarm, request) }
                merged.header = r.header
                merged.alarms += r.alarms
            }
            emit(try context.printer.alarms(merged))
            return
        }
        let r = try await wrapping { try await context.call(EtcdMethods.alarm, request) }
        emit(try context.printer.alarms(r))
    }

    struct List: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Lists all alarms")
        @OptionGroup var global: GlobalOptions
        func execute(_ context: CommandContext) async throws { try await AlarmCommand.run(context, action: .get) }
    }

    struct Disarm: CtlCommand {
        static let configuration = CommandConfiguration(abstract: "Disarms all alarms")
        @OptionGroup var global: GlobalOptions
        func execute(_ context: CommandContext) async throws { try await AlarmCommand.run(context, action: .deactivate) }
    }
}

struct Defrag: CtlCommand {
    static let configuration = CommandConfiguration(abstract: "Defragments the storage of the etcd members with given endpoints")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "use all endpoints from the cluster member list") var cluster = false

    func execute(_ context: CommandContext) async throws {
        var failed = false
        for endpoint in try await targetEndpoints(context, cluster: self.cluster) {
            do {
                let client = try context.client(endpoints: [endpoint])
                _ = try await context.call(EtcdMethods.defragment, Etcdserverpb_DefragmentRequest(), on: client, endpoint: endpoint)
                await client.close()
                emit("Finished defragmenting etcd member[\(endpoint)]\n")
            } catch {
                failed = true
                emitError("Failed to defragment etcd member[\(endpoint)] (\(describe(error)))\n")
            }
        }
        if failed { Foundation.exit(CtlError.exitError) }
    }
}

struct MoveLeader: CtlCommand {
    static let configuration = CommandConfiguration(commandName: "move-leader", abstract: "Transfers leadership to another etcd cluster member.")
    @OptionGroup var global: GlobalOptions
    @Argument var args: [String] = []

    func execute(_ context: CommandContext) async throws {
        guard self.args.count == 1 else { throw CtlError.badArgs("move-leader command needs 1 argument") }
        guard let target = UInt64(self.args[0], radix: 16) else {
            throw CtlError.badArgs("strconv.ParseUint: parsing \(GoFormat.quote(self.args[0])): invalid syntax")
        }
        // The request must reach the leader: find it among the given endpoints.
        var leader: (endpoint: String, id: UInt64)?
        for endpoint in context.endpoints {
            let client = try context.client(endpoints: [endpoint])
            let s = try await wrapping { try await context.call(EtcdMethods.status, Etcdserverpb_StatusRequest(), on: client, endpoint: endpoint) }
            await client.close()
            if s.header.memberID == s.leader {
                leader = (endpoint, s.leader)
                break
            }
        }
        guard let leader else {
            throw CtlError(exitCode: CtlError.exitBadArgs, message: "no leader endpoint given at \(context.endpoints)")
        }
        var request = Etcdserverpb_MoveLeaderRequest()
        request.targetID = target
        let client = try context.client(endpoints: [leader.endpoint])
        _ = try await wrapping { try await context.call(EtcdMethods.moveLeader, request, on: client, endpoint: leader.endpoint) }
        emit("Leader \(String(leader.id, radix: 16)) transferred to \(String(target, radix: 16))\n")
    }
}
