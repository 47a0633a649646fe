import ArgumentParser
import EventBackends
import EventCore
import Glibc

/// libevent's test/bench.c method: a ring of socketpairs with persistent read
/// events; each round re-adds every event (untimed), writes one byte into
/// `active` evenly spaced pairs, then times the loop until every byte fired
/// has been read, each callback passing a byte on while writes remain.
struct Pipes: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "libevent's bench.c: a chain of active socketpairs; prints µs per round.",
        discussion: """
            Each round re-adds every persistent read event (untimed), runs the loop once without \
            blocking, writes one byte into -a evenly spaced pairs, then times the loop (once, \
            non-blocking, repeated) until every byte fired has been read; each read callback passes \
            a byte on to the next pair while -w writes remain. Summary: \
            `pipes lib=swiftevent backend=B locking=L n=N a=A w=W rounds=R median_us=X`. \
            --sweep runs n = 100, 1000, 5000, 9000 × a = 1, 100 on every backend (w = -w or n); \
            --plot draws µs per round against n, a line per backend and a.
            """)

    @Option(name: .short, help: "Number of socketpairs.")
    var n = 100

    @Option(name: .short, help: "Number of pairs written to at the start of each round.")
    var a = 1

    @Option(name: .short, help: "Chained writes per round (default: n).")
    var w: Int?

    @Option(name: .short, help: "Rounds.")
    var r = 25

    @OptionGroup var common: CommonOptions

    @Flag(name: .long, help: "Use pipes instead of socketpairs.")
    var pipes = false

    @Flag(name: .long, help: "Print only the summary line, not every round.")
    var quiet = false

    @Flag(name: .long, help: "Run n = 100, 1000, 5000, 9000 × a = 1, 100 on every backend.")
    var sweep = false

    @Option(name: .long, help: "With --sweep: write an SVG chart of µs per round against n.")
    var plot: String?

    @Option(name: .long, help: "With --plot: draw the chart from the rows a sweep wrote with --csv, without measuring.")
    var replot: String?

    func validate() throws {
        guard n >= 1 else { throw ValidationError("-n must be at least 1") }
        guard a >= 1 && a <= n else { throw ValidationError("-a must be in 1...n") }
        guard r >= 1 else { throw ValidationError("-r must be at least 1") }
        if let w, w < 0 { throw ValidationError("-w must not be negative") }
        if plot != nil && !sweep && replot == nil { throw ValidationError("--plot needs --sweep or --replot") }
        if replot != nil && plot == nil { throw ValidationError("--replot needs --plot") }
    }

    func run() throws {
        if let replot, let plot {
            try drawFromCSV(replot, to: plot)
            return
        }
        guard sweep else {
            let result = try measure(n: n, a: a, w: w ?? n, method: nil, printRounds: !quiet)
            try result.summary.emit(csv: common.csv)
            return
        }
        var points: [PlotSeries] = []
        for kind in BackendKind.allCases {
            for active in [1, 100] {
                var series = PlotSeries(label: "\(kind) a=\(active)")
                for count in [100, 1000, 5000, 9000] {
                    let result = try measure(n: count, a: min(active, count), w: w ?? count, method: kind, printRounds: false)
                    try result.summary.emit(csv: common.csv)
                    series.points.append((Double(count), result.median))
                }
                points.append(series)
            }
        }
        if let plot {
            try SVGPlot(
                title: "event-bench pipes: µs per round against socketpairs (w = \(w.map(String.init) ?? "n"))",
                xLabel: "socketpairs (n)", yLabel: "µs per round (median of \(r))", series: points
            ).write(to: plot)
            print("plot written to \(plot)")
        }
    }

    /// Draws the chart from `pipes` rows of a CSV (lib, backend, locking, n, a, w, rounds, median).
    private func drawFromCSV(_ path: String, to plot: String) throws {
        guard let file = fopen(path, "r") else { throw BenchError("cannot read \(path)") }
        defer { fclose(file) }
        var order: [String] = []
        var lines: [String: PlotSeries] = [:]
        var rounds = "?"
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let fields = String(cString: line).trimmingSuffix().split(separator: ",").map(String.init)
            guard fields.count == 9, fields[0] == "pipes", let count = Double(fields[4]), let median = Double(fields[8]) else { continue }
            let label = "\(fields[2]) a=\(fields[5])"
            if lines[label] == nil {
                order.append(label)
                lines[label] = PlotSeries(label: label)
            }
            lines[label]?.points.append((count, median))
            rounds = fields[7]
        }
        guard !order.isEmpty else { throw BenchError("no pipes rows in \(path)") }
        try SVGPlot(
            title: "event-bench pipes: µs per round against socketpairs (w = \(w.map(String.init) ?? "n"))",
            xLabel: "socketpairs (n)", yLabel: "µs per round (median of \(rounds))", series: order.compactMap { lines[$0] }
        ).write(to: plot)
        print("plot written to \(plot)")
    }

    struct Result {
        let summary: Summary
        let median: Double
    }

    func measure(n: Int, a: Int, w writes: Int, method: BackendKind?, printRounds: Bool) throws -> Result {
        try raiseDescriptorLimit(to: rlim_t(n * 2 + 64))
        let base = try EventBase(try common.configuration(method: method))
        let ring = try Ring(count: n, usePipes: pipes)
        defer { ring.close() }
        let state = ChainState(ring: ring)
        var events: [Event] = []
        events.reserveCapacity(n)
        for i in 0..<n {
            let next = ring.writeEnd(i + 1 == n ? 0 : i + 1)
            events.append(
                try Event(base: base, fd: ring.readEnd(i), flags: [.read, .persist]) { event, _ in
                    state.readOne(from: event.fd, passingTo: next)
                })
        }
        let space = (n / a) * 2
        var samples: [Double] = []
        for round in 0..<r {
            for event in events {
                try event.delete()
                try event.add()
            }
            try base.loop([.once, .nonBlocking])
            state.fired = 0
            for i in 0..<a {
                state.write(to: ring.fds[i * space + 1])
                state.fired += 1
            }
            state.reads = 0
            state.writesLeft = writes
            let start = now()
            repeat {
                try base.loop([.once, .nonBlocking])
            } while state.reads != state.fired
            let elapsed = now() - start
            samples.append(elapsed)
            if printRounds { print("round \(round): \(formatted(elapsed)) us") }
        }
        for event in events { try event.delete() }
        try base.shutdown()
        var summary = Summary("pipes")
        summary.add("lib", "swiftevent")
        summary.add("backend", base.method)
        summary.add("locking", base.lockProvider.name)
        summary.add("n", n)
        summary.add("a", a)
        summary.add("w", writes)
        summary.add("rounds", r)
        let middle = median(samples)
        summary.add("median_us", middle)
        return Result(summary: summary, median: middle)
    }
}

