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
    /// (From the attoseconds, with 64-bit arithmetic below 18 s:
    /// `components` divides in 128 bits and costs ~190 instructions.)
    @inline(__always)
    var nanosecondsRoundedUp: Int64 {
        let atto = attoseconds
        if atto >= 0 && atto <= Int128(UInt64.max) {
            return Int64((UInt64(truncatingIfNeeded: atto) + 999_999_999) / 1_000_000_000)
        }
        let (quotient, remainder) = atto.quotientAndRemainder(dividingBy: 1_000_000_000)
        return Int64(truncatingIfNeeded: quotient) + (remainder > 0 ? 1 : 0)
    }

    /// Whether the duration is a valid timeout: 0...EventBase.maximumTimeout
    /// (compared in attoseconds, without building Durations).
    @inline(__always)
    var isValidTimeout: Bool {
        let atto = attoseconds
        return atto >= 0 && atto <= 3_153_600_000 * 1_000_000_000_000_000_000
    }
}
