#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOHTTP1

/// One HTTP/1.x response from an ``HTTPEndpoints`` responder.
public struct HTTPEndpointResponse: Sendable {
    public var status: HTTPResponseStatus
    /// Headers besides `Date`, `Content-Length` and `Connection`, which the transport adds.
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// What the HTTP/1.1 side of a listener answers: one async function from request head to response.
///
/// The transport calls it off the event loop for each request (one at a time per connection),
/// ignores request bodies, and writes the answer. ``etcd(health:version:metrics:servesVersion:addsCORSHeaders:)``
/// builds etcd 3.4's `/health`, `/version` and `/metrics`.
public struct HTTPEndpoints: Sendable {
    public typealias Responder = @Sendable (HTTPRequestHead) async -> HTTPEndpointResponse

    public let respond: Responder

    public init(_ respond: @escaping Responder) {
        self.respond = respond
    }

    /// etcd's two version strings for `/version`.
    public struct Versions: Sendable {
        public var server: String
        public var cluster: String

        /// `cluster` is etcd's `not_decided` until the cluster version is known.
        public init(server: String, cluster: String = "not_decided") {
            self.server = server
            self.cluster = cluster
        }
    }

    /// etcd 3.4's endpoints, byte for byte (checked against etcd 3.4.23):
    ///
    /// - `GET /health`: 200 `{"health":"true"}`, or 503 `{"health":"false"}` + newline when `health()` is false;
    /// - `GET /version`: 200 `{"etcdserver":"…","etcdcluster":"…"}` (only when `servesVersion`, as on the client port);
    /// - `/metrics` (any method): 200, the Prometheus text `metrics()` returns;
    /// - other methods on `/health` and `/version`: 405 with `Allow: GET`; other paths: 404 `404 page not found`.
    ///
    /// The client port adds etcd's CORS headers to every answer (`addsCORSHeaders`); the metrics port does not.
    public static func etcd(
        health: @escaping @Sendable () async -> Bool,
        version: @escaping @Sendable () async -> Versions,
        metrics: @escaping @Sendable () async -> [UInt8],
        servesVersion: Bool = true,
        addsCORSHeaders: Bool = true
    ) -> HTTPEndpoints {
        HTTPEndpoints { head in
            let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            var response: HTTPEndpointResponse
            switch path == "/version" && !servesVersion ? "" : path {
            case "/health" where head.method == .GET:
                response = await health() ? .text(.ok, #"{"health":"true"}"#) : .plainError(.serviceUnavailable, #"{"health":"false"}"#)
            case "/version" where head.method == .GET:
                let versions = await version()
                response = .text(
                    .ok, #"{"etcdserver":"\#(versions.server)","etcdcluster":"\#(versions.cluster)"}"#,
                    contentType: "application/json")
            case "/health", "/version":
                response = .plainError(.methodNotAllowed, "Method Not Allowed")
                response.headers.add(name: "Allow", value: "GET")
            case "/metrics":
                var body = ByteBuffer()
                body.writeBytes(await metrics())
                response = HTTPEndpointResponse(
                    status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"], body: body)
            default:
                response = .plainError(.notFound, "404 page not found")
            }
            if addsCORSHeaders {
                response.headers.add(contentsOf: Self.corsHeaders)
            }
            return response
        }
    }

    /// etcd's CORS headers on the client port (its default `--cors '*'`).
    static let corsHeaders: HTTPHeaders = [
        "Access-Control-Allow-Headers": "accept, content-type, authorization",
        "Access-Control-Allow-Methods": "POST, GET, OPTIONS, PUT, DELETE",
        "Access-Control-Allow-Origin": "*",
    ]
}

extension HTTPEndpointResponse {
    /// A text answer with a content type (etcd's `text/plain; charset=utf-8` unless told).
    public static func text(
        _ status: HTTPResponseStatus, _ text: String, contentType: String = "text/plain; charset=utf-8"
    ) -> HTTPEndpointResponse {
        HTTPEndpointResponse(status: status, headers: ["Content-Type": contentType], body: ByteBuffer(string: text))
    }

    /// An error answer as Go's `http.Error` writes it: nosniff, and a newline after the text.
    public static func plainError(_ status: HTTPResponseStatus, _ text: String) -> HTTPEndpointResponse {
        var response = Self.text(status, text + "\n")
        response.headers.add(name: "X-Content-Type-Options", value: "nosniff")
        return response
    }
}

/// The `Date` header value (RFC 7231 IMF-fixdate, GMT) for the current second.
func httpDate() -> String {
    var now = time(nil)
    var parts = tm()
    gmtime_r(&now, &parts)
    let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
}
