import Logging

/// The `debug` provider: wraps another provider and checks every use of its
/// locks and conditions. It reports an unlock by a thread that does not hold
/// the lock, recursion on a non-recursive lock, a condition wait without the
/// lock, and lock-order inversions between two locks, each with both call
/// sites. Shared bases behave as with the wrapped provider.
///
/// After reporting, it keeps the program out of undefined behaviour where it
/// can: a foreign unlock is ignored, a recursive take of a plain lock is
/// counted instead of deadlocking, a wait without the lock returns at once.
public struct DebugLockProvider: LockProvider {
    public let wrapped: any LockProvider
    let monitor: LockMonitor

    /// The default reaction to a violation: log it and stop the program.
    public static let trap: @Sendable (LockViolation) -> Void = { violation in
        Logger(label: "SwiftEvent.locking").critical("\(violation.message)")
        fatalError("SwiftEvent lock debugging: \(violation.message)")
    }

    public init(
        wrapping wrapped: any LockProvider = MutexLockProvider(),
        onViolation: @escaping @Sendable (LockViolation) -> Void = DebugLockProvider.trap
    ) {
        self.wrapped = wrapped
        self.monitor = LockMonitor(onViolation: onViolation)
    }

    public var name: String { "debug(\(wrapped.name))" }
    public var providesMutualExclusion: Bool { wrapped.providesMutualExclusion }
    public var readPath: ReadPathStrategy { wrapped.readPath }

    public func makeLock(_ kind: LockKind) -> any EventLock {
        DebugLock(wrapping: wrapped.makeLock(kind), monitor: monitor)
    }

    public func makeReadWriteLock() -> any EventReadWriteLock {
        DebugReadWriteLock(wrapping: wrapped.makeReadWriteLock(), monitor: monitor)
    }

    public func makeCondition() -> any EventCondition {
        DebugCondition(wrapping: wrapped.makeCondition(), monitor: monitor)
    }

    public func makeReadMostlyDomain() -> any ReadMostlyDomain { wrapped.makeReadMostlyDomain() }
}
