import NIOCore

/// One header field as bytes (names are lower-case ASCII on HTTP/2; values are opaque).
///
/// Fields taken from a table share its storage: decoding an indexed field copies nothing.
public struct HPACKField: Sendable, Equatable {
    public var name: [UInt8]
    public var value: [UInt8]

    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.name = Array(name.utf8)
        self.value = Array(value.utf8)
    }

    /// The size HPACK charges a table entry (RFC 7541 §4.1).
    @inlinable public var tableBytes: Int { self.name.count + self.value.count + 32 }
}

/// A malformed header block: the connection ends with COMPRESSION_ERROR.
public struct HPACKError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "HPACK: \(self.reason)" }
}

enum HPACKStatic {
    static let fields: [HPACKField] = hpackStaticTableStrings.map { HPACKField($0.0, $0.1) }
}

/// RFC 7541's Huffman code, rebuilt from its code lengths (it is canonical).
enum HPACKHuffman {
    /// For each code length: the first code of that length, how many codes have it, and where
    /// their symbols start in `symbols`.
    struct Tables {
        var firstCode = [UInt32](repeating: 0, count: 31)
        var count = [UInt32](repeating: 0, count: 31)
        var offset = [Int](repeating: 0, count: 31)
        var symbols: [UInt16] = []
        var codes = [UInt32](repeating: 0, count: 257)
    }

    static let tables: Tables = {
        var t = Tables()
        let order = (0..<257).sorted { (hpackHuffmanCodeLengths[$0], $0) < (hpackHuffmanCodeLengths[$1], $1) }
        var code: UInt32 = 0
        var previous = Int(hpackHuffmanCodeLengths[order[0]])
        for (i, symbol) in order.enumerated() {
            let length = Int(hpackHuffmanCodeLengths[symbol])
            if i > 0 { code = (code + 1) << UInt32(length - previous) }
            previous = length
            if t.count[length] == 0 {
                t.firstCode[length] = code
                t.offset[length] = t.symbols.count
            }
            t.count[length] += 1
            t.symbols.append(UInt16(symbol))
            t.codes[symbol] = code
        }
        return t
    }()

    static let shortestCode = 5
    static let longestCode = 30

    /// Decodes a Huffman-coded string literal.
    static func decode(_ input: ByteBuffer) throws(HPACKError) -> [UInt8] {
        let t = Self.tables
        var out: [UInt8] = []
        out.reserveCapacity(input.readableBytes * 8 / 5 + 1)
        var acc: UInt64 = 0
        var bits = 0
        var bytes = input.readableBytesView.makeIterator()
        var exhausted = false
        while true {
            while bits <= 56, !exhausted {
                if let b = bytes.next() {
                    acc = acc << 8 | UInt64(b)
                    bits += 8
                } else {
                    exhausted = true
                }
            }
            if bits == 0 { return out }
            var matched = false
            var length = Self.shortestCode
            while length <= min(Self.longestCode, bits) {
                let v = UInt32(truncatingIfNeeded: (acc >> UInt64(bits - length)) & ((1 << UInt64(length)) - 1))
                let first = t.firstCode[length]
                if t.count[length] > 0, v >= first, v - first < t.count[length] {
                    let symbol = t.symbols[t.offset[length] + Int(v - first)]
                    if symbol == 256 { throw HPACKError("Huffman string contains EOS") }
                    out.append(UInt8(symbol))
                    bits -= length
                    acc &= bits == 0 ? 0 : (1 << UInt64(bits)) - 1
                    matched = true
                    break
                }
                length += 1
            }
            if !matched {
                // What is left must be padding: fewer than 8 bits, all ones (a prefix of EOS).
                guard exhausted, bits < 8, acc == (1 << UInt64(bits)) - 1 else {
                    throw HPACKError("invalid Huffman code or padding")
                }
                return out
            }
        }
    }
}

