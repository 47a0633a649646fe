/// What read-copy-update needs beyond lock and unlock: read-side sections,
/// grace periods, deferred reclamation and thread registration.
///
/// Readers bracket every access to published state with
/// ``enterReadSection()``/``exitReadSection()``. The writer publishes a new
/// version with a releasing store, then hands the old one to ``retire(_:)``,
/// which releases it once every section that could still see it has ended.
public protocol ReadMostlyDomain: AnyObject, Sendable {
    func enterReadSection()
    func exitReadSection()
    /// Waits until every read-side section that began before the call has
    /// ended. Must not be called inside a read-side section.
    func synchronize()
    /// Takes a reference to `object` and drops it after a grace period.
    /// Never blocks; may be called inside a read-side section.
    func retire(_ object: AnyObject)
    /// Waits until everything retired so far has been dropped.
    func barrier()
    /// Registers the calling thread as a reader (done implicitly on the first
    /// read-side section where the domain needs it).
    func registerCurrentThread()
    /// Unregisters the calling thread; it must not be inside a section.
    func unregisterCurrentThread()
}

extension ReadMostlyDomain {
    /// Runs `body` inside a read-side section.
    @inlinable
    public func withReadSection<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        enterReadSection()
        defer { exitReadSection() }
        return try body()
    }
}

/// The plain-lock default domain: read-side sections hold the read side of a
/// read/write lock, a grace period is one pass through the write side, and
/// retired objects are dropped the next time the write side is free.
/// Correct for any provider, but readers block writers; sections must not nest.
public final class LockedReadMostlyDomain: ReadMostlyDomain, @unchecked Sendable {
    // `pending` is guarded by `guardLock`; the rest is immutable.
    private let lock: any EventReadWriteLock
    private let guardLock: any EventLock
    private var pending: [AnyObject] = []

    public init(lock: any EventReadWriteLock, guardLock: any EventLock) {
        self.lock = lock
        self.guardLock = guardLock
    }

    public func enterReadSection() { lock.readLock(at: CallSite()) }
    public func exitReadSection() { lock.unlock(at: CallSite()) }

    public func synchronize() {
        lock.writeLock(at: CallSite())
        let reclaimed = takePending()
        lock.unlock(at: CallSite())
        withExtendedLifetime(reclaimed) {}
    }

    public func retire(_ object: AnyObject) {
        guardLock.withLock { pending.append(object) }
        // Reclaim only while no reader (the caller included) is in a section:
        // everything retired so far was unpublished before that moment.
        if lock.tryWriteLock(at: CallSite()) {
            let reclaimed = takePending()
            lock.unlock(at: CallSite())
            withExtendedLifetime(reclaimed) {}
        }
    }

    public func barrier() { synchronize() }
    public func registerCurrentThread() {}
    public func unregisterCurrentThread() {}

    /// The retired objects; called with the write side held, so no reader can
    /// still see any of them. They are dropped after the write side is released.
    private func takePending() -> [AnyObject] {
        guardLock.withLock {
            let all = pending
            pending.removeAll()
            return all
        }
    }
}
