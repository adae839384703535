// The streaming benchmarks: watch (watcher creation), watch-latency (put to event) and
// lease-keepalive (keep-alive round trips). They run as Swift tasks over the streaming API;
// their rates are far below the unary ones, so the per-message task hop does not matter.
import ArgumentParser
import CairnClient
import CairnGRPC
import CairnProto
import Foundation
import NIOCore
import SwiftProtobuf

func decode<M: SwiftProtobuf.Message>(_ type: M.Type, _ buffer: ByteBuffer) throws -> M {
    try M(serializedBytes: Array(buffer.readableBytesView))
}

func asStatus(_ error: any Error) -> GRPCStatus {
    (error as? GRPCStatus) ?? GRPCStatus(.unknown, "\(error)")
}

/// Watchers on one key, then `total` puts to it at `rate`; every event's latency is the time
/// from its put's send to its arrival (the put's value carries the send time).
struct WatchRun {
    let options: BenchOptions
    let streams: Int
    let watchersPerStream: Int
    let key = Data("cairn-bench-watch".utf8)

    /// Returns the watcher-creation recorder, the event-latency recorder, the put recorder,
    /// the events received and the wall time of the put phase. Each stream's task creates its
    /// watchers one at a time, then consumes events; the puts start when every watcher exists.
    func run(connections: Connections) async throws -> (create: Recorder, events: Recorder, puts: Recorder, received: Int, wall: UInt64) {
        let expected = self.options.total * self.watchersPerStream
        let ready = ReadyCount()
        let start = StartTime()
        let results = try await withThrowingTaskGroup(of: (create: Recorder, events: Recorder, received: Int, isPuts: Bool).self) { group in
            for s in 0..<self.streams {
                let connection = connections.all[s % connections.all.count]
                group.addTask {
                    let call = connection.openStream(path: EtcdMethods.watch.path, request: nil, bufferedMessagesMax: 1024)
                    defer { call.cancel() }
                    let iterator = call.responses.makeAsyncIterator()
                    var create = Recorder()
                    for _ in 0..<self.watchersPerStream {
                        var request = Etcdserverpb_WatchRequest()
                        var c = Etcdserverpb_WatchCreateRequest()
                        c.key = self.key
                        request.createRequest = c
                        let sent = NIODeadline.now()
                        try await call.send(serialize(request))
                        while true {
                            guard let next = try await iterator.next() else { throw BenchError("watch stream ended before created") }
                            if try decode(Etcdserverpb_WatchResponse.self, next).created { break }
                        }
                        create.record(nanoseconds: UInt64(max(0, (NIODeadline.now() - sent).nanoseconds)))
                    }
                    await ready.increment()
                    var events = Recorder()
                    var received = 0
                    while received < expected, let message = try await iterator.next() {
                        let response = try decode(Etcdserverpb_WatchResponse.self, message)
                        let now = NIODeadline.now().uptimeNanoseconds
                        for event in response.events {
                            var value = ByteBuffer(bytes: event.kv.value)
                            if let sent = value.readInteger(as: UInt64.self) { events.record(nanoseconds: now &- sent) }
                            received += 1
                        }
                    }
                    return (create, events, received, false)
                }
            }
            group.addTask {
                while await ready.value < self.streams { try await Task.sleep(for: .milliseconds(5)) }
                let begin = NIODeadline.now()
                await start.set(begin)
                var puts = Recorder()
                let client = connections.clients[0]
                let size = max(8, self.options.valSize)
                for n in 0..<self.options.total {
                    if self.options.rate > 0 {
                        let due = begin + .nanoseconds(Int64(Double(n) * 1e9 / self.options.rate))
                        let wait = due - .now()
                        if wait.nanoseconds > 0 { try await Task.sleep(for: .nanoseconds(wait.nanoseconds)) }
                    }
                    var put = Etcdserverpb_PutRequest()
                    put.key = self.key
                    let sent = NIODeadline.now()
                    var value = ByteBuffer()
                    value.writeInteger(sent.uptimeNanoseconds)
                    value.writeRepeatingByte(0x61, count: size - 8)
                    put.value = Data(value.readableBytesView)
                    do {
                        _ = try await client.call(EtcdMethods.put, put, timeout: self.options.requestTimeout)
                        puts.record(nanoseconds: UInt64(max(0, (NIODeadline.now() - sent).nanoseconds)))
                    } catch {
                        puts.recordError(asStatus(error))
                    }
                }
                return (Recorder(), puts, 0, true)
            }
            var create = Recorder()
            var events = Recorder()
            var received = 0
            var puts = Recorder()
            for try await r in group {
                if r.isPuts {
                    puts = r.events
                } else {
                    create.merge(r.create)
                    events.merge(r.events)
                    received += r.received
                }
            }
            return (create, events, puts, received)
        }
        let began = await start.value ?? .now()
        let wall = UInt64(max(0, (NIODeadline.now() - began).nanoseconds))
        return (results.0, results.1, results.2, results.3, wall)
    }
}

actor ReadyCount {
    private(set) var value = 0
    func increment() { self.value += 1 }
}

actor StartTime {
    private(set) var value: NIODeadline?
    func set(_ time: NIODeadline) { self.value = time }
}

/// The flags of the two watch benchmarks, and their common run.
struct WatchOptions: ParsableArguments {
    @Option(help: "Number of watch streams") var streams: Int = 10
    @Option(name: .customLong("watchers-per-stream"), help: "Watchers per stream") var watchersPerStream: Int = 10

