import EventCore
import EventLocking
import Glibc
import EventTestSupport

/// Helpers for the timer, loop-control, priority and introspection suites
/// (namespaced so they cannot clash with other suites' helpers).
enum TimerKit {
    /// Blocks the calling thread for at least `duration` (from a callback:
    /// blocks the loop, which is how these tests make a pass slow or late).
    static func pause(_ duration: Duration) {
        pause(until: now() + duration)
    }

    /// Blocks the calling thread until the monotonic clock reaches `deadline`.
    static func pause(until deadline: Duration) {
        while true {
            let left = deadline - now()
            if left <= .zero { return }
            let (seconds, attoseconds) = left.components
            var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
            nanosleep(&request, nil)
        }
    }

    /// An ordered record of values appended from callbacks.
    final class Recorder<Element: Sendable>: @unchecked Sendable {
        // Guarded by `lock`.
        private let lock = PthreadMutexLock()
        private var items: [Element] = []

        func append(_ item: Element) { lock.withLock { items.append(item) } }
        var values: [Element] { lock.withLock { items } }
        var count: Int { lock.withLock { items.count } }
    }

    /// The absolute (monotonic, as ``now()``) deadline `event` is scheduled
    /// for, estimated from ``Event/timeoutRemaining`` (an overestimate by the
    /// few nanoseconds between the two clock reads).
    static func scheduledDeadline(of event: Event) -> Duration? {
        guard let remaining = event.timeoutRemaining else { return nil }
        return now() + remaining
    }
}
