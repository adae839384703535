// cairn-bench: etcd's benchmark tool for any etcd v3 endpoint, etcd itself or cairn.
//
//   cairn-bench put --endpoints 127.0.0.1:2379 --conns 10 --clients 100 --total 100000 \
//       --key-size 8 --val-size 256 --key-space-size 100000 --sequential-keys
//   cairn-bench range foo --consistency s --conns 10 --clients 100 --total 100000
//
// Results (latency in milliseconds, HDR percentiles, errors by gRPC code and the client's own
// CPU per request) go to stdout, as JSON with --json; progress goes to stderr.
import ArgumentParser
import CairnClient
import CairnGRPC
import CairnProto
import Foundation
import NIOCore
import SwiftProtobuf

@main
struct CairnBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-bench",
        abstract: "A low-level benchmark tool for etcd3-compatible servers (etcd or cairn).",
        subcommands: [
            PutCommand.self, RangeCommand.self, TxnPutCommand.self, TxnMixedCommand.self, WatchCommand.self,
            WatchLatencyCommand.self, LeaseKeepAliveCommand.self, SnapshotCommand.self,
        ])
}

/// Keys of `keySize` bytes: the key's index, big-endian, in the last (at most 8) bytes, zeros
/// before it. Index `n` of a run is `n mod keySpaceSize` with --sequential-keys, otherwise a
/// pseudo-random function of `n` (the same on every run and every thread).
struct KeyMaker: Sendable {
    let keySize: Int
    let keySpaceSize: Int
    let sequential: Bool

    init(_ options: BenchOptions) {
        self.keySize = options.keySize
        self.keySpaceSize = options.keySpaceSize
        self.sequential = options.sequentialKeys
    }

    func index(_ n: Int) -> Int {
        self.sequential ? n % self.keySpaceSize : Int(mix(UInt64(n)) % UInt64(self.keySpaceSize))
    }

    func write(index: Int, into buffer: inout ByteBuffer) {
        let tail = min(8, self.keySize)
        buffer.writeRepeatingByte(0, count: self.keySize - tail)
        var be = UInt64(index).bigEndian
        _ = withUnsafeBytes(of: &be) { buffer.writeBytes($0.suffix(tail)) }
    }

    func key(_ n: Int) -> Data { self.key(forIndex: self.index(n)) }

    func key(forIndex index: Int) -> Data {
        var b = ByteBuffer()
        self.write(index: index, into: &b)
        return Data(b.readableBytesView)
    }
}

/// SplitMix64's finalizer: a well-spread 64-bit hash of `x`.
func mix(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// `count` bytes of SplitMix64's stream from `seed << 32` (a different value for every seed).
func writePseudoRandom(count: Int, seed: UInt64, into buffer: inout ByteBuffer) {
    var i = seed << 32
    var left = count
    while left >= 8 {
        buffer.writeInteger(mix(i))
        i &+= 1
        left -= 8
    }
    if left > 0 {
        var last = mix(i)
        _ = withUnsafeBytes(of: &last) { buffer.writeBytes($0.prefix(left)) }
    }
}

/// `count` random bytes (a value written by every put, as etcd's tool does).
func randomBytes(_ count: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
}

extension ByteBuffer {
    mutating func writeVarint(_ value: Int) {
        var v = UInt64(value)
        while v >= 0x80 {
            self.writeInteger(UInt8(v & 0x7F | 0x80))
            v >>= 7
        }
        self.writeInteger(UInt8(v))
    }
}

func serialize(_ message: some SwiftProtobuf.Message) -> ByteBuffer {
    // Messages built here from valid fields always serialize.
    ByteBuffer(bytes: (try? message.serializedBytes() as [UInt8]) ?? [])
}

/// Connects, runs the unary load, prints the summary and closes.
func runUnaryCommand(
    _ name: String, options: BenchOptions, kinds: [String], factory: @escaping @Sendable RequestFactory
) async throws {
    let connections = try await Connections.open(options)
    let cpuBefore = processCPUMicroseconds()
    let (recorders, wall) = try await runUnaryLoad(
        connections: connections, options: options, kinds: kinds.count, factory: factory)
    let cpu = processCPUMicroseconds() - cpuBefore
    await connections.close()
    let summary = Summary(
        command: name, options: options, wallNanoseconds: wall, recorders: Array(zip(kinds, recorders)),
        cpuMicroseconds: cpu)
    print(summary.printed(json: options.json))
}

struct PutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put", abstract: "Benchmark put")
    @OptionGroup var options: BenchOptions
    @Flag(
        name: .customLong("random-values"),
        help: "A different pseudo-random value for every put (etcd's tool puts one value everywhere, which compresses)")
    var randomValues = false

    func run() async throws {
        let keys = KeyMaker(self.options)
        let value = randomBytes(self.options.valSize)
        let valSize = self.options.valSize
        let randomValues = self.randomValues
        try await runUnaryCommand("put", options: self.options, kinds: ["put"]) { n in
            // etcdserverpb.PutRequest: key = 1, value = 2 (length-delimited).
            var body = ByteBuffer()
            body.reserveCapacity(keys.keySize + valSize + 12)
            body.writeInteger(UInt8(0x0A))
            body.writeVarint(keys.keySize)
            keys.write(index: keys.index(n), into: &body)
            if valSize > 0 {
                body.writeInteger(UInt8(0x12))
                body.writeVarint(valSize)
                if randomValues {
                    writePseudoRandom(count: valSize, seed: UInt64(n), into: &body)
                } else {
                    body.writeBytes(value)
                }
            }
            return BenchRequest(kind: 0, path: EtcdMethods.put.path, body: body)
        }
    }
}

