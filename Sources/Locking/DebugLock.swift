/// A lock of the ``DebugLockProvider``: the wrapped lock plus a record of its
/// holder, checked on every lock, unlock and condition wait.
final class DebugLock: EventLock, @unchecked Sendable {
    // `holder`, `holderSite`, `depth` and `uncountedDepth` are guarded by
    // `monitor.withState`; `inner` and `monitor` are immutable.
    let inner: any EventLock
    private let monitor: LockMonitor
    private var holder: ThreadIdentity?
    private var holderSite: CallSite?
    /// Times the holder has taken it (inner takes included).
    private var depth = 0
    /// Recursive takes of a plain lock that were reported and not passed on.
    private var uncountedDepth = 0

    var kind: LockKind { inner.kind }

    init(wrapping inner: any EventLock, monitor: LockMonitor) {
        self.inner = inner
        self.monitor = monitor
    }

    deinit { monitor.forget(self) }

    private var name: String { "lock \(ObjectIdentifier(self))" }

    func lock(at site: CallSite) {
        let me = ThreadIdentity.current
        let recursion: LockViolation? = monitor.withState {
            guard holder == me else { return nil }
            if kind == .recursive { return nil }
            uncountedDepth += 1
            return LockViolation(
                kind: .recursionOnNonRecursiveLock, site: site, otherSite: holderSite,
                message: "recursive lock of a non-recursive \(name) at \(site); \(me) already holds it since \(holderSite.map(String.init(describing:)) ?? "?")")
        }
        if let recursion {
            monitor.report(recursion)
            return
        }
        let alreadyHeld = monitor.withState { holder == me }
        if !alreadyHeld {
            for inversion in monitor.willAcquire(self, name: name, at: site) { monitor.report(inversion) }
        }
        inner.lock(at: site)
        took(at: site, by: me, first: !alreadyHeld)
    }

    func tryLock(at site: CallSite) -> Bool {
        let me = ThreadIdentity.current
        let alreadyHeld = monitor.withState { holder == me }
        if alreadyHeld && kind == .plain { return false }
        guard inner.tryLock(at: site) else { return false }
        took(at: site, by: me, first: !alreadyHeld)
        return true
    }

    func unlock(at site: CallSite) {
        let me = ThreadIdentity.current
        enum Outcome { case foreign(LockViolation), keep, release, releaseLast }
        let outcome: Outcome = monitor.withState {
            guard holder == me else {
                let who = holder.map { "held by \($0) since \(holderSite.map(String.init(describing:)) ?? "?")" } ?? "not held"
                return .foreign(
                    LockViolation(
                        kind: .unlockByNonHolder, site: site, otherSite: holderSite,
                        message: "\(me) unlocked \(name) at \(site), which it does not hold (\(who))"))
            }
            if uncountedDepth > 0 {
                uncountedDepth -= 1
                return .keep
            }
            depth -= 1
            if depth > 0 { return .release }
            holder = nil
            holderSite = nil
            return .releaseLast
        }
        switch outcome {
        case .foreign(let violation): monitor.report(violation)
        case .keep: break
        case .release: inner.unlock(at: site)
        case .releaseLast:
            monitor.didRelease(self)
            inner.unlock(at: site)
        }
    }

    private func took(at site: CallSite, by me: ThreadIdentity, first: Bool) {
        monitor.withState {
            holder = me
            if first { holderSite = site }
            depth += 1
        }
        if first { monitor.didAcquire(self, at: site) }
    }

    /// Condition support: checks the caller holds the lock and marks it free
    /// for the duration of a wait. Returns the violation if it does not hold it.
    func beginWait(at site: CallSite) -> (violation: LockViolation?, depth: Int, site: CallSite?) {
        let me = ThreadIdentity.current
        return monitor.withState {
            guard holder == me else {
                return (
                    LockViolation(
                        kind: .conditionWaitWithoutLock, site: site, otherSite: holderSite,
                        message: "\(me) waited on a condition at \(site) without holding its \(name)"
                            + (holder.map { " (held by \($0) since \(holderSite.map(String.init(describing:)) ?? "?"))" } ?? "")),
                    0, nil
                )
            }
            let saved = (depth, holderSite)
            holder = nil
            holderSite = nil
            depth = 0
            return (nil, saved.0, saved.1)
        }
    }

