import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Shared bases used from several threads, on every shared-base provider.
@Suite struct ThreadingTests {
    /// libevent's thread_basic: 100 threads each add a timer 100 times and
    /// wait on a condition that the timer's callback, on the loop thread,
    /// signals; all 10,000 waits must end.
    @Test(arguments: Provider.shared)
    func hundredThreadsAddTimersAndWaitForTheLoopToSignalThem(_ provider: Provider) throws {
        let locks = provider.make()
        let base = try makeBase(.epoll, provider.make())
        let threads = 100
        let iterations = 100
        let completed = Counter()
        let keepAlive = try Event.timer(base: base) { _, _ in }
        try keepAlive.add(timeout: .seconds(60))

        let workers = (0..<threads).map { _ in
            let lock = locks.makeLock(.plain)
            let condition = locks.makeCondition()
            let flag = Box<Bool>(false)
            return TestThread {
                let timer = try! Event.timer(base: base) { _, _ in
                    lock.withLock { flag.value = true }
                    condition.broadcast()
                }
                for _ in 0..<iterations {
                    lock.lock()
                    flag.value = false
                    try! timer.add(timeout: .microseconds(500))
                    while flag.value != true { condition.wait(on: lock) }
                    lock.unlock()
                    completed.increment()
                }
                if completed.value == threads * iterations { try! base.loopExit() }
            }
        }
        let loop = runLoopInBackground(base)
        for worker in workers { worker.join() }
        #expect(completed.value == threads * iterations)
        loop.join()
        try keepAlive.delete()
        #expect(base.gotExit)
    }

    /// libevent's thread_no_events: a loop with nothing to do keeps running
    /// (`.noExitOnEmpty`); activations and timer adds from another thread
    /// wake it, each firing within 100 ms of when it should.
    @Test(arguments: Provider.shared, Notifier.Mechanism.allCases)
    func emptyLoopIsWokenByActivationsAndTimerAddsFromAnotherThread(
        _ provider: Provider, _ mechanism: Notifier.Mechanism
    ) throws {
        let base = try makeBase(.epoll, provider.make()) { $0.notifier = mechanism }
        #expect(base.notifierMechanism == mechanism)
        let start = now()
        let fired = (0..<5).map { _ in Box<Duration>() }
        let events = try (0..<5).map { index in
            try Event.timer(base: base) { ev, _ in
                fired[index].value = now() - start
                if index == 4 { try? ev.base.loopBreak() }
            }
        }
        let loop = runLoopInBackground(base, .noExitOnEmpty)
        func sleep(_ ms: Int) {
            var pause = timespec(tv_sec: 0, tv_nsec: ms * 1_000_000)
            nanosleep(&pause, nil)
        }
        sleep(100)
        try events[0].activate()
        sleep(100)
        try events[1].activate()
        sleep(100)
        try events[2].add(timeout: .milliseconds(100))
        try events[3].add(timeout: .milliseconds(150))
        sleep(200)
        try events[4].activate()
        loop.join()
        #expect(base.gotBreak)
        let expected: [Duration] = [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(450), .milliseconds(500)]
        for (index, target) in expected.enumerated() {
            let actual = try #require(fired[index].value, "event \(index) never fired")
            #expect(actual >= target - .milliseconds(5), "event \(index) fired early at \(actual)")
            #expect(actual <= target + .milliseconds(100), "event \(index) fired late at \(actual)")
        }
    }

