import CCRC32C
import CZstd
import CairnFS

#if canImport(Glibc)
import Glibc
#endif

/// Reads a snapshot file: header, then the content streamed through zstd.
public final class SnapshotReader {
    public let path: String
    public let header: SnapshotHeader
    let file: FSFile
    let fileSize: Int64

    public init(path: String, fileSystem fs: FileSystem = .live) throws(SnapshotError) {
        self.path = path
        do { file = try fs.open(path, flags: O_RDONLY) } catch { throw .io(error) }
        do {
            fileSize = try file.size()
            header = try SnapshotHeader.read(from: file)
        } catch let e as SnapshotError {
            file.close()
            throw e
        } catch let e as FSError {
            file.close()
            throw .io(e)
        } catch {
            file.close()
            throw .corrupt(path: path, reason: "\(error)")
        }
        guard UInt64(fileSize) == UInt64(header.encodedBytes) + header.compressedBytes else {
            file.close()
            throw .corrupt(
                path: path,
                reason: "file is \(fileSize) bytes, header says \(header.encodedBytes) header + \(header.compressedBytes) compressed")
        }
    }

    public func close() { file.close() }

    /// Decompresses the content and calls `body` for each item, in order, holding
    /// only one chunk (plus one record) in memory. Verifies the record structure,
    /// the uncompressed size, the record count and the CRC32C of the content.
    public func stream(_ body: (SnapshotItem) throws(SnapshotError) -> Void) throws(SnapshotError) {
        guard let dctx = ZSTD_createDCtx() else { throw .zstd("cannot create a decompression context") }
        defer { ZSTD_freeDCtx(dctx) }
        let inChunk = Int(ZSTD_DStreamInSize())
        var input = [UInt8](repeating: 0, count: inChunk)
        var output = [UInt8](repeating: 0, count: Int(ZSTD_DStreamOutSize()))
        var parser = ContentParser(path: path, contentBytes: header.uncompressedBytes)
        var crc: UInt32 = 0
        var total: UInt64 = 0
        var readOffset = Int64(header.encodedBytes)
        var frameDone = false
        while readOffset < fileSize {
            let n: Int
            do {
                n = try input.withUnsafeMutableBytes { raw throws(FSError) -> Int in
                    try file.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<min(inChunk, Int(fileSize - readOffset))]), at: readOffset)
                }
            } catch let e as FSError { throw .io(e) } catch { throw .corrupt(path: path, reason: "\(error)") }
            if n == 0 { break }
            readOffset += Int64(n)
            var pos = 0
            while pos < n {
                var produced = 0
                var zerr: Int = 0
                input.withUnsafeBytes { inRaw in
                    output.withUnsafeMutableBytes { outRaw in
                        var inBuf = ZSTD_inBuffer(src: inRaw.baseAddress, size: n, pos: pos)
                        var outBuf = ZSTD_outBuffer(dst: outRaw.baseAddress, size: outRaw.count, pos: 0)
                        let r = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
                        if ZSTD_isError(r) != 0 { zerr = r } else if r == 0 { frameDone = true }
                        pos = inBuf.pos
                        produced = outBuf.pos
                    }
                }
                if zerr != 0 {
                    throw .corrupt(path: path, reason: "zstd: \(String(cString: ZSTD_getErrorName(zerr))) at compressed byte \(readOffset - Int64(n) + Int64(pos))")
                }
                if produced > 0 {
                    output.withUnsafeBytes { crc = cairn_crc32c_update(crc, $0.baseAddress, produced) }
                    total += UInt64(produced)
                    try parser.feed(output, count: produced, body)
                }
                if produced == 0 && pos >= n { break }
            }
        }
        // Drain anything zstd still holds.
        while !frameDone {
            var produced = 0
            var zerr = 0
            output.withUnsafeMutableBytes { outRaw in
                var inBuf = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
                var outBuf = ZSTD_outBuffer(dst: outRaw.baseAddress, size: outRaw.count, pos: 0)
                let r = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
                if ZSTD_isError(r) != 0 { zerr = r } else if r == 0 { frameDone = true }
                produced = outBuf.pos
            }
            if zerr != 0 { throw .corrupt(path: path, reason: "zstd: \(String(cString: ZSTD_getErrorName(zerr)))") }
            if produced == 0 { break }
            output.withUnsafeBytes { crc = cairn_crc32c_update(crc, $0.baseAddress, produced) }
            total += UInt64(produced)
            try parser.feed(output, count: produced, body)
        }
        guard frameDone else { throw .corrupt(path: path, reason: "compressed stream ends before its zstd frame does (truncated)") }
        guard total == header.uncompressedBytes else {
            throw .corrupt(path: path, reason: "content is \(total) bytes, header says \(header.uncompressedBytes)")
        }
        guard crc == header.contentCRC32C else {
            throw .corrupt(path: path, reason: "content CRC32C mismatch (header \(hex32(header.contentCRC32C)), computed \(hex32(crc)))")
        }
        guard let end = parser.endCount else { throw .corrupt(path: path, reason: "content has no end record") }
        guard end == parser.records, end == header.recordCount else {
            throw .corrupt(path: path, reason: "record count mismatch: end record \(end), counted \(parser.records), header \(header.recordCount)")
        }
        guard parser.carry.count == parser.carryStart else { throw .corrupt(path: path, reason: "bytes after the end record") }
    }
}