    func endWait(depth savedDepth: Int, site savedSite: CallSite?) {
        let me = ThreadIdentity.current
        monitor.withState {
            holder = me
            holderSite = savedSite
            depth = savedDepth
        }
    }
}

/// A read/write lock of the ``DebugLockProvider``: reports an unlock by a
/// thread that holds neither side and a write take by a thread already holding it.
final class DebugReadWriteLock: EventReadWriteLock, @unchecked Sendable {
    // `readers` and `writer` are guarded by `monitor.withState`.
    private let inner: any EventReadWriteLock
    private let monitor: LockMonitor
    private var readers: [ThreadIdentity: Int] = [:]
    private var writer: (thread: ThreadIdentity, site: CallSite)?

    init(wrapping inner: any EventReadWriteLock, monitor: LockMonitor) {
        self.inner = inner
        self.monitor = monitor
    }

    func readLock(at site: CallSite) {
        inner.readLock(at: site)
        let me = ThreadIdentity.current
        monitor.withState { readers[me, default: 0] += 1 }
    }

    func writeLock(at site: CallSite) {
        let me = ThreadIdentity.current
        let violation: LockViolation? = monitor.withState {
            if let writer, writer.thread == me {
                return LockViolation(
                    kind: .recursionOnNonRecursiveLock, site: site, otherSite: writer.site,
                    message: "\(me) took the write side of a read/write lock at \(site) while holding it since \(writer.site)")
            }
            if readers[me] != nil {
                return LockViolation(
                    kind: .recursionOnNonRecursiveLock, site: site, otherSite: nil,
                    message: "\(me) took the write side of a read/write lock at \(site) while holding its read side")
            }
            return nil
        }
        if let violation {
            monitor.report(violation)
            return
        }
        inner.writeLock(at: site)
        monitor.withState { writer = (me, site) }
    }

    func tryWriteLock(at site: CallSite) -> Bool {
        let me = ThreadIdentity.current
        guard inner.tryWriteLock(at: site) else { return false }
        monitor.withState { writer = (me, site) }
        return true
    }

    func unlock(at site: CallSite) {
        let me = ThreadIdentity.current
        let violation: LockViolation? = monitor.withState {
            if let writer, writer.thread == me {
                self.writer = nil
                return nil
            }
            if let count = readers[me] {
                readers[me] = count > 1 ? count - 1 : nil
                return nil
            }
            return LockViolation(
                kind: .unlockByNonHolder, site: site, otherSite: writer?.site,
                message: "\(me) unlocked a read/write lock at \(site) that it does not hold")
        }
        if let violation {
            monitor.report(violation)
            return
        }
        inner.unlock(at: site)
    }
}

/// A condition of the ``DebugLockProvider``: reports a wait by a thread that
/// does not hold the lock (and then returns at once instead of waiting).
final class DebugCondition: EventCondition, @unchecked Sendable {
    // Immutable after init.
    private let inner: any EventCondition
    private let monitor: LockMonitor

    init(wrapping inner: any EventCondition, monitor: LockMonitor) {
        self.inner = inner
        self.monitor = monitor
    }

    func wait(on lock: any EventLock, at site: CallSite) {
        _ = wait(on: lock, timeout: nil, at: site)
    }

    func wait(on lock: any EventLock, timeout: Duration, at site: CallSite) -> Bool {
        wait(on: lock, timeout: Optional(timeout), at: site)
    }

    private func wait(on lock: any EventLock, timeout: Duration?, at site: CallSite) -> Bool {
        guard let debugLock = lock as? DebugLock else {
            fatalError("a debug condition waits only on a debug lock, got \(type(of: lock)) at \(site)")
        }
        let state = debugLock.beginWait(at: site)
        if let violation = state.violation {
            monitor.report(violation)
            return true
        }
        defer { debugLock.endWait(depth: state.depth, site: state.site) }
        if let timeout {
            return inner.wait(on: debugLock.inner, timeout: timeout, at: site)
        }
        inner.wait(on: debugLock.inner, at: site)
        return true
    }

    func signal() { inner.signal() }
    func broadcast() { inner.broadcast() }
}