    @Test(arguments: Provider.shared, BackendKind.allCases)
    func deleteFromAnotherThreadWaitsForTheRunningCallback(_ provider: Provider, _ kind: BackendKind) throws {
        let base = try makeBase(kind, provider.make())
        let pair = SocketPair()
        let running = Box<Bool>(false)
        let calls = Counter()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in
            calls.increment()
            running.value = true
            var pause = timespec(tv_sec: 0, tv_nsec: 200_000_000)
            nanosleep(&pause, nil)
            running.value = false
        }
        try event.add()
        pair.send()  // never read: level-triggered, fires on every pass
        let loop = runLoopInBackground(base)
        #expect(eventually { running.value == true })
        let before = now()
        try event.delete()
        #expect(running.value == false, "delete returned while the callback was running")
        #expect(now() - before >= .milliseconds(50))
        let callsAtDelete = calls.value
        var pause = timespec(tv_sec: 0, tv_nsec: 50_000_000)
        nanosleep(&pause, nil)
        #expect(calls.value == callsAtDelete, "the callback ran after delete returned")
        loop.join()
    }

    /// libevent #225: a callback fired again after a cross-thread delete returned.
    @Test(arguments: Provider.shared)
    func callbackNeverRunsAfterACrossThreadDeleteReturns(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let keepAlive = try Event.timer(base: base) { _, _ in }
        try keepAlive.add(timeout: .seconds(60))
        let loop = runLoopInBackground(base)
        let pair = SocketPair()
        pair.send()
        for _ in 0..<200 {
            let calls = Counter()
            let deleted = Box<Bool>(false)
            let violated = Box<Bool>(false)
            let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in
                if deleted.value == true { violated.value = true }
                calls.increment()
            }
            try event.add()
            calls.wait(for: 1)
            try event.delete()
            deleted.value = true
            let frozen = calls.value
            #expect(violated.value == false)
            #expect(calls.value == frozen)
        }
        try base.loopExit()
        try keepAlive.delete()
        loop.join()
    }

    @Test(arguments: Provider.shared)
    func deleteFromInsideItsOwnCallbackReturnsAtOnce(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let pair = SocketPair()
        pair.send()
        let calls = Counter()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { ev, _ in
            calls.increment()
            try? ev.delete()
        }
        try event.add()
        let done = Counter()
        let loop = runLoopInBackground(base, done: done)
        #expect(done.wait(for: 1, timeout: .seconds(5)) == 1, "delete from its own callback deadlocked")
        loop.join()
        #expect(calls.value == 1)
    }

    /// libevent #623 / #1727: deleting the last event, or the only timer,
    /// from another thread must wake a loop that waits for it.
    @Test(arguments: Provider.shared, BackendKind.allCases)
    func deletingTheLastEventFromAnotherThreadWakesTheLoop(_ provider: Provider, _ kind: BackendKind) throws {
        let base = try makeBase(kind, provider.make())
        let pair = SocketPair()
        let reader = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in }
        try reader.add()
        let done = Counter()
        let loop = runLoopInBackground(base, done: done)
        #expect(eventually { base.isRunning })
        let start = now()
        try reader.delete()
        #expect(done.wait(for: 1, timeout: .seconds(2)) == 1)
        #expect(now() - start < .milliseconds(100))
        loop.join()
    }

    @Test(arguments: Provider.shared, BackendKind.allCases)
    func deletingTheOnlyTimerFromAnotherThreadWakesTheLoop(_ provider: Provider, _ kind: BackendKind) throws {
        let base = try makeBase(kind, provider.make())
        let timer = try Event.timer(base: base, persist: true) { _, _ in }
        try timer.add(timeout: .seconds(30))
        let done = Counter()
        let loop = runLoopInBackground(base, done: done)
        #expect(eventually { base.isRunning })
        let start = now()
        try timer.delete()
        #expect(done.wait(for: 1, timeout: .seconds(2)) == 1)
        #expect(now() - start < .milliseconds(100))
        loop.join()
    }

    @Test(arguments: Provider.shared, BackendKind.allCases)
    func anEarlierTimerAddedFromAnotherThreadWakesTheLoop(_ provider: Provider, _ kind: BackendKind) throws {
        let base = try makeBase(kind, provider.make())
        let late = try Event.timer(base: base) { _, _ in }
        try late.add(timeout: .seconds(30))
        let loop = runLoopInBackground(base)
        #expect(eventually { base.isRunning })
        let start = now()
        let fired = Box<Duration>()
        let early = try Event.timer(base: base) { ev, _ in
            fired.value = now() - start
            try? late.delete()
        }
        try early.add(timeout: .milliseconds(20))
        loop.join()
        let elapsed = try #require(fired.value)
        #expect(elapsed >= .milliseconds(20))
        #expect(elapsed < .milliseconds(120))
    }

    /// libevent #1530: an activation from another thread was lost when it
    /// raced the event's own timeout.
    @Test(arguments: Provider.shared)
    func anActivationRacingTheEventsTimeoutIsNotLost(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let keepAlive = try Event.timer(base: base) { _, _ in }
        try keepAlive.add(timeout: .seconds(60))
        let loop = runLoopInBackground(base)
        let seen = Box<Event.Flags>([])
        let callbacks = Counter()
        let event = try Event.timer(base: base) { _, what in
            seen.value = seen.value!.union(what)
            callbacks.increment()
        }
        for round in 0..<200 {
            seen.value = []
            let target = callbacks.value
            try event.add(timeout: .microseconds(200 + (round % 5) * 100))
            var pause = timespec(tv_sec: 0, tv_nsec: 100_000 + (round % 7) * 60_000)
            nanosleep(&pause, nil)
            try event.activate(.write)
            #expect(eventually(timeout: .seconds(2)) { seen.value!.contains(.write) }, "round \(round): .write lost")
            #expect(eventually(timeout: .seconds(2)) { callbacks.value > target })
            try event.delete()
        }
        try base.loopExit()
        try keepAlive.delete()
        loop.join()
    }

    @Test(arguments: Provider.shared)
    func breakFromAnotherThreadBreaksTheLoop(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let done = Counter()
        let loop = runLoopInBackground(base, .noExitOnEmpty, done: done)
        #expect(eventually { base.isRunning })
        let start = now()
        try base.loopBreak()
        #expect(done.wait(for: 1, timeout: .seconds(2)) == 1)
        #expect(now() - start < .milliseconds(100))
        loop.join()
        #expect(base.gotBreak)
    }

    @Test(arguments: Provider.shared)
    func breakRacingTheLoopStartIsNotLost(_ provider: Provider) throws {
        for _ in 0..<50 {
            let base = try makeBase(.epoll, provider.make())
            let done = Counter()
            let breaker = TestThread { try! base.loopBreak() }
            let loop = runLoopInBackground(base, .noExitOnEmpty, done: done)
            breaker.join()
            #expect(done.wait(for: 1, timeout: .seconds(2)) == 1)
            loop.join()
        }
    }

    @Test(arguments: Provider.shared)
    func exitAfterADelayFromAnotherThread(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let done = Counter()
        let loop = runLoopInBackground(base, .noExitOnEmpty, done: done)
        #expect(eventually { base.isRunning })
        let start = now()
        try base.loopExit(after: .milliseconds(50))
        #expect(done.wait(for: 1, timeout: .seconds(2)) == 1)
        let elapsed = now() - start
        #expect(elapsed >= .milliseconds(45) && elapsed < .milliseconds(200))
        loop.join()
        #expect(base.gotExit)
    }

    @Test(arguments: Provider.shared)
    func finalizeFromAnotherThreadRunsOnceAfterTheCallbackEnds(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let pair = SocketPair()
        pair.send()
        let inCallback = Box<Bool>(false)
        let finalizedWhileRunning = Box<Bool>(false)
        let finalized = Counter()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in
            inCallback.value = true
            var pause = timespec(tv_sec: 0, tv_nsec: 100_000_000)
            nanosleep(&pause, nil)
            inCallback.value = false
        }
        try event.add()
        let keepAlive = try Event.timer(base: base) { _, _ in }
        try keepAlive.add(timeout: .seconds(60))
        let loop = runLoopInBackground(base)
        #expect(eventually { inCallback.value == true })
        let start = now()
        try event.finalize { ev in
            if inCallback.value == true { finalizedWhileRunning.value = true }
            finalized.increment()
        }
        #expect(now() - start < .milliseconds(50), "finalize waited for the callback")
        #expect(finalized.wait(for: 1) == 1)
        #expect(finalizedWhileRunning.value == false)
        #expect(throws: EventError.eventFinalized(call: "Event.add")) { try event.add() }
        #expect(throws: EventError.eventFinalized(call: "Event.finalize")) { try event.finalize { _ in } }
        try base.loopExit()
        try keepAlive.delete()
        loop.join()
        #expect(finalized.value == 1)
    }

    @Test(arguments: Provider.shared)
    func concurrentActivationsAreAllDeliveredOrCoalesced(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let producers = 4
        let perProducer = 5_000
        let delivered = Counter()
        let events = try (0..<producers * 4).map { _ in
            try Event.timer(base: base) { _, _ in delivered.increment() }
        }
        let loop = runLoopInBackground(base, .noExitOnEmpty)
        let coalescedBefore = base.coalescedActivationCount
        let threads = (0..<producers).map { p in
            TestThread {
                for i in 0..<perProducer { try! events[p * 4 + i % 4].activate() }
            }
        }
        for thread in threads { thread.join() }
        let total = producers * perProducer
        #expect(eventually(timeout: .seconds(10)) {
            delivered.value + (base.coalescedActivationCount - coalescedBefore) == total
        })
        try base.loopBreak()
        loop.join()
        #expect(delivered.value + (base.coalescedActivationCount - coalescedBefore) == total)
    }

    @Test(arguments: Provider.shared)
    func addsAndDeletesFromManyThreadsLeaveConsistentState(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let pairs = (0..<8).map { _ in SocketPair() }
        let keepAlive = try Event.timer(base: base) { _, _ in }
        try keepAlive.add(timeout: .seconds(60))
        let loop = runLoopInBackground(base)
        let threads = (0..<4).map { t in
            TestThread {
                for round in 0..<500 {
                    let pair = pairs[(t * 2 + round) % pairs.count]
                    let event = try! Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in }
                    try! event.add(timeout: .milliseconds(50))
                    #expect(event.pending(.read) == .read)
                    try! event.delete()
                    #expect(!event.isPending)
                }
            }
        }
        for thread in threads { thread.join() }
        #expect(eventually { base.eventCount == 1 })
        for pair in pairs { #expect(base.events(forFD: pair.left).isEmpty) }
        try base.loopExit()
        try keepAlive.delete()
        loop.join()
    }

    @Test(arguments: Provider.shared)
    func postedWorkRunsOnTheLoopThread(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let loopThread = Box<ThreadIdentity>()
        let ranOn = Box<ThreadIdentity>()
        let loop = TestThread {
            loopThread.value = ThreadIdentity.current
            try! base.loop(.noExitOnEmpty)
        }
        #expect(eventually { base.isRunning })
        try base.post {
            ranOn.value = ThreadIdentity.current
            try? base.loopBreak()
        }
        loop.join()
        #expect(ranOn.value != nil)
        #expect(ranOn.value == loopThread.value)
    }

    @Test(arguments: Provider.shared)
    func runningTheLoopOnTwoThreadsAtOnceIsRefused(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let loop = runLoopInBackground(base, .noExitOnEmpty)
        #expect(eventually { base.isRunning })
        #expect(throws: EventError.loopAlreadyRunning) { try base.loop() }
        try base.loopBreak()
        loop.join()
    }

    /// However many threads hand the loop work while it is busy, the wake-up
    /// descriptor is written at most once until the loop takes the wake-up.
    @Test(arguments: Provider.shared, Notifier.Mechanism.allCases)
    func manyThreadsWakeABusyLoopWithOneWrite(_ provider: Provider, _ mechanism: Notifier.Mechanism) throws {
        let base = try makeBase(.epoll, provider.make()) { $0.notifier = mechanism }
        let busy = Box<Bool>(false)
        let release = Box<Bool>(false)
        let delivered = Counter()
        let blocker = try Event.timer(base: base) { _, _ in
            busy.value = true
            while release.value != true { sched_yield() }
        }
        let targets = try (0..<8).map { _ in try Event.timer(base: base) { _, _ in delivered.increment() } }
        let loop = runLoopInBackground(base, .noExitOnEmpty)
        #expect(eventually { base.isRunning })
        try blocker.activate()
        #expect(eventually { busy.value == true })
        let writesBefore = base.wakeUpWrites
        let threads = (0..<8).map { index in
            TestThread { for _ in 0..<500 { try! targets[index].activate() } }
        }
        for thread in threads { thread.join() }
        let writesWhileBusy = base.wakeUpWrites - writesBefore
        #expect(writesWhileBusy <= 1, "\(writesWhileBusy) wake-up writes while the loop was busy")
        release.value = true
        #expect(delivered.wait(for: 8) >= 8)
        try base.loopBreak()
        loop.join()
    }

    /// libevent's EV_FINALIZE: a delete from another thread does not wait for
    /// the running callback (so it cannot deadlock on a lock that callback
    /// takes), and the callback does not start again.
    @Test(arguments: Provider.shared)
    func deletingAFinalizeEventDoesNotWaitForItsCallback(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let pair = SocketPair()
        pair.send()
        let running = Box<Bool>(false)
        let calls = Counter()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .persist, .finalize]) { _, _ in
            calls.increment()
            running.value = true
            pause(.milliseconds(200))
            running.value = false
        }
        try event.add()
        let loop = runLoopInBackground(base)
        #expect(eventually { running.value == true })
        let start = now()
        try event.delete()
        #expect(now() - start < .milliseconds(100), "delete waited for the callback")
        #expect(running.value == true)
        #expect(eventually { running.value == false })
        let callsAfter = calls.value
        pause(.milliseconds(50))
        #expect(calls.value == callsAfter, "the callback started again after delete")
        loop.join()
    }

    @Test(arguments: Provider.shared)
    func removingATimerFromAnotherThreadStopsIt(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let fired = Counter()
        let timer = try Event.timer(base: base) { _, _ in fired.increment() }
        let keepAlive = try Event.timer(base: base) { _, _ in }
        try keepAlive.add(timeout: .seconds(60))
        let loop = runLoopInBackground(base)
        #expect(eventually { base.isRunning })
        try timer.add(timeout: .milliseconds(80))
        try timer.removeTimer()
        #expect(!timer.isPending)
        pause(.milliseconds(150))
        #expect(fired.value == 0, "the removed timeout fired")
        try timer.add(timeout: .milliseconds(10))
        #expect(fired.wait(for: 1) == 1)
        try keepAlive.delete()
        loop.join()
    }

    /// While the loop is busy in a callback, another thread activates an
    /// event (handed over to the loop, not yet applied) and deletes it: the
    /// activation shows as pending until the delete, and the callback never
    /// runs. A second activation after the delete does run.
    @Test(arguments: Provider.shared)
    func aHandedOverActivationIsCancelledByADeleteBeforeTheLoopAppliesIt(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let inBusy = Latch()
        let release = Latch()
        let busy = try Event.timer(base: base) { _, _ in
            inBusy.open()
            _ = release.wait()
        }
        let ran = Counter()
        let target = try Event.timer(base: base) { _, _ in ran.increment() }
        let loop = runLoopInBackground(base, .noExitOnEmpty)
        try busy.activate()
        #expect(inBusy.wait())
        try target.activate(.read)
        #expect(target.pending(.read) == .read)
        try target.delete()
        #expect(!target.isPending)
        release.open()
        // Let the loop run a few iterations; the callback must not run.
        let probe = Latch()
        let marker = try Event.timer(base: base) { _, _ in probe.open() }
        try marker.activate()
        #expect(probe.wait())
        #expect(ran.value == 0)
        // An activation made after the delete stands.
        try target.activate(.read)
        #expect(eventually(timeout: .seconds(5)) { ran.value == 1 })
        try base.loopBreak()
        loop.join()
        #expect(ran.value == 1)
    }

}