struct RangeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "range", abstract: "Benchmark range (the same key, or [key, end) with an end)")
    @OptionGroup var options: BenchOptions
    @Argument(help: "The key to read") var key: String
    @Argument(help: "The end of the range (exclusive)") var end: String?

    func run() async throws {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(self.key.utf8)
        if let end = self.end { request.rangeEnd = Data(end.utf8) }
        request.serializable = self.options.serializable
        let body = serialize(request)
        try await runUnaryCommand("range", options: self.options, kinds: ["range"]) { _ in
            BenchRequest(kind: 0, path: EtcdMethods.range.path, body: body)
        }
    }
}

/// A Txn whose success branch puts `count` distinct keys: key `index(n * count)` and the ones
/// after it, wrapping in the key space (etcd refuses a txn that puts one key twice).
func txnPutBody(_ n: Int, count: Int, keys: KeyMaker, value: Data) -> ByteBuffer {
    var txn = Etcdserverpb_TxnRequest()
    let first = keys.index(n * count)
    for i in 0..<count {
        var put = Etcdserverpb_PutRequest()
        put.key = keys.key(forIndex: (first + i) % keys.keySpaceSize)
        put.value = value
        var op = Etcdserverpb_RequestOp()
        op.requestPut = put
        txn.success.append(op)
    }
    return serialize(txn)
}

struct TxnPutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "txn-put", abstract: "Benchmark put through txn")
    @OptionGroup var options: BenchOptions
    @Option(name: .customLong("txn-ops"), help: "Number of puts per txn") var txnOps: Int = 1

    func validate() throws {
        guard self.txnOps >= 1 else { throw ValidationError("--txn-ops must be at least 1, got \(self.txnOps)") }
        guard self.txnOps <= self.options.keySpaceSize else {
            throw ValidationError("--txn-ops (\(self.txnOps)) must not exceed --key-space-size (\(self.options.keySpaceSize))")
        }
    }

    func run() async throws {
        let keys = KeyMaker(self.options)
        let value = Data(randomBytes(self.options.valSize))
        let ops = self.txnOps
        try await runUnaryCommand("txn-put", options: self.options, kinds: ["txn-put"]) { n in
            BenchRequest(kind: 0, path: EtcdMethods.txn.path, body: txnPutBody(n, count: ops, keys: keys, value: value))
        }
    }
}

struct TxnMixedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txn-mixed", abstract: "Benchmark a mix of reads (range) and writes (txn with a put)")
    @OptionGroup var options: BenchOptions
    @Option(name: .customLong("rw-ratio"), help: "Read/write ops ratio") var rwRatio: Double = 1

    func validate() throws {
        guard self.rwRatio >= 0 else { throw ValidationError("--rw-ratio must not be negative, got \(self.rwRatio)") }
    }

    func run() async throws {
        let keys = KeyMaker(self.options)
        let value = Data(randomBytes(self.options.valSize))
        let readFraction = self.rwRatio / (self.rwRatio + 1)
        let serializable = self.options.serializable
        try await runUnaryCommand("txn-mixed", options: self.options, kinds: ["read", "write"]) { n in
            let draw = Double(mix(UInt64(n) ^ 0x5EED) >> 11) / Double(1 << 53)
            if draw < readFraction {
                var range = Etcdserverpb_RangeRequest()
                range.key = keys.key(n)
                range.serializable = serializable
                return BenchRequest(kind: 0, path: EtcdMethods.range.path, body: serialize(range))
            }
            return BenchRequest(kind: 1, path: EtcdMethods.txn.path, body: txnPutBody(n, count: 1, keys: keys, value: value))
        }
    }
}
