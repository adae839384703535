/// Majority arithmetic over one voter set. Membership changes are made one voter at a time
/// (see ConfChange.swift), so any two successive configurations share a majority and no joint
/// configuration is needed.
enum Quorum {
    static func size(_ voterCount: Int) -> Int { voterCount / 2 + 1 }

    /// The largest index acknowledged by a majority of `voters`, given each voter's match.
    static func committedIndex(voters: [UInt64], match: (UInt64) -> UInt64) -> UInt64 {
        if voters.isEmpty { return 0 }
        var ms = voters.map(match)
        ms.sort(by: >)
        return ms[size(voters.count) - 1]
    }

    enum VoteResult { case pending, won, lost }

    static func voteResult(voters: [UInt64], votes: [UInt64: Bool]) -> VoteResult {
        if voters.isEmpty { return .won }
        var granted = 0
        var rejected = 0
        for v in voters {
            if let g = votes[v] { if g { granted += 1 } else { rejected += 1 } }
        }
        let q = size(voters.count)
        if granted >= q { return .won }
        if rejected > voters.count - q { return .lost }
        return .pending
    }
}

/// Per-member progress plus the current configuration.
struct ProgressTracker {
    var progress: [UInt64: Progress] = [:]
    /// Sorted voter ids.
    private(set) var voters: [UInt64] = []
    private(set) var learners: [UInt64] = []
    var votes: [UInt64: Bool] = [:]
    let maxInflightMessages: Int
    let maxInflightBytes: UInt64

    init(maxInflightMessages: Int, maxInflightBytes: UInt64) {
        self.maxInflightMessages = maxInflightMessages
        self.maxInflightBytes = maxInflightBytes
    }

    var confState: ConfState { ConfState(voters: voters, learners: learners) }

    func isVoter(_ id: UInt64) -> Bool { progress[id].map { !$0.isLearner } ?? false }

    mutating func set(id: UInt64, learner: Bool, next: UInt64) {
        if var p = progress[id] {
            p.isLearner = learner
            progress[id] = p
        } else {
            var p = Progress(
                next: next, inflights: Inflights(capacity: maxInflightMessages, maxBytes: maxInflightBytes),
                isLearner: learner)
            p.recentActive = true
            progress[id] = p
        }
        rebuild()
    }

    mutating func remove(_ id: UInt64) {
        progress[id] = nil
        votes[id] = nil
        rebuild()
    }

    mutating func reset(to cs: ConfState, next: UInt64) {
        progress = [:]
        for v in cs.voters { set(id: v, learner: false, next: next) }
        for l in cs.learners { set(id: l, learner: true, next: next) }
        rebuild()
    }

    private mutating func rebuild() {
        voters = progress.filter { !$0.value.isLearner }.map(\.key).sorted()
        learners = progress.filter { $0.value.isLearner }.map(\.key).sorted()
    }

    func committed() -> UInt64 {
        Quorum.committedIndex(voters: voters) { progress[$0]?.match ?? 0 }
    }

    func voteResult() -> Quorum.VoteResult { Quorum.voteResult(voters: voters, votes: votes) }

    /// Whether a quorum of voters was recently active (`selfID` always counts).
    func quorumActive(selfID: UInt64) -> Bool {
        var votes: [UInt64: Bool] = [:]
        for v in voters { votes[v] = v == selfID || (progress[v]?.recentActive ?? false) }
        return Quorum.voteResult(voters: voters, votes: votes) == .won
    }

    /// Ids of all members except `selfID`, sorted (deterministic message order).
    func peers(except selfID: UInt64) -> [UInt64] {
        (voters + learners).filter { $0 != selfID }.sorted()
    }
}
