// Latency recording, the client's own CPU, and the results as text or JSON.
import CairnGRPC
import Foundation
import Histogram

/// Latencies and errors of one kind of request, recorded on one event loop and merged at the end.
struct Recorder: Sendable {
    /// Nanoseconds; 3 significant digits up to 10 minutes.
    var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000_000, numberOfSignificantValueDigits: .three)
    var sumNanoseconds: Double = 0
    var sumSquaresNanoseconds: Double = 0
    var minNanoseconds: UInt64 = .max
    var maxNanoseconds: UInt64 = 0
    var succeeded = 0
    /// Failed requests by gRPC status code, with the first message seen for each code.
    var errors: [Int: (count: Int, firstMessage: String)] = [:]

    mutating func record(nanoseconds: UInt64) {
        let v = Swift.min(Swift.max(nanoseconds, 1), 600_000_000_000)
        _ = self.histogram.record(v)
        let d = Double(v)
        self.sumNanoseconds += d
        self.sumSquaresNanoseconds += d * d
        if v < self.minNanoseconds { self.minNanoseconds = v }
        if v > self.maxNanoseconds { self.maxNanoseconds = v }
        self.succeeded += 1
    }

    mutating func recordError(_ status: GRPCStatus) {
        let code = status.code.rawValue
        if let e = self.errors[code] {
            self.errors[code] = (e.count + 1, e.firstMessage)
        } else {
            self.errors[code] = (1, status.message)
        }
    }

    mutating func merge(_ other: Recorder) {
        self.histogram.add(other.histogram)
        self.sumNanoseconds += other.sumNanoseconds
        self.sumSquaresNanoseconds += other.sumSquaresNanoseconds
        self.minNanoseconds = Swift.min(self.minNanoseconds, other.minNanoseconds)
        self.maxNanoseconds = Swift.max(self.maxNanoseconds, other.maxNanoseconds)
        self.succeeded += other.succeeded
        for (code, e) in other.errors {
            if let mine = self.errors[code] {
                self.errors[code] = (mine.count + e.count, mine.firstMessage)
            } else {
                self.errors[code] = e
            }
        }
    }

    var failed: Int { self.errors.values.reduce(0) { $0 + $1.count } }
}

/// User + system CPU time of this process, in microseconds (getrusage(RUSAGE_SELF)).
func processCPUMicroseconds() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_utime.tv_sec * 1_000_000 + Int(usage.ru_utime.tv_usec)
        + usage.ru_stime.tv_sec * 1_000_000 + Int(usage.ru_stime.tv_usec)
}

