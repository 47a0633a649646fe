/// Kinds of exclusive lock a provider makes (libevent's `EVTHREAD_LOCKTYPE_*`).
public enum LockKind: Sendable, Hashable {
    /// Taking it twice from one thread is a programming error.
    case plain
    /// The holder may take it again; it is free once unlocked as often.
    case recursive
}

/// An exclusive lock made by a ``LockProvider`` (libevent's lock callbacks
/// `lock`/`unlock` from `evthread_set_lock_callbacks`).
public protocol EventLock: AnyObject, Sendable {
    var kind: LockKind { get }
    func lock(at site: CallSite)
    func unlock(at site: CallSite)
    /// Takes the lock if it is free; never blocks.
    func tryLock(at site: CallSite) -> Bool
}

extension EventLock {
    @inlinable
    public func lock(file: StaticString = #fileID, line: UInt = #line) {
        lock(at: CallSite(file: file, line: line))
    }

    @inlinable
    public func unlock(file: StaticString = #fileID, line: UInt = #line) {
        unlock(at: CallSite(file: file, line: line))
    }

    @inlinable
    public func tryLock(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        tryLock(at: CallSite(file: file, line: line))
    }

    /// Runs `body` with the lock held.
    @inlinable
    public func withLock<T, E: Error>(
        file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> T
    ) throws(E) -> T {
        let site = CallSite(file: file, line: line)
        lock(at: site)
        defer { unlock(at: site) }
        return try body()
    }
}

/// A read/write lock made by a ``LockProvider``: many readers or one writer.
public protocol EventReadWriteLock: AnyObject, Sendable {
    func readLock(at site: CallSite)
    func writeLock(at site: CallSite)
    /// Takes the write side if no reader or writer holds the lock.
    func tryWriteLock(at site: CallSite) -> Bool
    /// Releases whichever side the calling thread holds.
    func unlock(at site: CallSite)
}

extension EventReadWriteLock {
    @inlinable
    public func withReadLock<T, E: Error>(
        file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> T
    ) throws(E) -> T {
        let site = CallSite(file: file, line: line)
        readLock(at: site)
        defer { unlock(at: site) }
        return try body()
    }

    @inlinable
    public func withWriteLock<T, E: Error>(
        file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> T
    ) throws(E) -> T {
        let site = CallSite(file: file, line: line)
        writeLock(at: site)
        defer { unlock(at: site) }
        return try body()
    }
}

/// A condition variable made by a ``LockProvider`` (libevent's
/// `evthread_set_condition_callbacks`). Waits must hold `lock`, a lock made by
/// the same provider.
public protocol EventCondition: AnyObject, Sendable {
    /// Atomically releases `lock` and sleeps until signalled; holds `lock`
    /// again on return. Wake-ups may be spurious: wait in a loop.
    func wait(on lock: any EventLock, at site: CallSite)
    /// As ``wait(on:at:)`` but gives up after `timeout`; returns `false` when
    /// it timed out.
    func wait(on lock: any EventLock, timeout: Duration, at site: CallSite) -> Bool
    /// Wakes one waiter.
    func signal()
    /// Wakes every waiter.
    func broadcast()
}

extension EventCondition {
    @inlinable
    public func wait(on lock: any EventLock, file: StaticString = #fileID, line: UInt = #line) {
        wait(on: lock, at: CallSite(file: file, line: line))
    }

    @inlinable
    public func wait(
        on lock: any EventLock, timeout: Duration, file: StaticString = #fileID, line: UInt = #line
    ) -> Bool {
        wait(on: lock, timeout: timeout, at: CallSite(file: file, line: line))
    }
}
