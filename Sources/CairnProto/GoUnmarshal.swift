/// What etcd's gogo-generated Go decoder says of a malformed message, so that Cairn answers
/// a malformed request with etcd's words ("grpc: error unmarshalling request: " + this):
/// "unexpected EOF", "proto: integer overflow", "proto: negative length found during
/// unmarshaling", "proto: PutRequest: illegal tag 0 (wire type 0)", "proto: PutRequest:
/// wiretype end group for non-group", "proto: wrong wireType = 0 for field Key", and the
/// errors of skipping unknown fields. The decoder walks the wire format with the field table
/// generated from the .proto files (`goUnmarshalSchema`), in the order Go's would, and stops
/// at the first error. It checks structure only: a message it accepts is then decoded by
/// swift-protobuf.
public enum GoUnmarshal {
    public struct Field: Sendable {
        public var wire: UInt8
        /// A repeated scalar: Go accepts it packed (wire type 2) or not.
        public var packed: Bool
        public var goName: String
        /// The message type of a message field.
        public var message: String?

        public init(wire: UInt8, packed: Bool, goName: String, message: String?) {
            self.wire = wire
            self.packed = packed
            self.goName = goName
            self.message = message
        }
    }

    static let unexpectedEOF = "unexpected EOF"
    static let integerOverflow = "proto: integer overflow"
    static let negativeLength = "proto: negative length found during unmarshaling"

    /// Go's error for `bytes` as a `message` (its full proto name, e.g. "etcdserverpb.PutRequest"),
    /// or nil when Go would decode it.
    public static func error(in bytes: UnsafeRawBufferPointer, message: String) -> String? {
        check(UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count), message: message, depth: 0)
    }

    public static func error(in bytes: [UInt8], message: String) -> String? {
        bytes.withUnsafeBytes { error(in: $0, message: message) }
    }

    /// Nesting deeper than this is not checked (Go's decoder recurses without a bound; ours stops).
    static let maxDepth = 64

    private static func check(_ data: UnsafeBufferPointer<UInt8>, message: String, depth: Int) -> String? {
        guard depth < maxDepth, let fields = goUnmarshalSchema[message] else { return nil }
        let goType = message.split(separator: ".").last.map(String.init) ?? message
        var i = 0
        let l = data.count
        while i < l {
            let start = i
            let wire: UInt64
            switch varint(data, &i) {
            case .failure(let e): return e.text
            case .success(let v): wire = v
            }
            let fieldNumber = Int32(truncatingIfNeeded: wire >> 3)
            let wireType = UInt8(wire & 7)
            if wireType == 4 { return "proto: \(goType): wiretype end group for non-group" }
            if fieldNumber <= 0 { return "proto: \(goType): illegal tag \(fieldNumber) (wire type \(wire))" }
            guard let field = fields[Int(fieldNumber)] else {
                // Unknown field: skipped as Go skips it.
                i = start
                switch skip(UnsafeBufferPointer(rebasing: data[i...])) {
                case .failure(let e): return e.text
                case .success(let n):
                    if i + n > l { return unexpectedEOF }
                    i += n
                }
                continue
            }
            if field.packed && wireType == 2 {
                // Packed repeated scalars: a length, then values.
                switch lengthDelimited(data, &i) {
                case .failure(let e): return e.text
                case .success(let range):
                    var j = range.lowerBound
                    let sub = UnsafeBufferPointer(rebasing: data[..<range.upperBound])
                    while j < range.upperBound {
                        switch field.wire {
                        case 0:
                            if case .failure(let e) = varint(sub, &j) { return e.text }
                        case 1: j += 8
                        default: j += 4
                        }
                    }
                    if j > range.upperBound { return unexpectedEOF }
                }
                continue
            }
            guard wireType == field.wire else { return "proto: wrong wireType = \(wireType) for field \(field.goName)" }
            switch wireType {
            case 0:
                if case .failure(let e) = varint(data, &i) { return e.text }
            case 1:
                i += 8
                if i > l { return unexpectedEOF }
            case 5:
                i += 4
                if i > l { return unexpectedEOF }
            default:
                switch lengthDelimited(data, &i) {
                case .failure(let e): return e.text
                case .success(let range):
                    if let nested = field.message,
                        let e = check(UnsafeBufferPointer(rebasing: data[range]), message: nested, depth: depth + 1)
                    {
                        return e
                    }
                }
            }
        }
        return i > l ? unexpectedEOF : nil
    }

    /// A varint at `i` (advanced past it).
    private static func varint(_ data: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> Result<UInt64, GoError> {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            if shift >= 64 { return .failure(GoError(integerOverflow)) }
            if i >= data.count { return .failure(GoError(unexpectedEOF)) }
            let b = data[i]
            i += 1
            value |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return .success(value) }
            shift += 7
        }
    }

    /// A length and the range of bytes it covers (advanced past them).
    private static func lengthDelimited(_ data: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> Result<Range<Int>, GoError> {
        switch varint(data, &i) {
        case .failure(let e): return .failure(e)
        case .success(let v):
            let length = Int(truncatingIfNeeded: v)
            if length < 0 { return .failure(GoError(negativeLength)) }
            let (end, overflow) = i.addingReportingOverflow(length)
            if overflow || end < 0 { return .failure(GoError(negativeLength)) }
            if end > data.count { return .failure(GoError(unexpectedEOF)) }
            defer { i = end }
            return .success(i..<end)
        }
    }

    /// How many bytes the field at the start of `data` takes (Go's generated `skip` function).
    private static func skip(_ data: UnsafeBufferPointer<UInt8>) -> Result<Int, GoError> {
        var i = 0
        var depth = 0
        while i < data.count {
            let wire: UInt64
            switch varint(data, &i) {
            case .failure(let e): return .failure(e)
            case .success(let v): wire = v
            }
            switch wire & 7 {
            case 0:
                if case .failure(let e) = varint(data, &i) { return .failure(e) }
            case 1: i += 8
            case 2:
                switch varint(data, &i) {
                case .failure(let e): return .failure(e)
                case .success(let v):
                    let length = Int(truncatingIfNeeded: v)
                    if length < 0 { return .failure(GoError(negativeLength)) }
                    i += length
                }
            case 3: depth += 1
            case 4:
                if depth == 0 { return .failure(GoError("proto: unexpected end of group")) }
                depth -= 1
            case 5: i += 4
            default: return .failure(GoError("proto: illegal wireType \(wire & 7)"))
            }
            if i < 0 { return .failure(GoError(negativeLength)) }
            if depth == 0 { return .success(i) }
        }
        return .failure(GoError(unexpectedEOF))
    }

    struct GoError: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }
}
