import CCRC32C
import Testing

private func crc(_ s: String, _ f: (UInt32, UnsafeRawPointer?, Int) -> UInt32) -> UInt32 {
    let bytes = Array(s.utf8)
    return bytes.withUnsafeBytes { f(0, $0.baseAddress, $0.count) }
}

private let vectors: [(String, UInt32)] = [
    ("", 0),
    ("a", 0xC1D0_4330),
    ("123456789", 0xE306_9283),
    ("The quick brown fox jumps over the lazy dog", 0x2262_0404),
]

@Test func portableKnownVectors() {
    for (s, want) in vectors {
        #expect(crc(s, cairn_crc32c_update_portable) == want, "portable CRC32C(\(s))")
    }
}

@Test func hardwareKnownVectors() {
    // On CPUs without the instruction the hardware entry point falls back to
    // the table, so the vectors must hold either way.
    for (s, want) in vectors {
        #expect(crc(s, cairn_crc32c_update) == want, "dispatching CRC32C(\(s))")
        if cairn_crc32c_hardware_available() == 1 {
            #expect(crc(s, cairn_crc32c_update_hardware) == want, "hardware CRC32C(\(s))")
        }
    }
}

@Test func iSCSIVectors() {
    // RFC 3720 B.4: 32 bytes of zeros / ones / ascending.
    let zeros = [UInt8](repeating: 0, count: 32)
    let ones = [UInt8](repeating: 0xFF, count: 32)
    let inc = (0..<32).map { UInt8($0) }
    for (buf, want) in [(zeros, UInt32(0x8A91_36AA)), (ones, 0x62A8_AB43), (inc, 0x46DD_794E)] {
        #expect(buf.withUnsafeBytes { cairn_crc32c_update_portable(0, $0.baseAddress, $0.count) } == want)
        #expect(buf.withUnsafeBytes { cairn_crc32c_update(0, $0.baseAddress, $0.count) } == want)
    }
}

@Test func hardwareMatchesPortableOnLargeUnalignedBuffers() {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    var buf = [UInt8](repeating: 0, count: 3 * 4096 * 3 + 77)
    for i in buf.indices {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        buf[i] = UInt8(truncatingIfNeeded: state >> 33)
    }
    buf.withUnsafeBytes { raw in
        for start in [0, 1, 3, 7] {
            for len in [0, 1, 9, 4095, 12_288, 12_289, 30_000, raw.count - start] {
                let p = raw.baseAddress! + start
                let sw = cairn_crc32c_update_portable(0, p, len)
                let hw = cairn_crc32c_update(0, p, len)
                #expect(sw == hw, "start \(start) len \(len)")
                // Chaining: crc(a ++ b) == update(crc(a), b).
                let half = len / 2
                let chained = cairn_crc32c_update(cairn_crc32c_update(0, p, half), p + half, len - half)
                #expect(chained == sw, "chained start \(start) len \(len)")
            }
        }
    }
}
