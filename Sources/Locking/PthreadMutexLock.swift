import Glibc

/// A pthread mutex with a stable heap address, every return code checked
/// (libevent's `evthread_posix_lock`). Made by ``MutexLockProvider``.
public final class PthreadMutexLock: EventLock, @unchecked Sendable {
    // The pthread_mutex_t is only touched through pthread calls, which are
    // thread-safe; its address never changes while the object lives.
    @usableFromInline
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    public let kind: LockKind

    public init(kind: LockKind = .plain) {
        self.kind = kind
        mutex = .allocate(capacity: 1)
        var attributes = pthread_mutexattr_t()
        check(pthread_mutexattr_init(&attributes), "pthread_mutexattr_init")
        defer { pthread_mutexattr_destroy(&attributes) }
        if kind == .recursive {
            check(
                pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE)),
                "pthread_mutexattr_settype")
        }
        check(pthread_mutex_init(mutex, &attributes), "pthread_mutex_init")
    }

    deinit {
        check(pthread_mutex_destroy(mutex), "pthread_mutex_destroy")
        mutex.deallocate()
    }

    @inlinable
    public func lock(at site: CallSite) {
        let rc = pthread_mutex_lock(mutex)
        if rc != 0 { lockFailure(rc, "pthread_mutex_lock", site) }
    }

    @inlinable
    public func unlock(at site: CallSite) {
        let rc = pthread_mutex_unlock(mutex)
        if rc != 0 { lockFailure(rc, "pthread_mutex_unlock", site) }
    }

    @inlinable
    public func tryLock(at site: CallSite) -> Bool {
        let rc = pthread_mutex_trylock(mutex)
        if rc == 0 { return true }
        if rc != EBUSY { lockFailure(rc, "pthread_mutex_trylock", site) }
        return false
    }
}

@usableFromInline
func lockFailure(_ rc: Int32, _ call: String, _ site: CallSite) -> Never {
    fatalError("\(call) failed with error \(rc) (\(String(cString: strerror(rc)))) at \(site)")
}

func check(_ rc: Int32, _ call: String, file: StaticString = #fileID, line: UInt = #line) {
    if rc != 0 { lockFailure(rc, call, CallSite(file: file, line: line)) }
}
