import EventCore
import EventLocking
import Glibc
import Synchronization
import Testing
import EventTestSupport

/// Long multi-threaded runs of one shared base per lock provider: worker
/// threads add, delete, activate, finalize and drop events and timers while
/// the loop runs, and every count is checked exactly at the end.
///
/// Length: `SWIFTEVENT_STRESS_SECONDS` per provider (default 2; minutes by hand).
@Suite struct SharedBaseStressTests {
    static let providers: [(String, @Sendable () -> any LockProvider)] = [
        ("mutex", { MutexLockProvider() }),
        ("rcu", { RCULockProvider() }),
        ("debug", { DebugLockProvider(wrapping: MutexLockProvider()) }),
        ("debug-rcu", { DebugLockProvider(wrapping: RCULockProvider()) }),
    ]

    static var seconds: Double {
        guard let text = getenv("SWIFTEVENT_STRESS_SECONDS").map({ String(cString: $0) }),
            let value = Double(text), value > 0
        else { return 2 }
        return value
    }

    @Test(arguments: providers.map(\.0))
    func churnOnASharedBase(_ name: String) throws {
        let provider = Self.providers.first { $0.0 == name }!.1()
        var configuration = EventBase.Configuration(method: .epoll, lockProvider: provider)
        configuration.ignoreEnvironment = true
        let base = try EventBase(configuration)
        let books = Books()
        let deadline = now() + .seconds(Self.seconds)

        // Activation-only events: never deleted during the run. A producer
        // puts a token on the event before activating it; the callback takes
        // every token present. A lost activation leaves a token behind.
        let tokens = (0..<16).map { _ in Token() }
        let activationTargets = try (0..<16).map { index in
            try Event(base: base, fd: -1, flags: []) { _, _ in
                books.delivered.add(tokens[index].count.exchange(0, ordering: .acquiringAndReleasing), ordering: .relaxed)
            }
        }
        // One-shot timers added once and left alone: each must fire once.
        let steadyTimers = try (0..<64).map { index in
            try Event.timer(base: base) { _, _ in books.steadyTimerFires.add(1, ordering: .relaxed) }
                .added(timeout: .milliseconds(1 + index % 50))
        }
        // Persistent readers that stay: every byte written must be read.
        let streams = (0..<4).map { _ in Stream() }
        let readers = try streams.map { stream in
            try Event(base: base, fd: stream.reader, flags: [.read, .persist]) { _, _ in
                books.bytesRead.add(stream.drain(), ordering: .relaxed)
            }.added()
        }

        let loopDone = Atomic<Bool>(false)
        let loop = TestThread {
            do {
                try base.loop(.noExitOnEmpty)
            } catch {
                Issue.record("loop failed: \(error)")
            }
            loopDone.store(true, ordering: .releasing)
        }

        let workers = (0..<4).map { worker in
            TestThread {
                var random = SplitMix(seed: UInt64(worker + 1) * 0x9E37_79B9)
                let churnPair = Stream()
                while now() < deadline {
                    switch random.next() % 6 {
                    case 0:
                        // Activations, racing the loop.
                        for _ in 0..<64 {
                            let target = Int(random.next() % 16)
                            books.issued.add(1, ordering: .relaxed)
                            tokens[target].count.add(1, ordering: .acquiringAndReleasing)
                            try! activationTargets[target].activate()
                        }
                    case 1:
                        // A churn event that is added, fires or not, and is deleted:
                        // after delete returns its callback must never start.
                        let deleted = Atomic<Bool>(false)
                        let event = try! Event(base: base, fd: churnPair.reader, flags: [.read, .persist]) { _, _ in
                            if deleted.load(ordering: .acquiring) { books.violations.add(1, ordering: .relaxed) }
                            _ = churnPair.drain()
                        }
                        try! event.add(timeout: .microseconds(Int(random.next() % 2000)))
                        if random.next() % 2 == 0 {
                            _ = churnPair.drain()
                            churnPair.send()
                        }
                        try! event.delete()
                        deleted.store(true, ordering: .releasing)
                    case 2:
                        // A timer deleted right away or soon: never fires after delete.
                        let deleted = Atomic<Bool>(false)
                        let timer = try! Event.timer(base: base) { _, _ in
                            if deleted.load(ordering: .acquiring) { books.violations.add(1, ordering: .relaxed) }
                        }
                        try! timer.add(timeout: .microseconds(Int(random.next() % 500)))
                        if random.next() % 2 == 0 { sched_yield() }
                        try! timer.delete()
                        deleted.store(true, ordering: .releasing)
                    case 3:
                        // Finalize: the finalizer runs exactly once, after which the
                        // callback never starts.
                        let finalized = Atomic<Bool>(false)
                        let event = try! Event.timer(base: base, persist: true) { _, _ in
                            if finalized.load(ordering: .acquiring) { books.violations.add(1, ordering: .relaxed) }
                        }
                        try! event.add(timeout: .microseconds(100))
                        books.finalizeCalls.add(1, ordering: .relaxed)
                        try! event.finalize { _ in
                            finalized.store(true, ordering: .releasing)
                            books.finalizersRun.add(1, ordering: .relaxed)
                        }
                    case 4:
                        // Bytes for the steady readers.
                        let stream = streams[Int(random.next() % UInt64(streams.count))]
                        if stream.send() { books.bytesWritten.add(1, ordering: .relaxed) }
                    default:
                        // An event dropped while added: the base keeps it, and a
                        // lookup from this thread sees it.
                        let event = try! Event.timer(base: base) { _, _ in books.droppedFires.add(1, ordering: .relaxed) }
                        try! event.add(timeout: .microseconds(50))
                        books.droppedAdds.add(1, ordering: .relaxed)
                        _ = event.pending()
                        _ = base.events(forFD: churnPair.reader)
                    }
                }
                churnPair.close()
            }
        }
        for worker in workers { worker.join(timeout: .seconds(Self.seconds + 60)) }

        // Let everything in flight finish, then stop the loop.
        let settled = eventually(timeout: .seconds(10)) {
            books.delivered.load(ordering: .relaxed) == books.issued.load(ordering: .relaxed)
                && books.steadyTimerFires.load(ordering: .relaxed) == steadyTimers.count
                && books.bytesRead.load(ordering: .relaxed) == books.bytesWritten.load(ordering: .relaxed)
                && books.finalizersRun.load(ordering: .relaxed) == books.finalizeCalls.load(ordering: .relaxed)
                && books.droppedFires.load(ordering: .relaxed) == books.droppedAdds.load(ordering: .relaxed)
        }
        try base.loopExit()
        loop.join()
        let loopFinished = loopDone.load(ordering: .acquiring)
        #expect(loopFinished)
        #expect(settled, "counts did not settle")

        let issued = books.issued.load(ordering: .relaxed)
        let delivered = books.delivered.load(ordering: .relaxed)
        #expect(issued > 0)
        #expect(delivered == issued, "lost activations: issued \(issued), delivered \(delivered)")
        #expect(books.violations.load(ordering: .relaxed) == 0, "a callback ran after its delete or finalize")
        #expect(books.steadyTimerFires.load(ordering: .relaxed) == steadyTimers.count)
        #expect(books.bytesRead.load(ordering: .relaxed) == books.bytesWritten.load(ordering: .relaxed))
        #expect(books.finalizersRun.load(ordering: .relaxed) == books.finalizeCalls.load(ordering: .relaxed))
        #expect(books.droppedFires.load(ordering: .relaxed) == books.droppedAdds.load(ordering: .relaxed))
        // Only the steady readers remain added.
        #expect(base.eventCount == readers.count)
        for reader in readers { try reader.delete() }
        try base.shutdown()
        for stream in streams { stream.close() }
        _ = activationTargets
    }

