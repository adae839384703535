/// The deterministic write sequence of the keyspace crash test, shared by the
/// child process that writes it (`cairn-keyspace-bench crash-child`) and the
/// test that checks what survived.
public enum CrashWorkload {
    public enum Change: Equatable {
        case put([UInt8], [UInt8])
        case delete([UInt8])
    }

    /// The changes of batch `n` (n >= 1): puts over a key space of 400 keys
    /// and, every third batch, a delete.
    public static func batch(_ n: UInt64) -> [Change] {
        var changes: [Change] = []
        for j in 0..<UInt64(40) {
            let k = (n &* 7 &+ j &* 13) % 400
            changes.append(.put(Array("k\(k)".utf8), Array("b\(n)-\(j)-".utf8) + [UInt8](repeating: 0x2e, count: Int(j % 5) * 300)))
        }
        if n % 3 == 0 { changes.append(.delete(Array("k\((n &* 11) % 400)".utf8))) }
        return changes
    }
}