/// Decodes HPACK header blocks (RFC 7541), keeping the dynamic table the peer's encoder
/// builds. One per connection direction; blocks must be decoded in the order they arrived,
/// including those of streams that are then refused.
public struct HPACKDecoder: Sendable {
    /// The table size this side announced (SETTINGS_HEADER_TABLE_SIZE); the peer may lower
    /// the table below it with a size update, never raise it above.
    public let maxTableBytesAllowed: Int
    private var maxTableBytes: Int
    private var tableBytes = 0
    /// Newest last.
    private var table: [HPACKField] = []
    private var oldest = 0

    public init(maxTableBytes: Int = HTTP2.defaultHeaderTableBytes) {
        self.maxTableBytesAllowed = maxTableBytes
        self.maxTableBytes = maxTableBytes
    }

    /// Entries in the dynamic table (for tests).
    public var dynamicCount: Int { self.table.count - self.oldest }

    /// Decodes `block` into `fields` (appended). Returns the header list's size as HTTP/2
    /// counts it (names + values + 32 per field). Fields beyond `maxListBytes` are decoded (the
    /// table must stay in step) but not kept; the returned size then exceeds the limit.
    public mutating func decode(_ block: ByteBuffer, into fields: inout [HPACKField], maxListBytes: Int = .max)
        throws(HPACKError) -> Int
    {
        var b = block
        var listBytes = 0
        var sizeUpdateAllowed = true
        while let first = b.getInteger(at: b.readerIndex, as: UInt8.self) {
            let field: HPACKField
            if first & 0x80 != 0 {
                field = try self.field(at: try Self.integer(&b, prefixBits: 7))
            } else if first & 0x40 != 0 {
                field = try self.literal(&b, prefixBits: 6)
                self.insert(field)
            } else if first & 0x20 != 0 {
                guard sizeUpdateAllowed else { throw HPACKError("table size update after the first field") }
                let size = try Self.integer(&b, prefixBits: 5)
                guard size <= self.maxTableBytesAllowed else {
                    throw HPACKError("table size update to \(size) above the allowed \(self.maxTableBytesAllowed)")
                }
                self.maxTableBytes = size
                self.evict(toFit: 0)
                continue
            } else {
                // Literal without indexing (0000) or never indexed (0001): 4-bit name index.
                field = try self.literal(&b, prefixBits: 4)
            }
            sizeUpdateAllowed = false
            listBytes += field.tableBytes
            if listBytes <= maxListBytes { fields.append(field) }
        }
        return listBytes
    }

    private func field(at index: Int) throws(HPACKError) -> HPACKField {
        if index >= 1 && index <= HPACKStatic.fields.count { return HPACKStatic.fields[index - 1] }
        let dynamic = index - HPACKStatic.fields.count
        guard index != 0, dynamic >= 1, dynamic <= self.dynamicCount else {
            throw HPACKError("index \(index) outside the tables (dynamic entries: \(self.dynamicCount))")
        }
        return self.table[self.table.count - dynamic]
    }

    private func literal(_ b: inout ByteBuffer, prefixBits: Int) throws(HPACKError) -> HPACKField {
        let nameIndex = try Self.integer(&b, prefixBits: prefixBits)
        let name = nameIndex == 0 ? try Self.string(&b) : try self.field(at: nameIndex).name
        return HPACKField(name: name, value: try Self.string(&b))
    }

    private mutating func insert(_ field: HPACKField) {
        let size = field.tableBytes
        if size > self.maxTableBytes {
            // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
            self.table.removeAll(keepingCapacity: true)
            self.oldest = 0
            self.tableBytes = 0
            return
        }
        self.evict(toFit: size)
        self.table.append(field)
        self.tableBytes += size
    }

    private mutating func evict(toFit incoming: Int) {
        while self.tableBytes + incoming > self.maxTableBytes, self.oldest < self.table.count {
            self.tableBytes -= self.table[self.oldest].tableBytes
            self.oldest += 1
        }
        // Compact now and then: evicted entries stay in the array until half of it is dead.
        if self.oldest > 32, self.oldest * 2 > self.table.count {
            self.table.removeFirst(self.oldest)
            self.oldest = 0
        }
    }

