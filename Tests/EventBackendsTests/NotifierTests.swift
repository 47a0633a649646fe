import EventBackends
import Glibc
import Testing
import EventTestSupport

@Suite("Notifier: cross-thread wake-ups")
struct NotifierTests {
    @Test("the mechanism asked for is the one used, with an open descriptor", arguments: Notifier.Mechanism.allCases)
    func mechanism(_ mechanism: Notifier.Mechanism) throws {
        let notifier = try Notifier(prefer: mechanism)
        #expect(notifier.mechanism == mechanism)
        #expect(notifier.readFD >= 0)
        #expect(fcntl(notifier.readFD, F_GETFD) >= 0)
        #expect(fcntl(notifier.readFD, F_GETFL) & O_NONBLOCK != 0, "a notifier descriptor must not block")
        #expect(!notifier.isPending)
        #expect(notifier.writeCount == 0)
    }

    @Test("a notify from another thread wakes a blocked backend wait", arguments: Notifier.Mechanism.allCases, BackendKind.allCases)
    func wakesBackendWait(_ mechanism: Notifier.Mechanism, _ kind: BackendKind) throws {
        let notifier = try Notifier(prefer: mechanism)
        let backend = try kind.make()
        defer { backend.close() }
        try backend.update(fd: notifier.readFD, from: [], to: .read, edgeTriggered: false)
        #expect(try waitOnce(backend, timeout: .zero).isEmpty, "readable before any notify")

        let waiting = Latch()
        let notifierThread = TestThread {
            waiting.wait()
            // Give the main thread time to block in the backend.
            pause(.milliseconds(30))
            notifier.notify()
        }
        let start = ContinuousClock.now
        waiting.open()
        var ready = try waitOnce(backend, timeout: .seconds(20))
        if ready.isEmpty { ready = try waitOnce(backend, timeout: .seconds(20)) } // an interrupted wait
        let elapsed = ContinuousClock.now - start
        #expect(ready[notifier.readFD] == .read)
        #expect(elapsed < .seconds(10), "the wait was not woken")
        #expect(notifierThread.join())
        #expect(notifier.isPending)
        #expect(notifier.writeCount == 1)

        notifier.acknowledge()
        #expect(!notifier.isPending)
        #expect(try waitOnce(backend, timeout: .milliseconds(10)).isEmpty, "still readable after acknowledge")
    }

    @Test("many threads notifying make exactly one write until acknowledge", arguments: Notifier.Mechanism.allCases)
    func oneWritePerCycle(_ mechanism: Notifier.Mechanism) throws {
        let notifier = try Notifier(prefer: mechanism)
        let backend = try BackendKind.poll.make()
        defer { backend.close() }
        try backend.update(fd: notifier.readFD, from: [], to: .read, edgeTriggered: false)

        let start = Latch()
        let threads = (0..<8).map { _ in
            TestThread {
                start.wait()
                for _ in 0..<2_000 { notifier.notify() }
            }
        }
        start.open()
        for thread in threads { #expect(thread.join()) }
        #expect(notifier.writeCount == 1)
        #expect(notifier.isPending)
        #expect(try waitOnce(backend, timeout: .seconds(5))[notifier.readFD] == .read)

        notifier.acknowledge()
        #expect(!notifier.isPending)
        #expect(try waitOnce(backend, timeout: .zero).isEmpty)

        // The next cycle: again one write, however many notify.
        let second = (0..<4).map { _ in TestThread { for _ in 0..<500 { notifier.notify() } } }
        for thread in second { #expect(thread.join()) }
        #expect(notifier.writeCount == 2)
        #expect(try waitOnce(backend, timeout: .seconds(5))[notifier.readFD] == .read)
        notifier.acknowledge()
        #expect(try waitOnce(backend, timeout: .zero).isEmpty)
    }

    @Test("acknowledge empties the descriptor and re-arms notify, cycle after cycle", arguments: Notifier.Mechanism.allCases)
    func acknowledgeRearms(_ mechanism: Notifier.Mechanism) throws {
        let notifier = try Notifier(prefer: mechanism)
        let backend = try BackendKind.epoll.make()
        defer { backend.close() }
        try backend.update(fd: notifier.readFD, from: [], to: .read, edgeTriggered: false)
        let cycles = 50
        for cycle in 1...cycles {
            notifier.notify()
            notifier.notify()
            #expect(notifier.writeCount == cycle)
            #expect(try waitOnce(backend, timeout: .seconds(5))[notifier.readFD] == .read)
            notifier.acknowledge()
            #expect(!notifier.isPending)
            #expect(try waitOnce(backend, timeout: .zero)[notifier.readFD] == nil, "cycle \(cycle): readable after acknowledge")
        }
        // Acknowledging with nothing pending neither blocks nor breaks anything.
        notifier.acknowledge()
        notifier.acknowledge()
        notifier.notify()
        #expect(notifier.writeCount == cycles + 1)
        #expect(try waitOnce(backend, timeout: .seconds(5))[notifier.readFD] == .read)
        notifier.acknowledge()
    }

    @Test("a loop thread and notifying threads never lose a wake-up", arguments: Notifier.Mechanism.allCases)
    func noLostWakeUps(_ mechanism: Notifier.Mechanism) throws {
        // Producers bump a counter then notify; the loop acknowledges, then
        // reads the counter, then waits with no timeout limit worth hitting.
        // A lost wake-up leaves the loop asleep with work outstanding.
        let notifier = try Notifier(prefer: mechanism)
        let backend = try BackendKind.poll.make()
        defer { backend.close() }
        try backend.update(fd: notifier.readFD, from: [], to: .read, edgeTriggered: false)
        let produced = AtomicCounter()
        let producers = 2
        let perProducer = 3_000
        let threads = (0..<producers).map { _ in
            TestThread {
                for _ in 0..<perProducer {
                    produced.increment()
                    notifier.notify()
                }
            }
        }
        var seen = 0
        var stalls = 0
        let deadline = ContinuousClock.now + .seconds(30)
        while seen < producers * perProducer && ContinuousClock.now < deadline {
            let ready = try waitOnce(backend, timeout: .seconds(2))
            if ready.isEmpty && produced.value > seen { stalls += 1 }
            notifier.acknowledge()
            seen = produced.value
        }
        for thread in threads { #expect(thread.join()) }
        #expect(seen == producers * perProducer)
        #expect(stalls == 0, "the loop slept through outstanding work \(stalls) times")
        #expect(notifier.writeCount <= producers * perProducer)
    }

    @Test("reinitialize gives fresh descriptors that work", arguments: Notifier.Mechanism.allCases)
    func reinitialize(_ mechanism: Notifier.Mechanism) throws {
        let notifier = try Notifier(prefer: mechanism)
        let oldFD = notifier.readFD
        notifier.notify()
        try notifier.reinitialize()
        #expect(notifier.readFD != oldFD)
        #expect(notifier.mechanism == mechanism)
        #expect(!notifier.isPending)
        let backend = try BackendKind.poll.make()
        defer { backend.close() }
        try backend.update(fd: notifier.readFD, from: [], to: .read, edgeTriggered: false)
        #expect(try waitOnce(backend, timeout: .zero).isEmpty)
        notifier.notify()
        #expect(try waitOnce(backend, timeout: .seconds(5))[notifier.readFD] == .read)
        notifier.acknowledge()
        #expect(try waitOnce(backend, timeout: .zero).isEmpty)
    }
}
