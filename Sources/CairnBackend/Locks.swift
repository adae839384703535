#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// pthread-based locks. The storage modules use these rather than the
// Synchronization module's Mutex and Atomic: with cross-module optimization
// (which release builds use to specialize the generic keyspace), Swift 6.3
// miscompiled code inlined across modules that touched a Mutex — the memory
// backend's committed state read back as garbage — and crashed compiling a
// throwing initializer holding Atomics. A plain class around a pthread lock
// is opaque to that optimization and costs the same uncontended.

/// A mutual-exclusion lock. Lock and unlock happen on the same thread.
public final class Lock: @unchecked Sendable {
    // @unchecked: the pthread mutex is itself the synchronization.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A value guarded by a `Lock`.
public final class LockedValue<Value>: @unchecked Sendable {
    // @unchecked: `value` is only touched with `lock` held.
    private let lock = Lock()
    @exclusivity(unchecked) private var value: Value

    public init(_ value: Value) { self.value = value }

    @inline(__always)
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&value) }
    }

    /// A copy of the value.
    public var current: Value { withLock { $0 } }
}

/// A reader-writer lock. Each lock is released on the thread that took it.
public final class ReadWriteLock: @unchecked Sendable {
    // @unchecked: the pthread lock is itself the synchronization.
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    public init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    @inline(__always)
    public func withReadLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    @inline(__always)
    public func withWriteLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}