    func validate() throws {
        guard self.streams >= 1, self.watchersPerStream >= 1 else {
            throw ValidationError("--streams and --watchers-per-stream must be at least 1")
        }
    }

    /// Runs the watchers and puts; `results` picks the recorders and extra figures to print.
    func run(
        _ name: String, options: BenchOptions,
        results: (_ run: (create: Recorder, events: Recorder, puts: Recorder, received: Int, wall: UInt64)) -> (
            [(String, Recorder)], [String: Double]
        )
    ) async throws {
        let connections = try await Connections.open(options)
        let cpuBefore = processCPUMicroseconds()
        let r = try await WatchRun(options: options, streams: self.streams, watchersPerStream: self.watchersPerStream)
            .run(connections: connections)
        let cpu = processCPUMicroseconds() - cpuBefore
        await connections.close()
        let (recorders, extra) = results(r)
        let summary = Summary(
            command: name, options: options, wallNanoseconds: r.wall, recorders: recorders, cpuMicroseconds: cpu,
            extra: extra)
        print(summary.printed(json: options.json))
    }
}

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Benchmark watch: watcher creation latency, then event delivery for --total puts")
    @OptionGroup var options: BenchOptions
    @OptionGroup var watch: WatchOptions

    func run() async throws {
        try await self.watch.run("watch", options: self.options) { r in
            (
                [("watch-create", r.create), ("put", r.puts)],
                ["events received": Double(r.received), "events per second": Double(r.received) / (Double(r.wall) / 1e9)]
            )
        }
    }
}

struct WatchLatencyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch-latency", abstract: "Benchmark watch latency: from a put's send to each watcher's event")
    @OptionGroup var options: BenchOptions
    @OptionGroup var watch: WatchOptions

    func run() async throws {
        try await self.watch.run("watch-latency", options: self.options) { r in
            ([("event", r.events), ("put", r.puts)], ["events received": Double(r.received)])
        }
    }
}

struct LeaseKeepAliveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease-keepalive", abstract: "Benchmark lease keepalive: one lease and stream per client")
    @OptionGroup var options: BenchOptions

    func run() async throws {
        let connections = try await Connections.open(self.options)
        let options = self.options
        let cpuBefore = processCPUMicroseconds()
        let start = NIODeadline.now()
        let recorder = try await withThrowingTaskGroup(of: Recorder.self) { group in
            for c in 0..<options.clients {
                let connection = connections.all[c % connections.all.count]
                let client = connections.clients[c % connections.clients.count]
                let count = share(options.total, parts: options.clients, index: c)
                group.addTask {
                    var recorder = Recorder()
                    var grant = Etcdserverpb_LeaseGrantRequest()
                    grant.ttl = 60
                    let lease = try await client.call(EtcdMethods.leaseGrant, grant, timeout: .seconds(10))
                    let call = connection.openStream(path: EtcdMethods.leaseKeepAlive.path, request: nil)
                    let iterator = call.responses.makeAsyncIterator()
                    var request = Etcdserverpb_LeaseKeepAliveRequest()
                    request.id = lease.id
                    let body = serialize(request)
                    for _ in 0..<count {
                        let sent = NIODeadline.now()
                        do {
                            try await call.send(body)
                            guard try await iterator.next() != nil else { throw GRPCStatus(.unavailable, "keepalive stream ended") }
                            recorder.record(nanoseconds: UInt64(max(0, (NIODeadline.now() - sent).nanoseconds)))
                        } catch {
                            recorder.recordError(asStatus(error))
                            break
                        }
                    }
                    call.cancel()
                    return recorder
                }
            }
            var merged = Recorder()
            for try await r in group { merged.merge(r) }
            return merged
        }
        let wall = UInt64(max(0, (NIODeadline.now() - start).nanoseconds))
        let cpu = processCPUMicroseconds() - cpuBefore
        await connections.close()
        let summary = Summary(
            command: "lease-keepalive", options: options, wallNanoseconds: wall, recorders: [("keepalive", recorder)],
            cpuMicroseconds: cpu)
        print(summary.printed(json: options.json))
    }
}

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Stream Maintenance.Snapshot from the first endpoint into a file; print its size and time")
    @OptionGroup var options: BenchOptions
    @Argument(help: "The file to write") var file: String

    func run() async throws {
        let connections = try await Connections.open(self.options)
        let start = NIODeadline.now()
        guard FileManager.default.createFile(atPath: self.file, contents: nil),
            let handle = FileHandle(forWritingAtPath: self.file)
        else { throw BenchError("cannot create \(self.file)") }
        var bytes = 0
        do {
            let call = try await connections.clients[0].serverStream(
                EtcdMethods.snapshot, Etcdserverpb_SnapshotRequest(), timeout: .seconds(600))
            for try await chunk in call.responses {
                bytes += chunk.blob.count
                try handle.write(contentsOf: chunk.blob)
            }
            try handle.close()
        } catch {
            try? handle.close()
            await connections.close()
            throw BenchError("snapshot from \(self.options.endpoints) failed: \(error)")
        }
        let seconds = Double((NIODeadline.now() - start).nanoseconds) / 1e9
        await connections.close()
        if self.options.json {
            print("{\"bytes\":\(bytes),\"seconds\":\(seconds)}")
        } else {
            print("snapshot: \(bytes) bytes in \(String(format: "%.3f", seconds)) s to \(self.file)")
        }
    }
}
