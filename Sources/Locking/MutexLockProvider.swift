/// The `mutex` provider: pthread mutexes, read/write locks and condition
/// variables (libevent's `evthread_use_pthreads`). Shared bases using it guard
/// every path with their base lock, as libevent does.
public struct MutexLockProvider: LockProvider {
    public init() {}
    public var name: String { "mutex" }
    public func makeLock(_ kind: LockKind) -> any EventLock { PthreadMutexLock(kind: kind) }
    public func makeReadWriteLock() -> any EventReadWriteLock { PthreadReadWriteLock() }
    public func makeCondition() -> any EventCondition { PthreadCondition() }
}