/// The socketpairs (or pipes): fds[2i] reads, fds[2i+1] writes.
struct Ring {
    let fds: [Int32]

    init(count: Int, usePipes: Bool) throws {
        var fds = [Int32](repeating: -1, count: count * 2)
        for i in 0..<count {
            let rc = fds.withUnsafeMutableBufferPointer { buffer in
                usePipes
                    ? pipe(buffer.baseAddress! + 2 * i)
                    : socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, buffer.baseAddress! + 2 * i)
            }
            if rc < 0 { throw BenchError("socketpair: \(String(cString: strerror(errno)))") }
        }
        self.fds = fds
    }

    func readEnd(_ i: Int) -> Int32 { fds[2 * i] }
    func writeEnd(_ i: Int) -> Int32 { fds[2 * i + 1] }
    func close() { for fd in fds { _ = Glibc.close(fd) } }
}

/// Counters of one run, touched only by the thread running the loop (and by
/// the main thread between rounds, when no loop runs).
final class ChainState: @unchecked Sendable {
    let ring: Ring
    var reads = 0
    var fired = 0
    var writesLeft = 0

    init(ring: Ring) { self.ring = ring }

    @inline(__always)
    func readOne(from fd: Int32, passingTo next: Int32) {
        var byte: UInt8 = 0
        if read(fd, &byte, 1) == 1 { reads += 1 }
        if writesLeft > 0 {
            write(to: next)
            writesLeft -= 1
            fired += 1
        }
    }

    @inline(__always)
    func write(to fd: Int32) {
        var byte: UInt8 = 0x65
        if Glibc.write(fd, &byte, 1) != 1 { fatalError("write: \(String(cString: strerror(errno)))") }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) * 1e6 + Double(ts.tv_nsec) / 1e3
}

func formatted(_ microseconds: Double) -> String {
    let tenths = (microseconds * 10).rounded() / 10
    return String(tenths)
}

func raiseDescriptorLimit(to needed: rlim_t) throws {
    var limit = rlimit()
    getrlimit(RLIMIT_NOFILE_VALUE, &limit)
    guard limit.rlim_cur < needed else { return }
    guard needed <= limit.rlim_max else {
        throw BenchError("needs \(needed) descriptors; the hard limit is \(limit.rlim_max)")
    }
    limit.rlim_cur = needed
    if setrlimit(RLIMIT_NOFILE_VALUE, &limit) < 0 {
        throw BenchError("setrlimit: \(String(cString: strerror(errno)))")
    }
}

let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)

extension String {
    /// Without trailing newline and carriage-return characters.
    fileprivate func trimmingSuffix() -> String {
        var text = Substring(self)
        while let last = text.last, last == "\n" || last == "\r" { text = text.dropLast() }
        return String(text)
    }
}
