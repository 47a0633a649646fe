import EventLocking
import Foundation
import Synchronization
import Testing

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

/// Collects the violations a debug provider reports.
final class ViolationLog: Sendable {
    private let storage = Mutex<[LockViolation]>([])

    var record: @Sendable (LockViolation) -> Void {
        { [self] violation in storage.withLock { $0.append(violation) } }
    }

    var all: [LockViolation] { storage.withLock { $0 } }
}

/// A one-shot event a thread can wait for with a deadline.
final class Latch: @unchecked Sendable {
    // `isOpen` is guarded by `condition`.
    private let condition = NSCondition()
    private var isOpen = false

    func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until opened; `false` if `timeout` passed first.
    @discardableResult
    func wait(timeout: Duration = .seconds(10)) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while !isOpen {
            if !condition.wait(until: deadline) { return isOpen }
        }
        return true
    }

    var isOpenNow: Bool {
        condition.lock()
        defer { condition.unlock() }
        return isOpen
    }
}

/// A thread started for a test; `join` waits with a deadline so a stuck
/// thread fails the test instead of hanging it.
final class TestThread: Sendable {
    private let finished = Latch()

    init(_ body: @escaping @Sendable () -> Void) {
        let finished = self.finished
        let thread = Thread {
            body()
            finished.open()
        }
        thread.start()
    }

    /// `true` once the body has returned; `false` if `timeout` passed first.
    func join(timeout: Duration = .seconds(20)) -> Bool { finished.wait(timeout: timeout) }

    var hasFinished: Bool { finished.isOpenNow }
}

/// Runs `body` on a fresh thread and waits for it; `false` if it did not
/// finish within `timeout` (a deadlock), so the test fails instead of hanging.
func runOnThread(timeout: Duration = .seconds(20), _ body: @escaping @Sendable () -> Void) -> Bool {
    TestThread(body).join(timeout: timeout)
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(10), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(1_000)
    }
    return condition()
}

/// How long the tests watch for something that must not happen (a blocked
/// thread getting through, an object reclaimed too early).
let quietWindow: Duration = .milliseconds(60)

func pause(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    usleep(UInt32(seconds) * 1_000_000 + UInt32(attoseconds / 1_000_000_000_000))
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

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

/// A Boolean shared between threads.
final class AtomicFlag: Sendable {
    private let storage: Atomic<Bool>
    init(_ value: Bool = false) { storage = Atomic(value) }
    var value: Bool {
        get { storage.load(ordering: .sequentiallyConsistent) }
        set { storage.store(newValue, ordering: .sequentiallyConsistent) }
    }
}

/// A counter shared between threads.
final class AtomicCounter: Sendable {
    private let storage = Atomic<Int>(0)
    func increment() { storage.add(1, ordering: .relaxed) }
    var value: Int { storage.load(ordering: .sequentiallyConsistent) }
}
