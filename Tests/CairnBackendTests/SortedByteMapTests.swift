import CairnBackend
import Testing

@Suite struct SortedByteMapTests {
    @Test func matchesADictionaryUnderRandomInsertsAndRemovals() {
        var map = SortedByteMap<Int>()
        var model: [[UInt8]: Int] = [:]
        var g = SystemRandomNumberGenerator()
        for i in 0..<20_000 {
            let key = [UInt8]("\(Int.random(in: 0..<3000, using: &g))".utf8)
            if Bool.random(using: &g) || i < 5000 {
                #expect(map.updateValue(i, forKey: key) == model.updateValue(i, forKey: key))
            } else {
                #expect(map.removeValue(forKey: key) == model.removeValue(forKey: key))
            }
        }
        #expect(map.count == model.count)
        #expect(map.invariantViolation() == nil)
        var seen: [[UInt8]] = []
        map.forEach(from: UnsafeRawBufferPointer(start: nil, count: 0), to: nil, reverse: false) { k, v in
            #expect(model[Array(k)] == v)
            seen.append(Array(k))
            return true
        }
        #expect(seen == model.keys.sorted { compareBytes($0, $1) < 0 })
        var reversed: [[UInt8]] = []
        map.forEach(from: UnsafeRawBufferPointer(start: nil, count: 0), to: nil, reverse: true) { k, _ in
            reversed.append(Array(k))
            return true
        }
        #expect(reversed == seen.reversed())
    }

    @Test func updateOrRemoveAllFiltersInPlace() {
        var map = SortedByteMap<Int>()
        for i in 0..<2000 { map.updateValue(i, forKey: [UInt8]("\(i)".utf8)) }
        map.updateOrRemoveAll { _, v in
            v *= 2
            return v % 3 == 0
        }
        #expect(map.count == (0..<2000).filter { ($0 * 2) % 3 == 0 }.count)
        #expect(map.invariantViolation() == nil)
        #expect(map[[UInt8]("3".utf8)] == 6 && map[[UInt8]("4".utf8)] == nil)
    }

    /// Keys of every length (empty, shorter and longer than the 8-byte prefix, sharing long
    /// prefixes) inserted in random order across many chunk splits, then half removed.
    @Test func packedKeysOfManyLengthsStayOrdered() {
        var map = SortedByteMap<Int>()
        var model: [[UInt8]: Int] = [:]
        var g = SystemRandomNumberGenerator()
        let prefix = [UInt8](repeating: 7, count: 12)
        for i in 0..<5000 {
            let n = Int.random(in: 0..<20, using: &g)
            var key = (i % 3 == 0 ? prefix : []) + (0..<n).map { _ in UInt8.random(in: 0...3, using: &g) }
            if i % 7 == 0 { key = [] }
            #expect(map.updateValue(i, forKey: key) == model.updateValue(i, forKey: key))
        }
        #expect(map.invariantViolation() == nil)
        for (k, _) in model where Bool.random(using: &g) {
            #expect(map.removeValue(forKey: k) == model.removeValue(forKey: k))
        }
        #expect(map.invariantViolation() == nil)
        #expect(map.count == model.count)
        for (k, v) in model { #expect(map[k] == v) }
        var seen: [[UInt8]] = []
        map.forEach(from: UnsafeRawBufferPointer(start: nil, count: 0), to: nil, reverse: false) { k, _ in
            seen.append(Array(k))
            return true
        }
        #expect(seen == model.keys.sorted { compareBytes($0, $1) < 0 })
    }

    @Test func compareBytesOrdersPrefixesFirst() {
        #expect(compareBytes([1, 2], [1, 2, 0]) < 0)
        #expect(compareBytes([2], [1, 255]) > 0)
        #expect(compareBytes([], []) == 0)
    }
}
