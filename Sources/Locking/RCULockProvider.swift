/// The `rcu` provider: liburcu (memb flavour) for the read-mostly state of a
/// shared base, pthread primitives for everything that still needs a lock.
///
/// Under it a shared base changes what it does, not just which lock it takes:
/// the loop thread is the only writer of its registration tables, other
/// threads hand it changes and activations through a wait-free queue,
/// lookups from any thread run inside read-side sections without a lock, and
/// replaced tables and unregistered events are reclaimed after a grace
/// period (`call_rcu`). ARCHITECTURE.md lists every path.
public struct RCULockProvider: LockProvider {
    public init() {}
    public var name: String { "rcu" }
    public var readPath: ReadPathStrategy { .readCopyUpdate }
    public func makeLock(_ kind: LockKind) -> any EventLock { PthreadMutexLock(kind: kind) }
    public func makeReadWriteLock() -> any EventReadWriteLock { PthreadReadWriteLock() }
    public func makeCondition() -> any EventCondition { PthreadCondition() }
    public func makeReadMostlyDomain() -> any ReadMostlyDomain { URCUDomain.shared }
}
