/// A listen or advertise URL: `http://host:port` (https and unix are not supported yet).
public struct ServerURL: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The URL as given (trimmed), e.g. `http://127.0.0.1:2379`.
    public let string: String
    /// The scheme; only `http` is accepted so far.
    public let scheme: String
    /// The host without IPv6 brackets, e.g. `127.0.0.1`, `localhost`, `::1`.
    public let host: String
    /// The TCP port.
    public let port: Int

    static let defaultClient = ServerURL(uncheckedScheme: "http", host: "localhost", port: 2379)
    static let defaultPeer = ServerURL(uncheckedScheme: "http", host: "localhost", port: 2380)

    private init(uncheckedScheme scheme: String, host: String, port: Int) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.string = "\(scheme)://\(host):\(port)"
    }

    public var description: String { self.string }

    public static func < (lhs: ServerURL, rhs: ServerURL) -> Bool { lhs.string < rhs.string }

    /// True when `host` is an IPv4 or IPv6 literal (etcd binds only to these or `localhost`).
    public var hostIsIPAddress: Bool { Self.isIPv4(self.host) || Self.isIPv6(self.host) }

    /// Parses one URL as etcd does, with its messages; https and unix give a "not supported yet" error.
    public init(parsing text: String) throws(ConfigurationError) {
        let text = text.trimmingWhitespace()
        guard let schemeEnd = text.firstRange(of: "://") else {
            throw ConfigurationError("URL scheme must be http, https, unix, or unixs: \(text)")
        }
        let scheme = String(text[..<schemeEnd.lowerBound]).lowercased()
        var rest = text[schemeEnd.upperBound...]
        guard ["http", "https", "unix", "unixs"].contains(scheme) else {
            throw ConfigurationError("URL scheme must be http, https, unix, or unixs: \(text)")
        }
        // Authority ends at the path, query or fragment; user info is dropped.
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        rest = rest[authorityEnd...]
        if rest.first == "/" {
            throw ConfigurationError("URL must not contain a path: \(text)")
        }
        let hostPort = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
        let (host, portText) = try Self.splitHostPort(hostPort, url: text)
        guard scheme == "http" else {
            let what = scheme.hasPrefix("unix") ? "unix socket URLs" : "TLS (https) URLs"
            throw ConfigurationError("\(what) are not supported yet: \(text)")
        }
        guard let port = Int(portText), (0...65535).contains(port), !portText.contains("+") else {
            throw ConfigurationError("parse \"\(text)\": invalid port \":\(portText)\" after host")
        }
        self.scheme = scheme
        self.host = host
        self.port = port
        self.string = text
    }

    /// Parses etcd's comma-separated URL list (sorted as etcd sorts it; empty text is no URLs).
    public static func parseList(_ text: String) throws(ConfigurationError) -> [ServerURL] {
        if text.isEmpty { return [] }
        var urls: [ServerURL] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            urls.append(try ServerURL(parsing: String(part)))
        }
        return urls.sorted()
    }

    private static func splitHostPort(_ hostPort: Substring, url: String) throws(ConfigurationError) -> (String, String) {
        let notHostPort = ConfigurationError("URL address does not have the form \"host:port\": \(url)")
        if hostPort.first == "[" {
            guard let close = hostPort.firstIndex(of: "]") else { throw notHostPort }
            let afterClose = hostPort[hostPort.index(after: close)...]
            guard afterClose.first == ":" else { throw notHostPort }
            return (String(hostPort[hostPort.index(after: hostPort.startIndex)..<close]), String(afterClose.dropFirst()))
        }
        guard let colon = hostPort.lastIndex(of: ":"), !hostPort[..<colon].contains(":") else { throw notHostPort }
        return (String(hostPort[..<colon]), String(hostPort[hostPort.index(after: colon)...]))
    }

    static func isIPv4(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCIIDigit) && Int(part)! <= 255
        }
    }

    static func isIPv6(_ host: String) -> Bool {
        guard host.contains(":") else { return false }
        let groups = host.split(separator: ":", omittingEmptySubsequences: false)
        guard groups.count >= 3, groups.count <= 9 else { return false }
        let hasDoubleColon = host.contains("::")
        if !hasDoubleColon && groups.count != 8 && !(groups.count == 7 && isIPv4(String(groups.last!))) { return false }
        return groups.enumerated().allSatisfy { index, group in
            if group.isEmpty { return hasDoubleColon }
            if index == groups.count - 1 && group.contains(".") { return isIPv4(String(group)) }
            return group.count <= 4 && group.allSatisfy(\.isHexDigit)
        }
    }
}

extension Character {
    var isASCIIDigit: Bool { self >= "0" && self <= "9" }
}

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs and newlines (Go's strings.TrimSpace, ASCII).
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = self.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = self.lastIndex(where: { !isSpace($0) })!
        return String(self[first...last])
    }
}
