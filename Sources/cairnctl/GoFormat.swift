// Text conventions etcdctl inherits from Go, restated: encoding/json's output (field order as
// declared, omitempty, base64 bytes, HTML-safe escaping), %q quoting, durations, SI byte sizes.
import Foundation

/// Builds JSON text the way Go's encoding/json writes it.
enum GoJSON {
    /// `{"a":1,"b":…}` from pre-rendered values; nil values are left out (omitempty).
    static func object(_ fields: [(String, String?)]) -> String {
        var out = "{"
        var first = true
        for (name, value) in fields {
            guard let value else { continue }
            if !first { out += "," }
            first = false
            out += string(name) + ":" + value
        }
        return out + "}"
    }

    static func array(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }

    /// A JSON string: `"`, `\`, control characters, `<`, `>`, `&`, U+2028 and U+2029 escaped.
    /// Without `htmlSafe` the last five stay as they are, as zap's encoder writes strings.
    static func string(_ s: String) -> String { string(s, htmlSafe: true) }

    static func string(_ s: String, htmlSafe: Bool) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<", ">", "&", "\u{2028}", "\u{2029}":
                if htmlSafe {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// A `[]byte`: base64 (standard alphabet, padded).
    static func bytes(_ b: Data) -> String { "\"" + b.base64EncodedString() + "\"" }

    // omitempty helpers: nil for Go's zero values.
    static func omit<T: BinaryInteger>(_ v: T) -> String? { v == 0 ? nil : "\(v)" }
    static func omit(_ v: Bool) -> String? { v ? "true" : nil }
    static func omit(_ v: String) -> String? { v.isEmpty ? nil : string(v) }
    static func omitBytes(_ v: Data) -> String? { v.isEmpty ? nil : bytes(v) }
    static func omitArray(_ items: [String]) -> String? { items.isEmpty ? nil : array(items) }
}

enum GoFormat {
    /// Go's `%q` of a string made of `bytes`: printable runes kept, the rest escaped.
    static func quote(_ bytes: [UInt8]) -> String {
        var out = "\""
        var i = 0
        while i < bytes.count {
            let (scalar, length) = decodeUTF8(bytes, at: i)
            guard let scalar else {
                out += String(format: "\\x%02x", bytes[i])
                i += 1
                continue
            }
            i += length
            switch scalar {
            case "\u{07}": out += "\\a"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{0B}": out += "\\v"
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default:
                let v = scalar.value
                if v < 0x20 || v == 0x7F {
                    out += String(format: "\\x%02x", v)
                } else if (0x80..<0xA0).contains(v) || v == 0xAD {
                    out += v < 0x10000 ? String(format: "\\u%04x", v) : String(format: "\\U%08x", v)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func quote(_ s: String) -> String { quote(Array(s.utf8)) }
    static func quote(_ d: Data) -> String { quote(Array(d)) }

    /// One UTF-8 scalar at `i`, or nil (and length 1) for an invalid sequence.
    private static func decodeUTF8(_ b: [UInt8], at i: Int) -> (Unicode.Scalar?, Int) {
        let b0 = b[i]
        if b0 < 0x80 { return (Unicode.Scalar(b0), 1) }
        let length: Int
        let initial: UInt32
        switch b0 {
        case 0xC2...0xDF: (length, initial) = (2, UInt32(b0 & 0x1F))
        case 0xE0...0xEF: (length, initial) = (3, UInt32(b0 & 0x0F))
        case 0xF0...0xF4: (length, initial) = (4, UInt32(b0 & 0x07))
        default: return (nil, 1)
        }
        guard i + length <= b.count else { return (nil, 1) }
        var value = initial
        for k in 1..<length {
            let c = b[i + k]
            guard c & 0xC0 == 0x80 else { return (nil, 1) }
            value = value << 6 | UInt32(c & 0x3F)
        }
        let minimum: UInt32 = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000
        guard value >= minimum, let scalar = Unicode.Scalar(value) else { return (nil, 1) }
        return (scalar, length)
    }

    /// Go's `strconv.ParseInt(s, 0, 64)` (sign, then a 0x / 0o / 0b / 0 base prefix or decimal):
    /// the value, or the error text it gives.
    static func parseGoInt64(_ s: String) -> Result<Int64, GoParseError> {
        var digits = Substring(s)
        var negative = false
        if let sign = digits.first, sign == "+" || sign == "-" {
            negative = sign == "-"
            digits = digits.dropFirst()
        }
        var radix = 10
        let lower = digits.lowercased()
        if lower.hasPrefix("0x") || lower.hasPrefix("0o") || lower.hasPrefix("0b") {
            radix = lower.hasPrefix("0x") ? 16 : lower.hasPrefix("0o") ? 8 : 2
            digits = digits.dropFirst(2)
        } else if digits.count > 1, digits.first == "0" {
            radix = 8
            digits = digits.dropFirst()
        }
        let syntax = GoParseError(text: "strconv.ParseInt: parsing \(quote(s)): invalid syntax")
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isHexDigit }) else { return .failure(syntax) }
        guard let magnitude = UInt64(digits, radix: radix) else {
            // all digits valid for the radix but too many of them: out of range; else syntax
            return digits.allSatisfy({ Int(String($0), radix: radix) != nil })
                ? .failure(GoParseError(text: "strconv.ParseInt: parsing \(quote(s)): value out of range")) : .failure(syntax)
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else {
                return .failure(GoParseError(text: "strconv.ParseInt: parsing \(quote(s)): value out of range"))
            }
            return .success(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
        }
        guard magnitude <= UInt64(Int64.max) else {
            return .failure(GoParseError(text: "strconv.ParseInt: parsing \(quote(s)): value out of range"))
        }
        return .success(Int64(magnitude))
    }

    /// etcdctl's `--hex` form of bytes: `\x6b\x31`.
    static func hexEscaped(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "\\x%02x", $0) }.joined()
    }

    /// Go's `%16x`: lowercase hex right-aligned in 16 columns.
    static func hex16Padded(_ v: UInt64) -> String {
        let h = String(v, radix: 16)
        return String(repeating: " ", count: max(0, 16 - h.count)) + h
    }

    /// Go's `%016x`.
    static func hex016(_ v: UInt64) -> String {
        let h = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 16 - h.count)) + h
    }

