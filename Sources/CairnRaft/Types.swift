// Value types exchanged between the Raft core and its caller.
//
// Wire mapping: these structs map 1:1 onto etcd's raftpb messages so the server
// can speak raftpb on the peer wire later:
//   Entry            <-> raftpb.Entry        (Term, Index, Type, Data)
//   HardState        <-> raftpb.HardState    (Term, Vote, Commit)
//   ConfState        <-> raftpb.ConfState    (Voters, Learners)
//   SnapshotMetadata <-> raftpb.SnapshotMetadata (ConfState, Index, Term)
//   Snapshot         <-> raftpb.Snapshot     (Data, Metadata)
//   Message          <-> raftpb.Message      (Type, To, From, Term, LogTerm, Index,
//                                             Entries, Commit, Snapshot, Reject,
//                                             RejectHint, Context)
//   MessageType      <-> raftpb.MessageType  (same numeric values)
//   ConfChange       <-> raftpb.ConfChange   (Type, NodeID, Context)
// Node ids, terms and indexes are UInt64 as in raftpb. Node id 0 means "none".

/// Kind of a log entry (raftpb.EntryType).
public enum EntryType: UInt8, Sendable, Hashable {
    case normal = 0
    case confChange = 1
    /// Reserved for raftpb.ConfChangeV2 payloads; this library proposes `confChange` only.
    case confChangeV2 = 2
}

/// One replicated log entry.
public struct Entry: Sendable, Hashable {
    public var term: UInt64
    public var index: UInt64
    public var type: EntryType
    public var data: [UInt8]

    public init(term: UInt64 = 0, index: UInt64 = 0, type: EntryType = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.type = type
        self.data = data
    }

    /// Size used for all byte bounds: payload plus a fixed per-entry overhead.
    @inlinable public var sizeBytes: UInt64 { UInt64(data.count) + 24 }
    /// Payload size only (used for the uncommitted-proposal bound, so empty entries are free).
    @inlinable public var payloadSizeBytes: UInt64 { UInt64(data.count) }
}

/// State that must be persisted before messages are sent (raftpb.HardState).
public struct HardState: Sendable, Hashable {
    public var term: UInt64
    public var vote: UInt64
    public var commit: UInt64
    public init(term: UInt64 = 0, vote: UInt64 = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
    public var isEmpty: Bool { term == 0 && vote == 0 && commit == 0 }
}

/// Role of a node.
public enum StateRole: String, Sendable, Hashable {
    case follower, preCandidate, candidate, leader
}

/// Volatile state useful for logging and routing; need not be persisted.
public struct SoftState: Sendable, Hashable {
    public var lead: UInt64
    public var role: StateRole
    public init(lead: UInt64, role: StateRole) {
        self.lead = lead
        self.role = role
    }
}

/// Cluster membership as of some log index (raftpb.ConfState).
public struct ConfState: Sendable, Hashable {
    public var voters: [UInt64]
    public var learners: [UInt64]
    public init(voters: [UInt64] = [], learners: [UInt64] = []) {
        self.voters = voters.sorted()
        self.learners = learners.sorted()
    }
}

public struct SnapshotMetadata: Sendable, Hashable {
    public var confState: ConfState
    public var index: UInt64
    public var term: UInt64
    public init(confState: ConfState = ConfState(), index: UInt64 = 0, term: UInt64 = 0) {
        self.confState = confState
        self.index = index
        self.term = term
    }
}

/// A state-machine snapshot covering the log up to `metadata.index`.
public struct Snapshot: Sendable, Hashable {
    public var data: [UInt8]
    public var metadata: SnapshotMetadata
    public init(data: [UInt8] = [], metadata: SnapshotMetadata = SnapshotMetadata()) {
        self.data = data
        self.metadata = metadata
    }
    public var isEmpty: Bool { metadata.index == 0 }
}

/// Message kinds; numeric values equal raftpb.MessageType.
public enum MessageType: UInt8, Sendable, Hashable {
    case hup = 0              // local: start an election
    case beat = 1             // local: leader should send heartbeats
    case prop = 2             // proposal (local, or forwarded by a follower)
    case app = 3              // append entries
    case appResp = 4
    case vote = 5
    case voteResp = 6
    case snap = 7             // install snapshot
    case heartbeat = 8
    case heartbeatResp = 9
    case unreachable = 10     // local: transport could not reach `from`
    case snapStatus = 11      // local: snapshot delivery result for `from`
    case checkQuorum = 12     // local
    case transferLeader = 13  // `from` is the requested new leader
    case timeoutNow = 14
    case readIndex = 15       // entries[0].data carries the request context
    case readIndexResp = 16
    case preVote = 17
    case preVoteResp = 18

    /// Messages that only the local node may generate; `RawNode.step` rejects them from the network.
    public var isLocal: Bool {
        switch self {
        case .hup, .beat, .unreachable, .snapStatus, .checkQuorum: return true
        default: return false
        }
    }
    var isResponse: Bool {
        switch self {
        case .appResp, .voteResp, .heartbeatResp, .unreachable, .readIndexResp, .preVoteResp: return true
        default: return false
        }
    }
}

/// A Raft message (raftpb.Message).
public struct Message: Sendable, Hashable {
    public var type: MessageType
    public var to: UInt64
    public var from: UInt64
    public var term: UInt64
    /// Term of the entry at `index` (append), or of the candidate's last entry (vote).
    public var logTerm: UInt64
    public var index: UInt64
    public var entries: [Entry]
    public var commit: UInt64
    public var snapshot: Snapshot?
    public var reject: Bool
    public var rejectHint: UInt64
    public var context: [UInt8]

    public init(
        type: MessageType, to: UInt64 = 0, from: UInt64 = 0, term: UInt64 = 0, logTerm: UInt64 = 0,
        index: UInt64 = 0, entries: [Entry] = [], commit: UInt64 = 0, snapshot: Snapshot? = nil,
        reject: Bool = false, rejectHint: UInt64 = 0, context: [UInt8] = []
    ) {
        self.type = type
        self.to = to
        self.from = from
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.snapshot = snapshot
        self.reject = reject
        self.rejectHint = rejectHint
        self.context = context
    }
}

/// Answer to a `readIndex` request: the read identified by `requestContext` may be served once
/// the local state machine has applied at least `index`.
public struct ReadState: Sendable, Hashable {
    public var index: UInt64
    public var requestContext: [UInt8]
    public init(index: UInt64, requestContext: [UInt8]) {
        self.index = index
        self.requestContext = requestContext
    }
}

/// Result of reporting a snapshot transfer to `RawNode.reportSnapshot`.
public enum SnapshotStatus: Sendable { case finished, failed }

/// Errors surfaced by the library.
public enum RaftError: Error, Sendable, Equatable {
    /// The proposal (or conf change, read, transfer) was not accepted: no leader known, this node
    /// is being removed, a leadership transfer is in progress, a bound was reached, or a
    /// previous configuration change is not yet applied. The caller may retry.
    case proposalDropped(reason: String)
    /// A message type that only the library itself may generate arrived from the network.
    case localMessageFromNetwork(MessageType)
    /// Storage returned a log with a hole or out-of-order entries. Fatal: the node halts.
    case storageGap(detail: String)
    /// Storage failed in a way the protocol cannot handle. Fatal: the node halts.
    case storageFailure(detail: String)
    /// The node halted earlier because of a fatal error (carried here); it must be rebuilt.
    case halted(detail: String)
    /// The configuration is invalid (e.g. empty peer list on a fresh node).
    case invalidConfig(String)
}
