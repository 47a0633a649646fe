import Glibc

/// A pthread read/write lock with a stable heap address, every return code
/// checked. Made by ``MutexLockProvider``.
public final class PthreadReadWriteLock: EventReadWriteLock, @unchecked Sendable {
    // Only touched through pthread calls; the address is stable.
    private let rwlock: UnsafeMutablePointer<pthread_rwlock_t>

    public init() {
        rwlock = .allocate(capacity: 1)
        check(pthread_rwlock_init(rwlock, nil), "pthread_rwlock_init")
    }

    deinit {
        check(pthread_rwlock_destroy(rwlock), "pthread_rwlock_destroy")
        rwlock.deallocate()
    }

    public func readLock(at site: CallSite) {
        let rc = pthread_rwlock_rdlock(rwlock)
        if rc != 0 { lockFailure(rc, "pthread_rwlock_rdlock", site) }
    }

    public func writeLock(at site: CallSite) {
        let rc = pthread_rwlock_wrlock(rwlock)
        if rc != 0 { lockFailure(rc, "pthread_rwlock_wrlock", site) }
    }

    public func tryWriteLock(at site: CallSite) -> Bool {
        let rc = pthread_rwlock_trywrlock(rwlock)
        if rc == 0 { return true }
        if rc != EBUSY { lockFailure(rc, "pthread_rwlock_trywrlock", site) }
        return false
    }

    public func unlock(at site: CallSite) {
        let rc = pthread_rwlock_unlock(rwlock)
        if rc != 0 { lockFailure(rc, "pthread_rwlock_unlock", site) }
    }
}
