import ArgumentParser
import EventCore
import EventLocking
import Glibc
import Synchronization

/// Cross-thread activation on one shared base: P producers activate their K
/// events round-robin while the loop thread runs the callbacks.
struct Threads: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Producers activating events on one shared base; delivered/s and latency.",
        discussion: """
            P producer threads each own K events and activate them round-robin, M times in total, \
            with at most -o activations outstanding (default K); at the cap a producer sleeps until \
            the loop's callbacks bring it down to half. Every activation carries a token, so \
            delivered + coalesced = P·M exactly; every 64th is stamped to measure the time from \
            activate to the callback's start. Summary: `threads lib=swiftevent locking=L \
            producers=P events=K activations=M delivered=D coalesced=C wall_ms=T per_sec=R \
            p50_us=X p99_us=Y`. The locking must be a shared provider (mutex, rcu, debug, debug-rcu).
            """)

    @Option(name: .short, help: "Producer threads.")
    var p = 2

    @Option(name: .short, help: "Events per producer.")
    var k = 64

    @Option(name: .customShort("M"), help: "Activations per producer.")
    var activations = 200_000

    @Option(name: .short, help: "Outstanding activations allowed per producer (default: k).")
    var o: Int?

    @OptionGroup var common: CommonOptions

    @Flag(name: .long, help: "Run once per provider: mutex, rcu, debug.")
    var eachProvider = false

    func validate() throws {
        guard p >= 1, k >= 1, activations >= 1 else { throw ValidationError("-p, -k and -M must be positive") }
        if let o, o < 1 { throw ValidationError("-o must be positive") }
    }

    func run() throws {
        let providers = eachProvider ? ["mutex", "rcu", "debug"] : [common.locking ?? "mutex"]
        for provider in providers { try runOnce(locking: provider) }
    }

    /// One producer's state, shared between it and the loop thread.
    final class Producer: @unchecked Sendable {
        // Atomics for the counters; `gate`/`opened` guard the sleep handshake.
        let outstanding = Atomic<Int>(0)
        let sleeping = Atomic<Bool>(false)
        let gate = PthreadMutexLock()
        let opened = PthreadCondition()
    }

    /// Per-event token count and latency stamp.
    final class Slot: @unchecked Sendable {
        // Atomics only.
        let tokens = Atomic<Int>(0)
        let stamp = Atomic<Int64>(0)
    }

    /// What the loop thread records (touched only by it).
    final class Tally: @unchecked Sendable {
        var callbacks = 0
        var delivered = 0
        var latencies: [Double] = []
    }

    func runOnce(locking: String) throws {
        let base = try EventBase(try common.configuration(locking: locking))
        guard base.threadingMode == .shared else { throw BenchError("threads needs a shared base; --locking \(locking) is owned") }
        // Plain copies for the closures (not the option wrappers).
        let activations = self.activations
        let k = self.k
        let p = self.p
        let cap = o ?? k
        let low = max(cap / 2, 0)
        let total = p * activations
        let producers = (0..<p).map { _ in Producer() }
        let slots = (0..<(p * k)).map { _ in Slot() }
        let tally = Tally()
        tally.latencies.reserveCapacity(total / 64 + 16)
        let events = try (0..<(p * k)).map { index in
            let slot = slots[index]
            let producer = producers[index / k]
            return try Event(base: base, fd: -1, flags: []) { _, _ in
                let stamp = slot.stamp.exchange(0, ordering: .acquiring)
                if stamp != 0 { tally.latencies.append(Double(monotonicNanoseconds() - stamp) / 1000) }
                let took = slot.tokens.exchange(0, ordering: .acquiringAndReleasing)
                tally.callbacks += 1
                tally.delivered += took
                // Sequentially consistent, paired with the producer's
                // sleeping-then-outstanding check: no lost wake-up.
                let left = producer.outstanding.subtract(took, ordering: .sequentiallyConsistent).newValue
                if left <= low && producer.sleeping.load(ordering: .sequentiallyConsistent) {
                    producer.gate.withLock { producer.sleeping.store(false, ordering: .releasing) }
                    producer.opened.signal()
                }
            }
        }
        let finished = Atomic<Int>(0)
        let done = try Event(base: base, fd: -1, flags: []) { event, _ in
            if tally.delivered == total {
                try? event.base.loopBreak()
            } else {
                try? event.activate()
            }
        }
        let start = now()
        let threads = (0..<p).map { index in
            BenchThread {
                let producer = producers[index]
                for activation in 0..<activations {
                    if producer.outstanding.load(ordering: .acquiring) >= cap {
                        producer.gate.withLock {
                            producer.sleeping.store(true, ordering: .sequentiallyConsistent)
                            while producer.outstanding.load(ordering: .sequentiallyConsistent) >= cap
                                && producer.sleeping.load(ordering: .sequentiallyConsistent)
                            {
                                _ = producer.opened.wait(on: producer.gate, timeout: .milliseconds(5))
                            }
                            producer.sleeping.store(false, ordering: .releasing)
                        }
                    }
                    let slotIndex = index * k + activation % k
                    let slot = slots[slotIndex]
                    if activation % 64 == 0 { slot.stamp.store(monotonicNanoseconds(), ordering: .releasing) }
                    slot.tokens.add(1, ordering: .acquiringAndReleasing)
                    producer.outstanding.add(1, ordering: .acquiringAndReleasing)
                    try? events[slotIndex].activate(.read)
                }
                if finished.add(1, ordering: .acquiringAndReleasing).newValue == p { try? done.activate() }
            }
        }
        try base.loop(.noExitOnEmpty)
        let elapsed = now() - start
        for thread in threads { thread.join() }
        try base.shutdown()
        guard tally.delivered == total else { throw BenchError("delivered \(tally.delivered) of \(total) activations") }
        let latencies = tally.latencies.sorted()
        var summary = Summary("threads")
        summary.add("lib", "swiftevent")
        summary.add("locking", base.lockProvider.name)
        summary.add("producers", p)
        summary.add("events", k)
        summary.add("activations", activations)
        summary.add("delivered", tally.delivered)
        summary.add("coalesced", total - tally.callbacks)
        summary.add("wall_ms", elapsed / 1000)
        summary.add("per_sec", Double(total) / (elapsed / 1e6))
        summary.add("p50_us", quantile(latencies, 0.5))
        summary.add("p99_us", quantile(latencies, 0.99))
        try summary.emit(csv: common.csv)
    }
}

func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// A joinable pthread for the benchmarks.
final class BenchThread: @unchecked Sendable {
    // `thread` is written in init and read by join, on the creating thread.
    private var thread = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Body(body))
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, box.toOpaque())
        precondition(rc == 0, "pthread_create failed")
    }

    func join() { pthread_join(thread, nil) }

    private final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}