    /// An integer with an N-bit prefix (RFC 7541 §5.1), bounded to 2^28.
    static func integer(_ b: inout ByteBuffer, prefixBits: Int) throws(HPACKError) -> Int {
        guard let first = b.readInteger(as: UInt8.self) else { throw HPACKError("truncated integer") }
        let mask = (1 << prefixBits) - 1
        var value = Int(first) & mask
        if value < mask { return value }
        var shift = 0
        while true {
            guard let next = b.readInteger(as: UInt8.self) else { throw HPACKError("truncated integer") }
            // At most four continuation bytes (28 bits): longer encodings, even of small
            // values, are refused before any shift can overflow.
            guard shift <= 21 else { throw HPACKError("integer encoding too long") }
            value += Int(next & 0x7f) << shift
            shift += 7
            if value > 1 << 28 { throw HPACKError("integer too large") }
            if next & 0x80 == 0 { return value }
        }
    }

    /// A string literal (RFC 7541 §5.2), Huffman-coded or not.
    static func string(_ b: inout ByteBuffer) throws(HPACKError) -> [UInt8] {
        guard let first = b.getInteger(at: b.readerIndex, as: UInt8.self) else { throw HPACKError("truncated string") }
        let length = try Self.integer(&b, prefixBits: 7)
        guard let raw = b.readSlice(length: length) else { throw HPACKError("string of \(length) bytes runs past the block") }
        if first & 0x80 != 0 { return try HPACKHuffman.decode(raw) }
        return Array(raw.readableBytesView)
    }
}

/// Writes header fields without touching the dynamic table (indexed static entries and
/// literals "without indexing"), so the encoder keeps no state and header blocks can be built
/// once and reused. Our blocks are small; Huffman coding is not used.
public enum HPACKEncoder {
    /// A static-table entry whose name and value both match (e.g. 8 = `:status: 200`).
    public static func appendIndexed(_ index: Int, into out: inout ByteBuffer) {
        self.appendInteger(index, prefixBits: 7, flags: 0x80, into: &out)
    }

    /// A literal value for a static-table name (e.g. 31 = `content-type`).
    public static func appendLiteral(nameIndex: Int, value: some Collection<UInt8>, into out: inout ByteBuffer) {
        self.appendInteger(nameIndex, prefixBits: 4, flags: 0x00, into: &out)
        self.appendString(value, into: &out)
    }

    /// A literal name and value.
    public static func appendLiteral(name: some Collection<UInt8>, value: some Collection<UInt8>, into out: inout ByteBuffer) {
        out.writeInteger(UInt8(0))
        self.appendString(name, into: &out)
        self.appendString(value, into: &out)
    }

    /// A field, using the static table where it can.
    public static func append(_ field: HPACKField, into out: inout ByteBuffer) {
        if let i = HPACKStatic.fields.firstIndex(of: field) {
            self.appendIndexed(i + 1, into: &out)
        } else if let i = HPACKStatic.fields.firstIndex(where: { $0.name == field.name }) {
            self.appendLiteral(nameIndex: i + 1, value: field.value, into: &out)
        } else {
            self.appendLiteral(name: field.name, value: field.value, into: &out)
        }
    }

    static func appendString(_ s: some Collection<UInt8>, into out: inout ByteBuffer) {
        self.appendInteger(s.count, prefixBits: 7, flags: 0x00, into: &out)
        out.writeBytes(s)
    }

    static func appendInteger(_ value: Int, prefixBits: Int, flags: UInt8, into out: inout ByteBuffer) {
        let mask = (1 << prefixBits) - 1
        if value < mask {
            out.writeInteger(flags | UInt8(value))
            return
        }
        out.writeInteger(flags | UInt8(mask))
        var rest = value - mask
        while rest >= 0x80 {
            out.writeInteger(UInt8(rest & 0x7f) | 0x80)
            rest >>= 7
        }
        out.writeInteger(UInt8(rest))
    }
}

extension [HPACKField] {
    /// The first value of `name` (lower-case), as bytes.
    @inlinable
    public func firstValue(_ name: some Collection<UInt8>) -> [UInt8]? {
        for f in self where f.name.elementsEqual(name) { return f.value }
        return nil
    }
}