/// Incremental parser of the content stream; keeps a partial record across chunks.
///
/// A record's declared length is checked against `contentBytes` (the header's
/// uncompressed size) before the parser waits for the rest of it, so a garbage
/// length fails at once instead of buffering the remaining stream.
struct ContentParser {
    let path: String
    /// The content size the header declares.
    let contentBytes: UInt64
    var carry: [UInt8] = []
    var carryStart = 0
    /// Content offset of `carry[0]` (bytes already dropped from `carry`).
    var carryBase: UInt64 = 0
    var records: UInt64 = 0
    var endCount: UInt64?
    var tables: [String] = []

    init(path: String, contentBytes: UInt64) {
        self.path = path
        self.contentBytes = contentBytes
    }

    /// Throws unless a `size`-byte record at the current position ends within the content.
    private func checkFits(_ what: String, _ size: Int) throws(SnapshotError) {
        let offset = carryBase + UInt64(carryStart)
        if offset + UInt64(size) > contentBytes {
            throw .corrupt(
                path: path,
                reason: "\(what) record of \(size) bytes at content offset \(offset) runs past the content size the header declares (\(contentBytes) bytes)")
        }
    }

    mutating func feed(_ chunk: [UInt8], count: Int, _ body: (SnapshotItem) throws(SnapshotError) -> Void) throws(SnapshotError) {
        carry.append(contentsOf: chunk[0..<count])
        while true {
            let avail = carry.count - carryStart
            guard avail >= 1 else { break }
            if endCount != nil { throw .corrupt(path: path, reason: "content continues after the end record") }
            let kind = carry[carryStart]
            func u32(_ o: Int) -> Int {
                Int(carry[carryStart + o]) | Int(carry[carryStart + o + 1]) << 8 | Int(carry[carryStart + o + 2]) << 16
                    | Int(carry[carryStart + o + 3]) << 24
            }
            switch ContentKind(rawValue: kind) {
            case .table:
                guard avail >= 5 else { break }
                let n = u32(1)
                try checkFits("table", 5 + n)
                guard avail >= 5 + n else { break }
                let name = String(decoding: carry[(carryStart + 5)..<(carryStart + 5 + n)], as: UTF8.self)
                carryStart += 5 + n
                tables.append(name)
                try body(.table(name))
                continue
            case .keyValue:
                guard avail >= 9 else { break }
                let k = u32(1)
                let v = u32(5)
                try checkFits("key-value", 9 + k + v)
                guard avail >= 9 + k + v else { break }
                let ks = carryStart + 9
                let key = Array(carry[ks..<(ks + k)])
                let value = Array(carry[(ks + k)..<(ks + k + v)])
                carryStart += 9 + k + v
                records += 1
                try body(.keyValue(key: key, value: value))
                continue
            case .end:
                guard avail >= 9 else { break }
                var n: UInt64 = 0
                for i in 0..<8 { n |= UInt64(carry[carryStart + 1 + i]) << (8 * UInt64(i)) }
                endCount = n
                carryStart += 9
                continue
            case nil:
                throw .corrupt(path: path, reason: "unknown content record kind \(kind) after \(records) records")
            }
            break
        }
        if carryStart > 0 && (carryStart == carry.count || carryStart > 1 << 20) {
            carry.removeSubrange(0..<carryStart)
            carryBase += UInt64(carryStart)
            carryStart = 0
        }
    }
}
