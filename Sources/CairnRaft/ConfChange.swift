/// Kind of a single membership change (raftpb.ConfChangeType values).
public enum ConfChangeType: UInt8, Sendable, Hashable {
    case addNode = 0
    case removeNode = 1
    case updateNode = 2
    case addLearnerNode = 3
}

/// One membership change (raftpb.ConfChange: Type, NodeID, Context).
///
/// Safety rule (thesis §4.1, one server at a time): the leader accepts a new change only after
/// the previous one has been applied on the leader, and only after it has applied an entry of its
/// own term (its initial empty entry). A change takes effect on each node when that node applies
/// it (`RawNode.applyConfChange`). Adding a voter that is currently a learner promotes it;
/// `addLearnerNode` on a voter demotes it; removing the leader makes it step down after applying.
public struct ConfChange: Sendable, Hashable {
    public var type: ConfChangeType
    public var nodeID: UInt64
    public var context: [UInt8]

    public init(type: ConfChangeType, nodeID: UInt64, context: [UInt8] = []) {
        self.type = type
        self.nodeID = nodeID
        self.context = context
    }

    /// Compact encoding used in `Entry.data` of `.confChange` entries:
    /// 1 byte type, 8 bytes node id (little endian), then the context bytes.
    /// (The server will switch to raftpb.ConfChange encoding on the wire.)
    public func encode() -> [UInt8] {
        var out: [UInt8] = [type.rawValue]
        out.reserveCapacity(9 + context.count)
        for s in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: nodeID >> UInt64(s))) }
        out.append(contentsOf: context)
        return out
    }

    /// Decodes `encode()`'s output; nil for malformed input.
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count >= 9, let t = ConfChangeType(rawValue: bytes[0]) else { return nil }
        var id: UInt64 = 0
        for k in 0..<8 { id |= UInt64(bytes[1 + k]) << UInt64(8 * k) }
        self.init(type: t, nodeID: id, context: Array(bytes[9...]))
    }
}
