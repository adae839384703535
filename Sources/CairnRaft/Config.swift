/// Configuration of one Raft node. All durations are in ticks of the caller's logical clock.
public struct Config: Sendable {
    /// This node's id (non-zero).
    public var id: UInt64
    /// A follower that hears nothing for a randomized timeout in
    /// `[electionTimeoutTicks, 2*electionTimeoutTicks)` starts an election.
    public var electionTimeoutTicks: Int = 10
    /// The leader sends heartbeats every `heartbeatIntervalTicks` (must be < election timeout).
    public var heartbeatIntervalTicks: Int = 1
    /// Index already applied by the application (e.g. after restart from a snapshot).
    public var applied: UInt64 = 0
    /// Byte limit of the entries in one append message (at least one entry is always sent).
    public var maxSizePerMessageBytes: UInt64 = 1 << 20
    /// Per-follower window of in-flight append messages in replicate state.
    public var maxInflightMessages: Int = 256
    /// Per-follower byte limit of in-flight appends (0 = only the message-count window applies).
    public var maxInflightBytes: UInt64 = 64 << 20
    /// The leader drops proposals while uncommitted payload exceeds this (0 = unlimited).
    public var maxUncommittedEntriesSizeBytes: UInt64 = 64 << 20
    /// Byte limit of committed entries handed out in one `Ready` (at least one is handed out).
    public var maxCommittedSizePerReadyBytes: UInt64 = 64 << 20
    /// Limit of ReadIndex requests awaiting confirmation on the leader; further ones are dropped.
    public var maxPendingReadIndexRequests: Int = 4096
    /// A leader that has not heard from a quorum for an election timeout steps down (§6.2).
    public var checkQuorum: Bool = true
    /// Run a pre-vote round before incrementing the term (thesis §9.6).
    public var preVote: Bool = true
    public var readOnlyOption: ReadOnlyOption = .safe
    /// Followers drop proposals instead of forwarding them to the leader.
    public var disableProposalForwarding: Bool = false
    /// Seed of the election-timeout randomizer; give every node a different one.
    public var randomSeed: UInt64 = 0

    public init(id: UInt64) { self.id = id }

    func validate() throws {
        if id == 0 { throw RaftError.invalidConfig("id must not be 0") }
        if heartbeatIntervalTicks <= 0 { throw RaftError.invalidConfig("heartbeatIntervalTicks must be > 0") }
        if electionTimeoutTicks <= heartbeatIntervalTicks {
            throw RaftError.invalidConfig("electionTimeoutTicks must exceed heartbeatIntervalTicks")
        }
        if maxInflightMessages <= 0 { throw RaftError.invalidConfig("maxInflightMessages must be > 0") }
        if readOnlyOption == .leaseBased && !checkQuorum {
            throw RaftError.invalidConfig("lease-based reads require checkQuorum")
        }
    }
}