    /// The debug provider catches a lock-order inversion made on purpose by
    /// two threads using its locks while a shared base runs on it.
    @Test func theDebugProviderCatchesAnIntentionalLockOrderInversion() throws {
        let reports = ViolationLog()
        let provider = DebugLockProvider(wrapping: MutexLockProvider()) { reports.append($0) }
        var configuration = EventBase.Configuration(method: .epoll, lockProvider: provider)
        configuration.ignoreEnvironment = true
        let base = try EventBase(configuration)
        let first = provider.makeLock(.plain)
        let second = provider.makeLock(.plain)
        let loop = TestThread { try! base.loop(.noExitOnEmpty) }
        let forward = TestThread {
            first.lock()
            second.lock()
            second.unlock()
            first.unlock()
        }
        forward.join()
        let backward = TestThread {
            second.lock()
            first.lock()
            first.unlock()
            second.unlock()
        }
        backward.join()
        try base.loopBreak()
        loop.join()
        let inversions = reports.all.filter { $0.kind == .lockOrderInversion }
        #expect(inversions.count == 1)
        #expect(inversions.first?.site.file.hasSuffix("SharedBaseStressTests.swift") == true)
        #expect(reports.all.allSatisfy { $0.kind == .lockOrderInversion }, "the base itself misused a lock: \(reports.all)")
    }
}

extension Event {
    /// Adds the event and returns it (for building arrays of added events).
    func added(timeout: Duration? = nil) throws -> Event {
        try add(timeout: timeout)
        return self
    }
}

/// Activations outstanding on one event.
final class Token: Sendable {
    let count = Atomic<Int>(0)
}

/// Exact counters for a stress run.
final class Books: Sendable {
    let issued = Atomic<Int>(0)
    let delivered = Atomic<Int>(0)
    let violations = Atomic<Int>(0)
    let steadyTimerFires = Atomic<Int>(0)
    let bytesWritten = Atomic<Int>(0)
    let bytesRead = Atomic<Int>(0)
    let finalizeCalls = Atomic<Int>(0)
    let finalizersRun = Atomic<Int>(0)
    let droppedAdds = Atomic<Int>(0)
    let droppedFires = Atomic<Int>(0)
}

/// A non-blocking socketpair: bytes sent on one end, read from the other.
final class Stream: @unchecked Sendable {
    // Immutable after init; `close` is called once, after every user is done.
    let reader: Int32
    let writer: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
        precondition(rc == 0)
        reader = fds[0]
        writer = fds[1]
    }

    /// Sends one byte; false if the socket buffer is full.
    @discardableResult
    func send() -> Bool {
        var byte: UInt8 = 1
        return write(writer, &byte, 1) == 1
    }

    func drain() -> Int {
        var buffer = [UInt8](repeating: 0, count: 256)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
            if n <= 0 { return total }
            total += n
        }
    }

    func close() {
        Glibc.close(reader)
        Glibc.close(writer)
    }
}

/// A small deterministic generator (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
