import ArgumentParser
import EventCore
import Glibc
import Synchronization

/// The read-mostly side of a shared base: threads asking about registrations
/// while the loop dispatches.
struct Lookups: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Threads looking up registrations on a busy shared base; reads/s.",
        discussion: """
            T reader threads, for -s seconds, alternate "is this event pending?" and "which events \
            watch this descriptor?" (visiting them without copying) on random events of -e \
            registered socketpairs, while the loop thread dispatches without pause (a callback that \
            re-activates itself); 1% of each thread's operations delete and re-add an event. \
            Summary: `lookups lib=swiftevent locking=L threads=T events=E seconds=S reads=N \
            changes=C reads_per_s=R`.
            """)

    @Option(name: .short, help: "Reader threads.")
    var t = 2

    @Option(name: .short, help: "Registered events (one socketpair each).")
    var e = 64

    @Option(name: .short, help: "Seconds to run.")
    var s = 2.0

    @OptionGroup var common: CommonOptions

    @Flag(name: .long, help: "Run once per provider: mutex, rcu, debug.")
    var eachProvider = false

    func validate() throws {
        guard t >= 1, e >= 1, s > 0 else { throw ValidationError("-t, -e and -s must be positive") }
    }

    func run() throws {
        let providers = eachProvider ? ["mutex", "rcu", "debug"] : [common.locking ?? "mutex"]
        for provider in providers { try runOnce(locking: provider) }
    }

    func runOnce(locking: String) throws {
        let base = try EventBase(try common.configuration(locking: locking))
        guard base.threadingMode == .shared else { throw BenchError("lookups needs a shared base") }
        let ring = try Ring(count: e, usePipes: false)
        defer { ring.close() }
        let events = try (0..<e).map { i in
            try Event(base: base, fd: ring.readEnd(i), flags: [.read, .persist]) { _, _ in }
        }
        for event in events { try event.add() }
        // Keeps the loop dispatching all the time.
        let busy = try Event(base: base, fd: -1, flags: []) { event, _ in try? event.activate() }
        try busy.activate()
        let loop = BenchThread { _ = try? base.loop(.noExitOnEmpty) }
        let stop = Atomic<Bool>(false)
        let reads = Atomic<Int>(0)
        let changes = Atomic<Int>(0)
        // The readers hold unretained references to the events (as a server
        // holds its own connections' events), so what they measure is the
        // library's read path, not reference counting on objects that every
        // thread shares (each retain/release would bounce the event's cache
        // line between the cores).
        let nodes = events.map { Unmanaged.passUnretained($0) }
        let readFDs = (0..<e).map { ring.readEnd($0) }
        let readers = (0..<t).map { index in
            BenchThread {
                var random = UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15
                var localReads = 0
                var localChanges = 0
                while !stop.load(ordering: .relaxed) {
                    for _ in 0..<100 {
                        random ^= random << 13
                        random ^= random >> 7
                        random ^= random << 17
                        // Multiply-shift range reduction (no division):
                        // a uniform target, and 1 in 100 operations a change.
                        let target = Int(((random & 0xFFFF_FFFF) &* UInt64(nodes.count)) >> 32)
                        let percent = ((random >> 32) &* 100) >> 32
                        if percent == 0 {
                            nodes[target]._withUnsafeGuaranteedRef { event in
                                try? event.delete()
                                try? event.add()
                            }
                            localChanges += 1
                        } else if percent & 1 == 0 {
                            _ = nodes[target]._withUnsafeGuaranteedRef { $0.isPending }
                            localReads += 1
                        } else {
                            var watching = 0
                            base.forEachEvent(onFD: readFDs[target]) { _ in watching += 1 }
                            localReads += 1
                        }
                    }
                }
                reads.add(localReads, ordering: .relaxed)
                changes.add(localChanges, ordering: .relaxed)
            }
        }
        var pause = timespec(tv_sec: Int(s), tv_nsec: Int((s - s.rounded(.down)) * 1e9))
        nanosleep(&pause, nil)
        stop.store(true, ordering: .relaxed)
        for reader in readers { reader.join() }
        try base.loopBreak()
        loop.join()
        try busy.delete()
        for event in events { try event.delete() }
        try base.shutdown()
        let total = reads.load(ordering: .relaxed)
        var summary = Summary("lookups")
        summary.add("lib", "swiftevent")
        summary.add("locking", base.lockProvider.name)
        summary.add("threads", t)
        summary.add("events", e)
        summary.add("seconds", s)
        summary.add("reads", total)
        summary.add("changes", changes.load(ordering: .relaxed))
        summary.add("reads_per_s", Double(total) / s)
        try summary.emit(csv: common.csv)
    }
}
