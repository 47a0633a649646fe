/// The `none` provider: locks that do nothing, for owned bases (one thread
/// owns the base and no lock is taken on any of its paths). A base configured
/// with it is an owned base; a call from a foreign thread is caught.
public struct NoLockProvider: LockProvider {
    public init() {}
    public var name: String { "none" }
    public var providesMutualExclusion: Bool { false }
    public func makeLock(_ kind: LockKind) -> any EventLock { NoLock(kind: kind) }
    public func makeReadWriteLock() -> any EventReadWriteLock { NoReadWriteLock() }
    public func makeCondition() -> any EventCondition { NoCondition() }
    public func makeReadMostlyDomain() -> any ReadMostlyDomain { NoReadMostlyDomain() }
}

/// A lock that does nothing (single-threaded use only).
public final class NoLock: EventLock {
    public let kind: LockKind
    public init(kind: LockKind) { self.kind = kind }
    public func lock(at site: CallSite) {}
    public func unlock(at site: CallSite) {}
    public func tryLock(at site: CallSite) -> Bool { true }
}

/// A read/write lock that does nothing (single-threaded use only).
public final class NoReadWriteLock: EventReadWriteLock {
    public init() {}
    public func readLock(at site: CallSite) {}
    public func writeLock(at site: CallSite) {}
    public func tryWriteLock(at site: CallSite) -> Bool { true }
    public func unlock(at site: CallSite) {}
}

/// A condition that never sleeps: with one thread there is nobody to wait for,
/// so a wait returns at once (a spurious wake-up, which callers must handle).
public final class NoCondition: EventCondition {
    public init() {}
    public func wait(on lock: any EventLock, at site: CallSite) {}
    public func wait(on lock: any EventLock, timeout: Duration, at site: CallSite) -> Bool { false }
    public func signal() {}
    public func broadcast() {}
}

/// Single-threaded: no reader can overlap a writer, so retired objects go at once.
public final class NoReadMostlyDomain: ReadMostlyDomain {
    public init() {}
    public func enterReadSection() {}
    public func exitReadSection() {}
    public func synchronize() {}
    public func retire(_ object: AnyObject) {}
    public func barrier() {}
    public func registerCurrentThread() {}
    public func unregisterCurrentThread() {}
}
