import ArgumentParser
import CAllocationCounter
import EventCore
import Glibc
import Synchronization

/// Heap allocations per event in steady state, counted by interposing malloc
/// (the CAllocationCounter target) for the whole process.
struct Allocations: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Heap allocations per dispatched event or actor call in steady state (malloc counted process-wide).",
        discussion: """
            event-bench interposes malloc, calloc, realloc, posix_memalign, aligned_alloc and the \
            rest for the whole process (every thread, every library). For each lock provider, after \
            a warm-up, it counts the allocations made while: -i dispatches of 64 persistent read \
            events on socketpairs (io); -i fires of a persistent zero-interval timer, each a re-arm \
            (timer); -i activations of existing events, made from a producer thread on a shared base \
            or from the loop thread on an owned one (activate); -i awaited calls of an actor whose \
            executor is the base, from a task that prefers a second base with the same provider as \
            its task executor (task-hop: every hop is a job on one of the two bases) and from a \
            task on Swift's global executor (actor-hop: reported, not checked, because libdispatch \
            allocates when the reply is enqueued on the global executor from the loop thread). \
            Summary per case: `allocations lib=swiftevent locking=L case=C events=N allocs=A \
            allocs_per_event=X`. With --check the command fails when any checked case allocates.
            """)

    @Option(name: .short, help: "Events counted per case.")
    var i = 100_000

    @Option(name: .long, parsing: .upToNextOption, help: "Lock providers to measure.")
    var providers: [String] = ["none", "mutex", "rcu"]

    @OptionGroup var common: CommonOptions

    @Flag(name: .long, help: "Exit with status 1 if any checked case allocates in steady state.")
    var check = false

    func validate() throws {
        guard i >= 1 else { throw ValidationError("-i must be positive") }
    }

    func run() throws {
        // The counter must see allocations, or every zero below means nothing.
        let probe = counting { _ = [Int](repeating: 1, count: 1 + Int(se_allocations_count() % 2)) }
        guard probe >= 1 else { throw BenchError("the malloc interposer counted no allocation for an array; not linked?") }
        var failed: [String] = []
        for provider in providers {
            let base = try EventBase(try common.configuration(locking: provider))
            let cases: [(name: String, checked: Bool, measure: (EventBase) throws -> (Int, UInt64))] = [
                ("io", true, io), ("timer", true, timer), ("activate", true, activate),
                ("task-hop", true, { try taskHop($0, locking: provider) }), ("actor-hop", false, actorHop),
            ]
            for (name, checked, measure) in cases {
                let (events, allocations) = try measure(base)
                var summary = Summary("allocations")
                summary.add("lib", "swiftevent")
                summary.add("backend", base.method)
                summary.add("locking", base.lockProvider.name)
                summary.add("case", name)
                summary.add("events", events)
                summary.add("allocs", allocations)
                summary.add("allocs_per_event", String(Double(allocations) / Double(events)))
                try summary.emit(csv: common.csv)
                if checked && allocations > 0 { failed.append("\(base.lockProvider.name)/\(name)") }
            }
            try base.shutdown()
        }
        if check && !failed.isEmpty {
            print("allocations in steady state: \(failed.joined(separator: ", "))")
            throw ExitCode(1)
        }
    }

    /// Allocations made by `body` (process-wide).
    func counting(_ body: () throws -> Void) rethrows -> UInt64 {
        let before = se_allocations_count()
        se_allocations_set_counting(1)
        defer { se_allocations_set_counting(0) }
        try body()
        return se_allocations_count() - before
    }

    /// Loop-thread state (touched only by the thread running the loop).
    final class Tally: @unchecked Sendable {
        var count = 0
        var limit = 0
    }

    func io(_ base: EventBase) throws -> (Int, UInt64) {
        let pairs = 64
        let ring = try Ring(count: pairs, usePipes: false)
        defer { ring.close() }
        let tally = Tally()
        let events = try (0..<pairs).map { index in
            try Event(base: base, fd: ring.readEnd(index), flags: [.read, .persist]) { event, _ in
                var byte: UInt8 = 0
                _ = recv(event.fd, &byte, 1, 0)
                tally.count += 1
            }
        }
        for event in events { try event.add() }
        func rounds(_ count: Int) throws {
            var byte: UInt8 = 1
            for _ in 0..<(count / pairs) {
                for index in 0..<pairs { _ = send(ring.writeEnd(index), &byte, 1, 0) }
                let target = tally.count + pairs
                while tally.count < target { try base.loop(.once) }
            }
        }
        try rounds(max(i / 10, 1000))
        tally.count = 0
        let allocations = try counting { try rounds(i) }
        for event in events { try event.delete() }
        return (tally.count, allocations)
    }

    func timer(_ base: EventBase) throws -> (Int, UInt64) {
        let tally = Tally()
        let event = try Event.timer(base: base, persist: true) { event, _ in
            tally.count += 1
            if tally.count == tally.limit { try? event.base.loopBreak() }
        }
        try event.add(timeout: .zero)
        func fires(_ count: Int) throws {
            tally.count = 0
            tally.limit = count
            try base.loop(.noExitOnEmpty)
        }
        try fires(max(i / 10, 1000))
        let allocations = try counting { try fires(i) }
        try event.delete()
        return (tally.count, allocations)
    }

    func activate(_ base: EventBase) throws -> (Int, UInt64) {
        let tally = Tally()
        let k = 16
        let delivered = Atomic<Int>(0)
        let events = try (0..<k).map { _ in
            try Event(base: base, fd: -1, flags: []) { event, _ in
                tally.count += 1
                delivered.add(1, ordering: .releasing)
                if tally.count == tally.limit { try? event.base.loopBreak() }
            }
        }
        guard base.threadingMode == .shared else {
            // Owned base: activations come from the loop thread itself.
            func activations(_ count: Int) throws {
                tally.count = 0
                tally.limit = count
                var made = 0
                while made < count {
                    let batch = min(k, count - made)
                    for index in 0..<batch { try events[index].activate() }
                    made += batch
                    try base.loop(.nonBlocking)
                }
            }
            try activations(max(i / 10, 1000))
            let allocations = try counting { try activations(i) }
            return (tally.count, allocations)
        }
        // Shared base: a producer thread (made before counting starts)
        // activates while the loop thread dispatches, at most k outstanding.
        let go = Atomic<Int>(0)  // number of activations the producer should make next
        let producer = BenchThread {
            var made = 0
            while true {
                let target = go.load(ordering: .acquiring)
                if target < 0 { return }
                if made >= target {
                    sched_yield()
                    continue
                }
                while delivered.load(ordering: .acquiring) + k <= made { sched_yield() }
                try? events[made % k].activate(.read)
                made += 1
            }
        }
        var total = 0
        func activations(_ count: Int) throws {
            tally.count = 0
            tally.limit = count
            total += count
            go.store(total, ordering: .releasing)
            try base.loop(.noExitOnEmpty)
        }
        try activations(max(i / 10, 1000))
        let allocations = try counting { try activations(i) }
        let counted = tally.count
        go.store(-1, ordering: .releasing)
        producer.join()
        return (counted, allocations)
    }
}
