import EventLocking
import Foundation
import Synchronization
import Testing
import EventTestSupport

/// A lock provider a test runs under, built fresh for each test, with the
/// violations its debug layer (if any) reported.
struct ProviderCase: Sendable, CustomTestStringConvertible {
    let name: String
    private let factory: @Sendable (ViolationLog) -> any LockProvider

    var testDescription: String { name }

    private init(_ name: String, _ factory: @escaping @Sendable (ViolationLog) -> any LockProvider) {
        self.name = name
        self.factory = factory
    }

    /// A fresh provider; debug providers report into `log` instead of trapping.
    func make(reportingTo log: ViolationLog) -> any LockProvider { factory(log) }

    /// Providers whose locks exclude (every provider except `none`).
    static let exclusive: [ProviderCase] = [
        ProviderCase("mutex") { _ in MutexLockProvider() },
        ProviderCase("rcu") { _ in RCULockProvider() },
        ProviderCase("debug(mutex)") { log in DebugLockProvider(wrapping: MutexLockProvider(), onViolation: log.record) },
        ProviderCase("debug(rcu)") { log in DebugLockProvider(wrapping: RCULockProvider(), onViolation: log.record) },
    ]
}

/// How long the tests watch for something that must not happen (a blocked
/// thread getting through, an object reclaimed too early).
let quietWindow: Duration = .milliseconds(60)

/// A flag set when the object that owns it is deinitialized.
final class ReclaimFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
}

/// An object whose deinit the tests observe.
final class Tracked {
    let flag: ReclaimFlag
    init(_ flag: ReclaimFlag) { self.flag = flag }
    deinit { flag.set() }
}

/// A value shared between test threads and guarded by the lock under test
/// (so it has no synchronization of its own: the lock is what makes it safe).
final class Unguarded<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Runs `body` on a fresh thread and records an issue if it did not finish
/// within `timeout` (a deadlock or a wait that never ends).
func expectFinishes(
    timeout: Duration = .seconds(20), _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation, _ body: @escaping @Sendable () -> Void
) {
    if !runOnThread(timeout: timeout, body) {
        Issue.record(comment ?? "did not finish within \(timeout)", sourceLocation: sourceLocation)
    }
}
