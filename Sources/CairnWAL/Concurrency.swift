import CairnSync

/// A one-shot completion a synchronous appender blocks on.
final class Completion: Sendable {
    private enum Outcome { case pending, done(WALError?) }
    private let box = LockedCondition<Outcome>(.pending)

    func complete(_ error: WALError?) {
        box.withLock { $0 = .done(error) }
        box.broadcast()
    }

    func wait() -> WALError? {
        box.withLock(waitingUntil: { if case .pending = $0 { return false } else { return true } }) { state in
            if case .done(let e) = state { return e }
            return nil
        }
    }
}

