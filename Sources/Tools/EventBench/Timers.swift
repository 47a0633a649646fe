import ArgumentParser
import EventCore
import Glibc

/// Timer costs: scheduling, cancelling and firing many timers.
struct Timers: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Timer adds, cancels and fires per second, in the heap and on a common timeout.",
        discussion: """
            Each round makes n timer events (untimed), then times four phases: adding them with \
            pseudo-random timeouts between 1 and 60 s (the heap), deleting them all in the same \
            pseudo-random order, adding them all to one common 30 s timeout and deleting them again, \
            and finally adding them with timeouts between 0 and 100 us, waiting 2 ms (untimed) and \
            running the loop until every timer has fired. Rates are n / the median time of a phase. \
            Summary: `timers lib=swiftevent backend=B locking=L n=N rounds=R adds_per_s=A \
            cancels_per_s=C common_adds_per_s=CA common_cancels_per_s=CC fires_per_s=F`.
            """)

    @Option(name: .short, help: "Timers.")
    var n = 100_000

    @Option(name: .short, help: "Rounds.")
    var r = 5

    @OptionGroup var common: CommonOptions

    @Flag(name: .long, help: "Print only the summary line.")
    var quiet = false

    func validate() throws {
        guard n >= 1, r >= 1 else { throw ValidationError("-n and -r must be at least 1") }
    }

    /// Timers fired so far (touched only by the loop thread).
    final class Fired: @unchecked Sendable {
        var count = 0
    }

    func run() throws {
        let base = try EventBase(try common.configuration())
        let fired = Fired()
        let events = try (0..<n).map { _ in try Event.timer(base: base) { _, _ in fired.count += 1 } }
        let order = shuffledIndices(n, seed: 0x5EED)
        // The same pseudo-random timeouts as the C programs (an LCG, not libc's rand).
        var random: UInt64 = 42
        let longTimeouts = (0..<n).map { _ in Duration.microseconds(1_000_000 + Int64(nextRandom(&random) % 59_000_000)) }
        let shortTimeouts = (0..<n).map { _ in Duration.microseconds(Int64(nextRandom(&random) % 100)) }
        let shared = try base.commonTimeout(.seconds(30))
        var adds: [Double] = [], cancels: [Double] = [], commonAdds: [Double] = [], commonCancels: [Double] = []
        var fires: [Double] = []
        for round in 0..<r {
            var start = now()
            for i in 0..<n { try events[i].add(timeout: longTimeouts[i]) }
            adds.append(now() - start)
            start = now()
            for i in order { try events[i].delete() }
            cancels.append(now() - start)
            start = now()
            for event in events { try event.add(timeout: shared) }
            commonAdds.append(now() - start)
            start = now()
            for i in order { try events[i].delete() }
            commonCancels.append(now() - start)
            fired.count = 0
            for i in 0..<n { try events[i].add(timeout: shortTimeouts[i]) }
            usleep(2000)
            start = now()
            try base.dispatch()
            fires.append(now() - start)
            guard fired.count == n else { throw BenchError("only \(fired.count) of \(n) timers fired") }
            if !quiet {
                print(
                    "round \(round): add \(formatted(adds.last!)) us, cancel \(formatted(cancels.last!)) us, "
                        + "common add \(formatted(commonAdds.last!)) us, common cancel \(formatted(commonCancels.last!)) us, "
                        + "fire \(formatted(fires.last!)) us")
            }
        }
        try base.shutdown()
        func rate(_ samples: [Double]) -> Double { (Double(n) / (median(samples) / 1e6)).rounded() }
        var summary = Summary("timers")
        summary.add("lib", "swiftevent")
        summary.add("backend", base.method)
        summary.add("locking", base.lockProvider.name)
        summary.add("n", n)
        summary.add("rounds", r)
        summary.add("adds_per_s", Int(rate(adds)))
        summary.add("cancels_per_s", Int(rate(cancels)))
        summary.add("common_adds_per_s", Int(rate(commonAdds)))
        summary.add("common_cancels_per_s", Int(rate(commonCancels)))
        summary.add("fires_per_s", Int(rate(fires)))
        try summary.emit(csv: common.csv)
    }
}

/// Knuth's MMIX LCG, high bits (the C benchmarks use the same).
func nextRandom(_ state: inout UInt64) -> UInt64 {
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return state >> 33
}

/// 0..<count in a reproducible pseudo-random order (Fisher–Yates).
func shuffledIndices(_ count: Int, seed: UInt64) -> [Int] {
    var indices = Array(0..<count)
    var state = seed
    var i = count - 1
    while i > 0 {
        let j = Int(nextRandom(&state) % UInt64(i + 1))
        indices.swapAt(i, j)
        i -= 1
    }
    return indices
}