    /// Sizes as etcdctl prints them (go-humanize `Bytes`: SI units, one decimal below 10).
    static func humanBytes(_ n: UInt64) -> String {
        if n < 10 { return "\(n) B" }
        let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
        let exponent = Int((log(Double(n)) / log(1000.0)).rounded(.down))
        let value = ((Double(n) / pow(1000.0, Double(exponent))) * 10 + 0.5).rounded(.down) / 10
        return value < 10 ? String(format: "%.1f %@", value, units[exponent]) : String(format: "%.0f %@", value, units[exponent])
    }

    /// Go's `time.Duration.String()` for a non-negative duration.
    static func duration(_ d: Duration) -> String {
        let (s, atto) = d.components
        let nanos = UInt64(max(0, s)) * 1_000_000_000 + UInt64(max(0, atto) / 1_000_000_000)
        if nanos == 0 { return "0s" }
        if nanos < 1_000 { return "\(nanos)ns" }
        if nanos < 1_000_000 { return fraction(nanos, 1_000) + "µs" }
        if nanos < 1_000_000_000 { return fraction(nanos, 1_000_000) + "ms" }
        var out = ""
        var rest = nanos
        let hours = rest / 3_600_000_000_000
        rest %= 3_600_000_000_000
        let minutes = rest / 60_000_000_000
        rest %= 60_000_000_000
        if hours > 0 { out += "\(hours)h" }
        if hours > 0 || minutes > 0 { out += "\(minutes)m" }
        return out + fraction(rest, 1_000_000_000) + "s"
    }

    /// `n / unit` with the fraction's trailing zeros dropped (`1.5`, `2`).
    private static func fraction(_ n: UInt64, _ unit: UInt64) -> String {
        let whole = n / unit
        var frac = n % unit
        guard frac > 0 else { return "\(whole)" }
        var digits = String(unit).count - 1
        while frac % 10 == 0 {
            frac /= 10
            digits -= 1
        }
        let f = String(frac)
        return "\(whole)." + String(repeating: "0", count: digits - f.count) + f
    }

    /// Parses Go durations such as `2s`, `500ms`, `1m30s`, `1.5h`; nil when malformed.
    static func parseDuration(_ text: String) -> Duration? { try? parseGoDuration(text).get() }

    /// Go's `time.ParseDuration`: an optional sign, then numbers (with fractions) each followed by
    /// a unit (ns, us, µs, ms, s, m, h); the error texts are Go's.
    static func parseGoDuration(_ text: String) -> Result<Duration, GoParseError> {
        let invalid = GoParseError(text: "time: invalid duration \(quote(text))")
        var rest = Substring(text)
        var negative = false
        if let sign = rest.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            rest = rest.dropFirst()
        }
        if rest == "0" { return .success(.zero) }
        guard !rest.isEmpty else { return .failure(invalid) }
        let units: [String: Double] = ["ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600]
        var total: Double = 0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, number != ".", let value = Double(number.hasPrefix(".") ? "0" + number : number) else {
                return .failure(invalid)
            }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { !($0.isASCII && ($0.isNumber || $0 == ".")) }
            guard !unit.isEmpty else { return .failure(GoParseError(text: "time: missing unit in duration \(quote(text))")) }
            guard let scale = units[String(unit)] else {
                return .failure(GoParseError(text: "time: unknown unit \(quote(String(unit))) in duration \(quote(text))"))
            }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        guard total * 1e9 < 9.2e18 else { return .failure(invalid) }
        return .success(.nanoseconds(Int64((negative ? -total : total) * 1e9)))
    }
}

/// etcdctl's table layout (olekukonko/tablewriter as etcdctl configures it): centered headers,
/// right-aligned cells, `+---+` borders.
enum Table {
    static func render(header: [String], rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        let line = "+" + widths.map { String(repeating: "-", count: $0 + 2) + "+" }.joined()
        func center(_ s: String, _ w: Int) -> String {
            let pad = w - s.count
            return String(repeating: " ", count: pad / 2) + s + String(repeating: " ", count: pad - pad / 2)
        }
        func right(_ s: String, _ w: Int) -> String { String(repeating: " ", count: w - s.count) + s }
        var out = line + "\n"
        out += "|" + header.enumerated().map { " " + center($0.element, widths[$0.offset]) + " |" }.joined() + "\n"
        out += line + "\n"
        for row in rows {
            out += "|" + row.enumerated().map { " " + right($0.element, widths[$0.offset]) + " |" }.joined() + "\n"
        }
        return out + line + "\n"
    }
}

/// A parse error of Go's strconv, with its text.
struct GoParseError: Error, Equatable {
    let text: String
}
