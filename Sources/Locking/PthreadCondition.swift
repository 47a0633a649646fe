import Glibc

/// A pthread condition variable on CLOCK_MONOTONIC (so timed waits are immune
/// to wall-clock changes), every return code checked. Waits take a
/// ``PthreadMutexLock`` (libevent's `evthread_posix_cond_wait`).
public final class PthreadCondition: EventCondition, @unchecked Sendable {
    // Only touched through pthread calls; the address is stable.
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        condition = .allocate(capacity: 1)
        var attributes = pthread_condattr_t()
        check(pthread_condattr_init(&attributes), "pthread_condattr_init")
        defer { pthread_condattr_destroy(&attributes) }
        check(pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC), "pthread_condattr_setclock")
        check(pthread_cond_init(condition, &attributes), "pthread_cond_init")
    }

    deinit {
        check(pthread_cond_destroy(condition), "pthread_cond_destroy")
        condition.deallocate()
    }

    public func wait(on lock: any EventLock, at site: CallSite) {
        let mutex = Self.mutex(of: lock, site)
        let rc = pthread_cond_wait(condition, mutex)
        if rc != 0 { lockFailure(rc, "pthread_cond_wait", site) }
    }

    public func wait(on lock: any EventLock, timeout: Duration, at site: CallSite) -> Bool {
        let mutex = Self.mutex(of: lock, site)
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let (seconds, attoseconds) = max(timeout, .zero).components
        var deadline = timespec()
        let nanoseconds = Int(now.tv_nsec) + Int(attoseconds / 1_000_000_000)
        deadline.tv_sec = now.tv_sec + Int(seconds) + nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        let rc = pthread_cond_timedwait(condition, mutex, &deadline)
        if rc == ETIMEDOUT { return false }
        if rc != 0 { lockFailure(rc, "pthread_cond_timedwait", site) }
        return true
    }

    public func signal() {
        check(pthread_cond_signal(condition), "pthread_cond_signal")
    }

    public func broadcast() {
        check(pthread_cond_broadcast(condition), "pthread_cond_broadcast")
    }

    private static func mutex(of lock: any EventLock, _ site: CallSite) -> UnsafeMutablePointer<pthread_mutex_t> {
        guard let pthreadLock = lock as? PthreadMutexLock else {
            fatalError("a PthreadCondition waits only on a PthreadMutexLock, got \(type(of: lock)) at \(site)")
        }
        return pthreadLock.mutex
    }
}
