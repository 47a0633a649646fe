import Glibc

/// Monotonic time in nanoseconds (CLOCK_MONOTONIC through the vDSO), the
/// time base of every deadline.
enum MonotonicClock {
    @inline(__always)
    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    /// Wall-clock time in nanoseconds since the epoch.
    static func wallClock() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }
}

extension Duration {
    /// Whole nanoseconds, rounded up, for a duration already checked to be
    /// within 0...EventBase.maximumTimeout.
    var nanosecondsRoundedUp: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + (attoseconds + 999_999_999) / 1_000_000_000
    }
}
