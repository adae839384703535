#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A value guarded by a pthread mutex with a condition variable, for the
/// WAL's dedicated threads, which block (and so must not use Swift concurrency).
///
/// `@unchecked Sendable`: `state` is only read or written while `mutex` is
/// held (inside `withLock`), and the condition is only waited on with it held.
final class LockedCondition<State>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>
    private var state: State

    init(_ initial: State) {
        state = initial
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        cond = .allocate(capacity: 1)
        cond.initialize(to: pthread_cond_t())
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` with the lock held.
    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Waits (lock held, sleeping on the condition) until `ready` is true, then runs `body`.
    func withLock<R>(waitingUntil ready: (State) -> Bool, _ body: (inout State) -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(state) { pthread_cond_wait(cond, mutex) }
        return body(&state)
    }

    /// Wakes every waiter.
    func broadcast() {
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }
}

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

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// A joinable OS thread.
struct OSThread: @unchecked Sendable {
    // pthread_t is an integer handle on Linux; it is only passed to pthread_join.
    let handle: pthread_t

    static func start(_ body: @escaping @Sendable () -> Void) -> OSThread {
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var t = pthread_t()
        let r = pthread_create(
            &t, nil,
            { arg in
                let b = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
                b.body()
                return nil
            }, box)
        precondition(r == 0, "pthread_create failed: \(r)")
        return OSThread(handle: t)
    }

    func join() {
        pthread_join(handle, nil)
    }
}
