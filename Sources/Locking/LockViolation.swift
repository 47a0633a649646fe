/// A misuse of a lock that the ``DebugLockProvider`` caught, with the call
/// sites involved (libevent's lock debugging, `evthread_enable_lock_debugging`).
public struct LockViolation: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// A thread unlocked a lock it does not hold.
        case unlockByNonHolder
        /// The holder of a non-recursive lock took it again.
        case recursionOnNonRecursiveLock
        /// A thread waited on a condition without holding its lock.
        case conditionWaitWithoutLock
        /// Two locks were taken in both orders: a deadlock waiting to happen.
        case lockOrderInversion
    }

    public let kind: Kind
    /// Where the misuse happened.
    public let site: CallSite
    /// The other call site involved: where the holder took the lock, or, for
    /// an inversion, where the opposite order was first seen.
    public let otherSite: CallSite?
    public let message: String

    public var description: String { message }
}