/// gRPC's names for its status codes, as grpc-go prints them.
func grpcCodeName(_ code: Int) -> String {
    let names = [
        "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
        "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
        "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    ]
    return code >= 0 && code < names.count ? names[code] : "Code(\(code))"
}

/// One benchmark's results, in the units its field names say; encoded as the `--json` output.
struct Summary: Codable, Sendable {
    struct Latency: Codable, Sendable {
        var name: String
        var requests: Int
        var failed: Int
        var requestsPerSecond: Double
        var averageMicroseconds: Double
        var stddevMicroseconds: Double
        var minMicroseconds: Double
        var maxMicroseconds: Double
        var p50Microseconds: Double
        var p90Microseconds: Double
        var p99Microseconds: Double
        var p999Microseconds: Double
        /// gRPC code name -> count.
        var errors: [String: Int]
        var errorMessages: [String: String]
    }

    var command: String
    var endpoints: [String]
    var connections: Int
    var clients: Int
    var totalSeconds: Double
    var results: [Latency]
    var clientCPUSeconds: Double
    var clientCPUMicrosecondsPerRequest: Double
    /// Free-form figures a command adds (for example watch events received).
    var extra: [String: Double]

    init(
        command: String, options: BenchOptions, wallNanoseconds: UInt64, recorders: [(String, Recorder)],
        cpuMicroseconds: Int, extra: [String: Double] = [:]
    ) {
        self.command = command
        self.endpoints = options.endpointList.map(\.description)
        self.connections = options.conns
        self.clients = options.clients
        self.totalSeconds = Double(wallNanoseconds) / 1e9
        let seconds = Swift.max(self.totalSeconds, 1e-9)
        self.results = recorders.map { name, r in
            let n = Double(Swift.max(r.succeeded, 1))
            let mean = r.sumNanoseconds / n
            let variance = Swift.max(0, r.sumSquaresNanoseconds / n - mean * mean)
            func p(_ q: Double) -> Double { r.succeeded == 0 ? 0 : Double(r.histogram.valueAtPercentile(q)) / 1000 }
            var errors: [String: Int] = [:]
            var messages: [String: String] = [:]
            for (code, e) in r.errors {
                errors[grpcCodeName(code)] = e.count
                messages[grpcCodeName(code)] = e.firstMessage
            }
            return Latency(
                name: name, requests: r.succeeded + r.failed, failed: r.failed,
                requestsPerSecond: Double(r.succeeded) / seconds,
                averageMicroseconds: r.succeeded == 0 ? 0 : mean / 1000,
                stddevMicroseconds: variance.squareRoot() / 1000,
                minMicroseconds: r.succeeded == 0 ? 0 : Double(r.minNanoseconds) / 1000,
                maxMicroseconds: Double(r.maxNanoseconds) / 1000,
                p50Microseconds: p(50), p90Microseconds: p(90), p99Microseconds: p(99), p999Microseconds: p(99.9),
                errors: errors, errorMessages: messages)
        }
        self.clientCPUSeconds = Double(cpuMicroseconds) / 1e6
        let requests = self.results.reduce(0) { $0 + $1.requests }
        self.clientCPUMicrosecondsPerRequest = requests == 0 ? 0 : Double(cpuMicroseconds) / Double(requests)
        self.extra = extra
    }

    func printed(json: Bool) -> String {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
        }
        func ms(_ us: Double) -> String { String(format: "%.4f", us / 1000) }
        var out = "\(self.command): \(self.clients) clients over \(self.connections) connections to "
        out += self.endpoints.joined(separator: ",") + "\n"
        out += String(format: "  Total:          %.4f secs.\n", self.totalSeconds)
        for r in self.results {
            if self.results.count > 1 { out += "  [\(r.name)]\n" }
            out += "  Requests:       \(r.requests) (\(r.failed) failed)\n"
            out += String(format: "  Requests/sec:   %.1f\n", r.requestsPerSecond)
            out += "  Latency (ms):   average \(ms(r.averageMicroseconds)), stddev \(ms(r.stddevMicroseconds)), "
            out += "min \(ms(r.minMicroseconds)), max \(ms(r.maxMicroseconds))\n"
            out += "  Percentiles:    p50 \(ms(r.p50Microseconds)), p90 \(ms(r.p90Microseconds)), "
            out += "p99 \(ms(r.p99Microseconds)), p99.9 \(ms(r.p999Microseconds)) ms\n"
            if r.errors.isEmpty {
                out += "  Errors:         none\n"
            } else {
                for (name, count) in r.errors.sorted(by: { $0.key < $1.key }) {
                    out += "  Errors:         \(name): \(count) (first: \(r.errorMessages[name] ?? ""))\n"
                }
            }
        }
        out += String(
            format: "  Client CPU:     %.2f s user+sys, %.1f µs per request\n", self.clientCPUSeconds,
            self.clientCPUMicrosecondsPerRequest)
        for (k, v) in self.extra.sorted(by: { $0.key < $1.key }) { out += "  \(k): \(v)\n" }
        return out
    }
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise.
struct Progress {
    let total: Int
    let isTerminal = isatty(2) != 0
    var lastTenth = -1

    mutating func show(done: Int) {
        guard self.total > 0 else { return }
        let fraction = Double(Swift.min(done, self.total)) / Double(self.total)
        if self.isTerminal {
            let width = 40
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
            FileHandle.standardError.write(Data("\r[\(bar)] \(Int(fraction * 100))% \(done)/\(self.total)".utf8))
        } else {
            let tenth = Int(fraction * 10)
            if tenth != self.lastTenth {
                self.lastTenth = tenth
                FileHandle.standardError.write(Data("progress: \(tenth * 10)% (\(done)/\(self.total))\n".utf8))
            }
        }
    }

    func finish() {
        if self.isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
