import CairnProto
import Foundation
import SwiftProtobuf
import Testing

@testable import CairnMVCC

/// The keyspace writes mvccpb.KeyValue and leasepb.Lease by hand; these tests
/// hold that encoding to the generated protobuf code, byte for byte.
@Suite struct WireEncodingTests {
    @Test func keyValueEncodingMatchesTheGeneratedCode() throws {
        var g = SplitMix64(seed: 7)
        for _ in 0..<500 {
            var kv = KeyValue(key: [UInt8](repeating: UInt8(g.next() % 256), count: Int(1 + g.next() % 40)))
            kv.createRevision = g.next() % 3 == 0 ? 0 : Int64(g.next() % (1 << 40))
            kv.modRevision = Int64(g.next() % (1 << 62))
            kv.version = g.next() % 4 == 0 ? 0 : Int64(g.next() % 1000)
            kv.value = [UInt8](repeating: 0x5a, count: Int(g.next() % 300))
            kv.lease = g.next() % 2 == 0 ? 0 : Int64(bitPattern: g.next())
            var pb = Mvccpb_KeyValue()
            pb.key = Data(kv.key)
            pb.createRevision = kv.createRevision
            pb.modRevision = kv.modRevision
            pb.version = kv.version
            pb.value = Data(kv.value)
            pb.lease = kv.lease
            let expected = [UInt8](try pb.serializedBytes() as [UInt8])
            #expect(kv.encoded() == expected)
            let decoded = try #require(KeyValue(encoded: expected))
            #expect(decoded == kv)
        }
    }

    @Test func leaseEncodingMatchesTheGeneratedCode() throws {
        let lease = LeaseRecord(id: 0x7abc_def0_1234, ttlSeconds: 60, remainingTTLSeconds: 17)
        var pb = Leasepb_Lease()
        pb.id = lease.id
        pb.ttl = lease.ttlSeconds
        pb.remainingTtl = lease.remainingTTLSeconds
        #expect(Codec.encode(lease) == [UInt8](try pb.serializedBytes() as [UInt8]))
    }

    @Test func malformedKeyValueIsRejectedNotTrapped() {
        #expect(KeyValue(encoded: [0x0a, 0x05, 0x61]) == nil)  // length past the end
        #expect(KeyValue(encoded: [0x10]) == nil)  // truncated varint
        #expect(KeyValue(encoded: [0x0f]) == nil)  // wire type 7
    }
}
