#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock `LockedCondition`'s timed waits use.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A value guarded by a pthread mutex with a condition variable, for the
/// server's dedicated threads (WAL writer, Raft loop, applier), which block (and so must not use Swift concurrency).
///
/// `@unchecked Sendable`: `state` is only read or written while `mutex` is
/// held (inside `withLock`), and the condition is only waited on with it held.
public final class LockedCondition<State>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>
    private var state: State

    public init(_ initial: State) {
        state = initial
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        cond = .allocate(capacity: 1)
        cond.initialize(to: pthread_cond_t())
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` with the lock held.
    public func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Waits (lock held, sleeping on the condition) until `ready` is true, then runs `body`.
    public func withLock<R>(waitingUntil ready: (State) -> Bool, _ body: (inout State) -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(state) { pthread_cond_wait(cond, mutex) }
        return body(&state)
    }

    /// Waits until `ready` is true or `deadline` passes, then runs `body` (lock held).
    /// `deadline` is in `CLOCK_MONOTONIC` nanoseconds (see `monotonicNanoseconds()`).
    public func withLock<R>(waitingUntil ready: (State) -> Bool, deadline: UInt64, _ body: (inout State) -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        while !ready(state) {
            if pthread_cond_timedwait(cond, mutex, &ts) == ETIMEDOUT { break }
        }
        return body(&state)
    }

    /// Wakes every waiter. Call it after the state change, once `withLock` has returned.
    ///
    /// The mutex is not taken: a woken waiter would otherwise find it held and block on it a
    /// second time (seen as futex lock waits on the Raft loop under load). No wake-up is lost:
    /// the state changed under the mutex, so a waiter either saw the change when it checked its
    /// condition or was already waiting (it releases the mutex only inside `pthread_cond_wait`)
    /// when this runs. With no waiter, glibc returns without a system call.
    public func broadcast() {
        pthread_cond_broadcast(cond)
    }
}

private final class ThreadBody {
    let name: String?
    let body: () -> Void
    init(_ name: String?, _ body: @escaping () -> Void) {
        self.name = name
        self.body = body
    }
}

/// A joinable OS thread.
public struct OSThread: @unchecked Sendable {
    // pthread_t is an integer handle on Linux; it is only passed to pthread_join.
    let handle: pthread_t

    /// Starts `body` on a new thread. `name` (at most 15 bytes are kept, Linux's limit) is what
    /// `top -H`, `perf` and `/proc/PID/task/*/comm` show; without one the thread inherits its
    /// creator's name.
    public static func start(name: String? = nil, _ body: @escaping @Sendable () -> Void) -> OSThread {
        let box = Unmanaged.passRetained(ThreadBody(name, body)).toOpaque()
        var t = pthread_t()
        let r = pthread_create(
            &t, nil,
            { arg in
                let b = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
                if let name = b.name { _ = glibcSetThreadName(pthread_self(), String(decoding: name.utf8.prefix(15), as: UTF8.self)) }
                b.body()
                return nil
            }, box)
        precondition(r == 0, "pthread_create failed: \(r)")
        return OSThread(handle: t)
    }

    public func join() {
        pthread_join(handle, nil)
    }
}

// glibc's pthread_setname_np is a GNU extension the Glibc module does not import; the symbol
// has this C signature (pthread_t is an unsigned long on Linux).
@_silgen_name("pthread_setname_np")
private func glibcSetThreadName(_ thread: pthread_t, _ name: UnsafePointer<CChar>) -> Int32
