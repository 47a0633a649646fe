import EventCore
import EventLocking

/// An owned base on epoll (no locks, one thread).
public func ownedEpollBase() throws -> EventBase {
    try EventBase(.init(method: .epoll, lockProvider: NoLockProvider()))
}

/// Runs `base`'s loop until `done()` holds (checked every 2 ms) or `timeout`
/// passes, whichever is first: the loop always ends. Returns `done()`.
@discardableResult
public func runLoop(_ base: EventBase, timeout: Duration, until done: @escaping @Sendable () -> Bool) throws -> Bool {
    let deadline = now() + timeout
    let ticker = try Event.timer(base: base, persist: true) { event, _ in
        if done() || now() >= deadline { try? event.base.loopBreak() }
    }
    try ticker.add(timeout: .milliseconds(2))
    try base.loop()
    try ticker.delete()
    return done()
}
