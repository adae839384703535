/// A configuration the server refuses: unknown flag, bad value, conflicting or inconsistent options.
///
/// `message` follows etcd 3.4's wording where etcd has one; the executable prints it to stderr
/// and exits with `exitCode`.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, for stderr.
    public var message: String
    /// True for command-line syntax errors (etcd prints its usage and exits 2 for these).
    public var isUsageError: Bool

    public init(_ message: String, isUsageError: Bool = false) {
        self.message = message
        self.isUsageError = isUsageError
    }

    /// etcd's exit status: 2 for a flag it cannot parse, 1 for a configuration it refuses.
    public var exitCode: Int32 { self.isUsageError ? 2 : 1 }

    public var description: String { self.message }

    static func usage(_ message: String) -> ConfigurationError {
        ConfigurationError(message, isUsageError: true)
    }
}
