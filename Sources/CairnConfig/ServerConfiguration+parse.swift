import Foundation

extension ServerConfiguration {
    /// Builds the configuration as etcd 3.4 does.
    ///
    /// 1. Flags are read with Go's syntax (`-flag`, `--flag`, `value` as the next argument or after
    ///    `=`, `--` ends the flags; a flag given twice keeps the last value). A stray argument is refused.
    /// 2. `--version` and `-h`/`--help` win over everything else.
    /// 3. With `--config-file` (or `CAIRN_CONFIG_FILE`), the YAML file alone is read: other flags and
    ///    environment variables are ignored.
    /// 4. Otherwise each flag not on the command line is taken from its `CAIRN_*` variable; a flag set
    ///    both ways is an error, and unknown `CAIRN_*` variables give a warning.
    /// 5. The result is checked (``validate()``) and the data dir and initial cluster are defaulted.
    ///
    /// - Parameters:
    ///   - arguments: the command line without the program name.
    ///   - environment: the process environment.
    ///   - readFile: reads the config file (tests pass their own).
    public static func parse(
        arguments: [String], environment: [String: String],
        readFile: (String) throws -> String = { try String(contentsOfFile: $0, encoding: .utf8) }
    ) throws(ConfigurationError) -> ServerCommand {
        let flags = try CommandLineFlags.parse(arguments)
        if flags.values[.help] != nil { return .printHelp }
        if let version = flags.values[.version], try GoNumber.parseBool(version) { return .printVersion }

        var warnings: [String] = []
        var configuration = ServerConfiguration()
        let configFile = flags.values[.configFile] ?? environment[Option.configFile.environmentVariable] ?? ""
        if !configFile.isEmpty {
            let text: String
            do {
                text = try readFile(configFile)
            } catch {
                throw ConfigurationError("cannot read config file \"\(configFile)\": \(Self.describe(error))")
            }
            configuration = try ConfigFile.parse(text, path: configFile, warnings: &warnings)
            configuration.configFile = configFile
        } else {
            var explicit = flags.values
            try Self.applyEnvironment(environment, to: &explicit, warnings: &warnings)
            for option in Option.allCases {
                guard let text = explicit[option] else { continue }
                try option.apply(text, to: &configuration)
            }
            if explicit[.listenClientURLs] != nil && explicit[.advertiseClientURLs] == nil {
                throw ConfigurationError(
                    "--advertise-client-urls is required when --listen-client-urls is set explicitly "
                        + "(when listening on specific addresses, the server must advertise URLs clients can reach)")
            }
        }
        configuration.fillDefaults(warnings: &warnings)
        try configuration.validate()
        return .serve(configuration, warnings: warnings)
    }

    /// Fills in what etcd derives: the data dir from the name, and a lone member's initial cluster.
    mutating func fillDefaults(warnings: inout [String]) {
        if self.dataDirectory.isEmpty {
            self.dataDirectory = Self.defaultDataDirectory(name: self.name)
            warnings.append("no data-dir provided, using default data-dir ./\(self.dataDirectory)")
        }
        if self.name != "default" && self.initialCluster == ServerConfiguration().initialCluster {
            self.initialCluster = Self.initialCluster(name: self.name, peerURLs: self.initialAdvertisePeerURLs)
        }
    }

    /// Takes each option not given as a flag from its `CAIRN_*` variable, as etcd does with `ETCD_*`.
    private static func applyEnvironment(
        _ environment: [String: String], to values: inout [Option: String], warnings: inout [String]
    ) throws(ConfigurationError) {
        let flagged = values
        var used: Set<String> = []
        for option in Option.allCases.sorted(by: { $0.rawValue < $1.rawValue }) {
            let variable = option.environmentVariable
            guard flagged[option] == nil, option != .version, option != .help,
                let text = environment[variable], !text.isEmpty
            else { continue }
            var scratch = ServerConfiguration()
            do {
                try option.apply(text, to: &scratch)
            } catch {
                throw ConfigurationError("invalid value \"\(text)\" for \(variable): \(error.message)")
            }
            values[option] = text
            used.insert(variable)
        }
        let flaggedVariables = Set(flagged.keys.map(\.environmentVariable))
        for (variable, value) in environment.sorted(by: { $0.key < $1.key })
        where variable.hasPrefix("CAIRN_") && !used.contains(variable) {
            if flaggedVariables.contains(variable) {
                throw ConfigurationError(
                    "conflicting environment variable \"\(variable)\" is shadowed by corresponding command-line flag "
                        + "(either unset environment variable or disable flag)")
            }
            warnings.append("unrecognized environment variable \(variable)=\(value)")
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? CocoaError, let path = error.filePath, error.code == .fileReadNoSuchFile {
            return "open \(path): no such file or directory"
        }
        return "\(error)"
    }
}

/// The flags on a command line, read with Go's `flag` package rules.
struct CommandLineFlags {
    var values: [Option: String] = [:]

    static func parse(_ arguments: [String]) throws(ConfigurationError) -> CommandLineFlags {
        var flags = CommandLineFlags()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            guard argument.count >= 2, argument.hasPrefix("-") else { break }
            if argument == "--" {
                index += 1
                break
            }
            index += 1
            let name = argument.hasPrefix("--") ? argument.dropFirst(2) : argument.dropFirst()
            if name.isEmpty || name.hasPrefix("-") || name.hasPrefix("=") {
                throw .usage("bad flag syntax: \(argument)")
            }
            let flagName: Substring
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                flagName = name[..<equals]
                value = String(name[name.index(after: equals)...])
            } else {
                flagName = name
            }
            if flagName == "h" || flagName == "help" {
                flags.values[.help] = "true"
                return flags
            }
            guard let option = Option(rawValue: String(flagName)) else {
                throw .usage("flag provided but not defined: -\(flagName)")
            }
            if option.kind == .boolean {
                let text = value ?? "true"
                do {
                    _ = try GoNumber.parseBool(text)
                } catch {
                    throw .usage("invalid boolean value \"\(text)\" for -\(flagName): parse error")
                }
                flags.values[option] = text
                continue
            }
            if value == nil, index < arguments.count {
                value = arguments[index]
                index += 1
            }
            guard let text = value else { throw .usage("flag needs an argument: -\(flagName)") }
            var scratch = ServerConfiguration()
            do {
                try option.apply(text, to: &scratch)
            } catch {
                throw .usage("invalid value \"\(text)\" for flag -\(flagName): \(error.message)")
            }
            flags.values[option] = text
        }
        if index < arguments.count {
            throw ConfigurationError("'\(arguments[index])' is not a valid flag")
        }
        return flags
    }
}
