import Yams

/// etcd 3.4's `--config-file`: a flat YAML mapping whose keys are the flag names.
///
/// As in etcd: values are typed (a number where etcd expects a string, or a string where it
/// expects a number, is an error), URL lists are comma-separated strings, null or empty URL lists
/// keep the default, keys match case-insensitively when no exact match exists, a repeated key keeps
/// its last value, and keys that are not options are ignored (Cairn adds a warning for them).
enum ConfigFile {
    /// Options a config file may set (etcd's file has no `config-file`, `version` or `help`).
    static let keys: [Option] = Option.allCases.filter { ![.configFile, .version, .help].contains($0) }

    static func parse(_ text: String, path: String, warnings: inout [String]) throws(ConfigurationError) -> ServerConfiguration {
        var configuration = ServerConfiguration()
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError("error converting YAML to JSON: \(Self.describe(error))")
        }
        guard let root else { return configuration }
        guard case .mapping(let mapping) = root else {
            throw ConfigurationError("config file \(path): cannot unmarshal \(Self.jsonType(of: root)) into the configuration (expected a mapping)")
        }
        for (keyNode, valueNode) in mapping {
            let key = keyNode.scalar?.string ?? "\(keyNode)"
            guard let option = Self.keys.first(where: { $0.rawValue == key })
                ?? Self.keys.first(where: { $0.rawValue.lowercased() == key.lowercased() })
            else {
                warnings.append("config file \(path): ignoring unknown key \"\(key)\"")
                continue
            }
            guard let text = try Self.scalarText(valueNode, for: option, path: path) else { continue }
            try Self.apply(option, text, to: &configuration)
        }
        return configuration
    }

    /// The value as text when its YAML type fits the option; nil for null (the default stays).
    private static func scalarText(_ node: Node, for option: Option, path: String) throws(ConfigurationError) -> String? {
        let type = Self.jsonType(of: node)
        if type == "null" { return nil }
        let mismatch = ConfigurationError(
            "config file \(path): cannot unmarshal \(type) into field \(option.rawValue) of type \(option.goTypeName)")
        guard let scalar = node.scalar else { throw mismatch }
        switch option.kind {
        case .string, .boolean:
            guard type == "string" else { throw mismatch }
            return scalar.string
        case .unsigned, .signed:
            let text = scalar.string.hasPrefix("+") ? String(scalar.string.dropFirst()) : scalar.string
            let numberError = ConfigurationError(
                "config file \(path): cannot unmarshal number \(scalar.string) into field \(option.rawValue) "
                    + "of type \(option.goTypeName)")
            guard type == "number" else { throw mismatch }
            guard node.tag.description == Tag.Name.int.rawValue else { throw numberError }
            do {
                if option.kind == .unsigned { _ = try GoNumber.parseUnsigned(text) } else { _ = try GoNumber.parseSigned(text) }
            } catch {
                throw numberError
            }
            return text
        }
    }

    /// Applies a value with the messages etcd gives for its config file.
    private static func apply(_ option: Option, _ text: String, to configuration: inout ServerConfiguration) throws(ConfigurationError) {
        if option.urlsField != nil {
            if text.isEmpty { return }
            do {
                try option.apply(text, to: &configuration)
            } catch {
                throw ConfigurationError("unexpected error setting up \(option.rawValue): \(error.message)")
            }
            return
        }
        switch option {
        case .initialCluster:
            do {
                try option.apply(text, to: &configuration)
            } catch {
                throw ConfigurationError("error setting up initial cluster: \(error.message)")
            }
        case .initialClusterState:
            guard let state = InitialClusterState(rawValue: text) else {
                throw ConfigurationError("unexpected clusterState \"\(text)\"")
            }
            configuration.initialClusterState = state
        case .logLevel:
            do {
                try option.apply(text, to: &configuration)
            } catch {
                throw ConfigurationError("invalid log-level \"\(text)\" in config file: \(error.message)")
            }
        default:
            try option.apply(text, to: &configuration)
        }
    }

    /// The JSON type etcd's YAML-to-JSON step gives a node.
    private static func jsonType(of node: Node) -> String {
        switch node {
        case .mapping: return "object"
        case .sequence: return "array"
        case .scalar:
            switch node.tag.description {
            case Tag.Name.null.rawValue: return "null"
            case Tag.Name.bool.rawValue: return "bool"
            case Tag.Name.int.rawValue, Tag.Name.float.rawValue: return "number"
            default: return "string"
            }
        }
    }

    private static func describe(_ error: any Error) -> String {
        guard let error = error as? YamlError else { return "\(error)" }
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
            .composer(_, let problem, let mark, _):
            return "yaml: line \(mark.line): \(problem)"
        default:
            return "yaml: \(error)"
        }
    }
}
