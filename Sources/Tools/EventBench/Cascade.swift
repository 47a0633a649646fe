import ArgumentParser
import EventCore
import Glibc

/// libevent's test/bench_cascade.c method: one byte ripples down a chain of
/// socketpairs, each read end watched by a one-shot read event with a 60 s
/// timeout; the time includes creating and adding the events.
struct Cascade: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "libevent's bench_cascade.c: one byte rippling down a chain of socketpairs.",
        discussion: """
            Each round creates n socketpairs (untimed), then times: making and adding a one-shot \
            read event with a 60 s timeout on every read end, writing one byte into the first pair, \
            and running the loop until it exits for lack of events; each callback reads its byte \
            and writes one into the next pair. Summary: `cascade lib=swiftevent backend=B \
            locking=L n=N rounds=R median_us=X`.
            """)

    @Option(name: .short, help: "Socketpairs in the chain.")
    var n = 1000

    @Option(name: .short, help: "Rounds.")
    var r = 25

    @OptionGroup var common: CommonOptions

    @Flag(name: .long, help: "Print only the summary line.")
    var quiet = false

    func validate() throws {
        guard n >= 1, r >= 1 else { throw ValidationError("-n and -r must be at least 1") }
    }

    /// The chain: for each read end, the write end of the next pair, and the
    /// bytes read so far (touched only by the loop thread). Each callback
    /// captures only this object, so making an event allocates nothing
    /// besides the event (as libevent's `event_new` with a context pointer).
    final class Chain: @unchecked Sendable {
        @exclusivity(unchecked) var nextByFD: [Int32]
        @exclusivity(unchecked) var fired = 0

        init(ring: Ring, count: Int) {
            let highest = Int(ring.fds.max() ?? 0)
            nextByFD = [Int32](repeating: -1, count: highest + 1)
            for i in 0..<count where i + 1 < count {
                nextByFD[Int(ring.readEnd(i))] = ring.writeEnd(i + 1)
            }
        }

        @inline(__always)
        func pass(from fd: Int32) {
            var byte: UInt8 = 0
            _ = recv(fd, &byte, 1, 0)
            let next = nextByFD[Int(fd)]
            if next >= 0 {
                var out: UInt8 = 0x65
                _ = send(next, &out, 1, 0)
            }
            fired += 1
        }
    }

    func run() throws {
        try raiseDescriptorLimit(to: rlim_t(n * 2 + 64))
        let base = try EventBase(try common.configuration())
        var samples: [Double] = []
        for round in 0..<r {
            let ring = try Ring(count: n, usePipes: false)
            let chain = Chain(ring: ring, count: n)
            let start = now()
            var events: [Event] = []
            events.reserveCapacity(n)
            for i in 0..<n {
                let event = try Event(base: base, fd: ring.readEnd(i), flags: [.read]) { event, _ in
                    chain.pass(from: event.fd)
                }
                try event.add(timeout: .seconds(60))
                events.append(event)
            }
            var byte: UInt8 = 0x65
            _ = send(ring.writeEnd(0), &byte, 1, 0)
            try base.dispatch()
            let elapsed = now() - start
            guard chain.fired == n else { throw BenchError("only \(chain.fired) of \(n) events fired") }
            samples.append(elapsed)
            if !quiet { print("round \(round): \(formatted(elapsed)) us") }
            ring.close()
        }
        try base.shutdown()
        var summary = Summary("cascade")
        summary.add("lib", "swiftevent")
        summary.add("backend", base.method)
        summary.add("locking", base.lockProvider.name)
        summary.add("n", n)
        summary.add("rounds", r)
        summary.add("median_us", median(samples))
        try summary.emit(csv: common.csv)
    }
}
