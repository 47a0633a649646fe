import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Loop options and loop control on every backend (owned bases):
/// libevent's `EVLOOP_*`, loopexit, loopbreak, loopcontinue, `event_base_once`
/// and `event_active`.
@Suite struct LoopControlTests {
    // MARK: loop options

    @Test(arguments: BackendKind.allCases)
    func loopWithNothingAddedReturnsNoEvents(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let start = now()
        #expect(try base.loop() == .noEvents)
        #expect(try base.dispatch() == .noEvents)
        #expect(try base.loop(.once) == .noEvents)
        #expect(try base.loop(.nonBlocking) == .noEvents)
        #expect(try base.loop([.once, .nonBlocking]) == .noEvents)
        #expect(now() - start < .milliseconds(500))
        #expect(!base.gotExit)
        #expect(!base.gotBreak)
        #expect(!base.isRunning)
    }

    @Test(arguments: BackendKind.allCases)
    func onceBlocksUntilSomethingFiresRunsItAndReturns(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let start = now()
        let firedAt = Box<Duration>()
        let first = try Event.timer(base: base) { _, _ in
            firedAt.value = now() - start
            log.append("first")
        }
        let second = try Event.timer(base: base) { _, _ in log.append("second") }
        try first.add(timeout: .milliseconds(30))
        try second.add(timeout: .milliseconds(400))
        #expect(try base.loop(.once) == .finished)
        #expect(log.entries == ["first"])
        #expect(try #require(firedAt.value) >= .milliseconds(30))
        #expect(second.pending(.timeout) == .timeout)
        #expect(!base.gotExit)
        #expect(!base.gotBreak)
        try second.delete()
    }

    @Test(arguments: BackendKind.allCases)
    func onceRunsEveryCallbackOfTheWakingPass(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pairs = (0..<3).map { _ in SocketPair() }
        let log = Log()
        var events: [Event] = []
        for (index, pair) in pairs.enumerated() {
            let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in
                log.append("r\(index)")
            }
            try event.add()
            events.append(event)
            pair.send()
        }
        #expect(try base.loop(.once) == .finished)
        #expect(log.entries.sorted() == ["r0", "r1", "r2"])
        for event in events { try event.delete() }
    }

    @Test(arguments: BackendKind.allCases)
    func nonBlockingWithNothingReadyReturnsAtOnce(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let fired = Counter()
        let timer = try Event.timer(base: base) { _, _ in fired.increment() }
        let reader = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in fired.increment() }
        try timer.add(timeout: .milliseconds(600))
        try reader.add()
        let start = now()
        #expect(try base.loop(.nonBlocking) == .finished)
        #expect(now() - start < .milliseconds(300))
        #expect(fired.value == 0)
        #expect(timer.pending(.timeout) == .timeout)
        #expect(reader.pending(.read) == .read)
        pair.send()
        #expect(try base.loop(.nonBlocking) == .finished)
        #expect(fired.value == 1)
        #expect(now() - start < .milliseconds(300))
        try timer.delete()
    }

    @Test(arguments: BackendKind.allCases)
    func onceAndNonBlockingTogetherReturnAtOnceWhenNothingIsReady(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let fired = Counter()
        let timer = try Event.timer(base: base) { _, _ in fired.increment() }
        try timer.add(timeout: .milliseconds(600))
        let start = now()
        #expect(try base.loop([.once, .nonBlocking]) == .finished)
        #expect(now() - start < .milliseconds(300))
        #expect(fired.value == 0)
        try timer.delete()
    }

    /// `.nonBlocking` alone keeps iterating while callbacks make more work
    /// (a zero timer added by a callback runs); with `.once` it returns after
    /// the first pass that ran something.
    @Test(arguments: BackendKind.allCases)
    func nonBlockingKeepsIteratingWhileOnceStopsAfterOnePass(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let follower = try Event.timer(base: base) { _, _ in log.append("follower") }
        let leader = try Event.timer(base: base) { _, _ in
            log.append("leader")
            try? follower.add(timeout: .zero)
        }
        try leader.activate()
        #expect(try base.loop([.once, .nonBlocking]) == .finished)
        #expect(log.entries == ["leader"])
        #expect(follower.pending(.timeout) == .timeout)
        try follower.delete()

        try leader.activate()
        #expect(try base.loop(.nonBlocking) == .noEvents)
        #expect(log.entries == ["leader", "leader", "follower"])
    }

    @Test(arguments: BackendKind.allCases)
    func noExitOnEmptyKeepsRunningUntilLoopExitFires(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let start = now()
        try base.loopExit(after: .milliseconds(60))
        #expect(try base.loop(.noExitOnEmpty) == .finished)
        let elapsed = now() - start
        #expect(elapsed >= .milliseconds(60))
        #expect(elapsed < .seconds(1))
        #expect(base.gotExit)
        #expect(!base.gotBreak)
    }

    /// libevent's loopexit schedules a real one-shot event (`event_base_once`),
    /// so `event_base_loopexit(base, &tv); event_base_dispatch(base);` waits
    /// for it even with nothing else added, and returns with got_exit set.
    @Test(arguments: BackendKind.allCases)
    func loopExitAfterADelayKeepsAnOtherwiseEmptyLoopRunningUntilItFires(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let start = now()
        try base.loopExit(after: .milliseconds(50))
        let result = try base.loop()
        let elapsed = now() - start
        #expect(result == .finished)
        #expect(elapsed >= .milliseconds(50))
        #expect(base.gotExit)
        // The exit must not linger to end a later loop early.
        let fired = Counter()
        let timer = try Event.timer(base: base) { _, _ in fired.increment() }
        try timer.add(timeout: .milliseconds(100))
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 1)
    }

    @Test(arguments: BackendKind.allCases)
    func loopExitAfterADelayEndsALoopWithEventsLeft(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let ticks = Counter()
        let ticker = try Event.timer(base: base, persist: true) { _, _ in ticks.increment() }
        try ticker.add(timeout: .milliseconds(10))
        let start = now()
        try base.loopExit(after: .milliseconds(80))
        #expect(try base.loop() == .finished)
        let elapsed = now() - start
        #expect(elapsed >= .milliseconds(80))
        #expect(elapsed < .seconds(1))
        #expect(base.gotExit)
        #expect(ticks.value >= 3)
        #expect(ticker.pending(.timeout) == .timeout)
        try ticker.delete()
    }

    /// Each `event_base_loopexit` call schedules its own exit: asking again
    /// with a longer delay does not postpone the earlier one.
    @Test(arguments: BackendKind.allCases)
    func aLaterLongerLoopExitDoesNotPostponeAnEarlierOne(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let watchdog = try Event.timer(base: base) { ev, _ in
            log.append("watchdog")
            try? ev.base.loopBreak()
        }
        let keepAlive = try Event.timer(base: base) { _, _ in }
        try watchdog.add(timeout: .milliseconds(400))
        try keepAlive.add(timeout: .seconds(5))
        try base.loopExit(after: .milliseconds(30))
        try base.loopExit(after: .seconds(3))
        #expect(try base.loop() == .finished)
        #expect(log.entries == [], "the 30 ms exit was postponed")
        #expect(base.gotExit)
        try watchdog.delete()
        try keepAlive.delete()
    }

    // MARK: exit, break, continue

    @Test(arguments: BackendKind.allCases)
    func loopExitFromACallbackLetsTheRestOfThePassRun(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let next = try Event.timer(base: base) { _, _ in log.append("next pass") }
        let a = try Event.timer(base: base) { ev, _ in
            log.append("a")
            try? next.add(timeout: .zero)
            try? ev.base.loopExit()
        }
        let b = try Event.timer(base: base) { _, _ in log.append("b") }
        let c = try Event.timer(base: base) { _, _ in log.append("c") }
        for event in [a, b, c] { try event.activate() }
        #expect(try base.loop() == .finished)
        #expect(log.entries == ["a", "b", "c"])
        #expect(base.gotExit)
        #expect(!base.gotBreak)
        #expect(next.pending(.timeout) == .timeout)
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["a", "b", "c", "next pass"])
        #expect(!base.gotExit)
    }

    @Test(arguments: BackendKind.allCases)
    func loopBreakFromACallbackStopsRightAfterIt(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let a = try Event.timer(base: base) { ev, _ in
            log.append("a")
            try? ev.base.loopBreak()
        }
        let b = try Event.timer(base: base) { _, _ in log.append("b") }
        let c = try Event.timer(base: base) { _, _ in log.append("c") }
        for event in [a, b, c] { try event.activate() }
        #expect(try base.loop() == .finished)
        #expect(log.entries == ["a"])
        #expect(base.gotBreak)
        #expect(!base.gotExit)
        #expect(base.activeEventCount == 2)
        #expect(b.pending() == .timeout)
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["a", "b", "c"])
        #expect(!base.gotBreak)
    }

    /// A break from a callback of a `.once` loop belongs to that loop: it
    /// is reported by `gotBreak` and does not end the next loop.
    @Test(arguments: BackendKind.allCases)
    func loopBreakInAOnceLoopIsReportedAndDoesNotLeakIntoTheNextLoop(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let breaker = try Event.timer(base: base) { ev, _ in
            log.append("breaker")
            try? ev.base.loopBreak()
        }
        try breaker.activate()
        #expect(try base.loop(.once) == .finished)
        #expect(base.gotBreak, "the loop ended by the break, gotBreak must say so")
        let timer = try Event.timer(base: base) { _, _ in log.append("timer") }
        try timer.add(timeout: .milliseconds(10))
        #expect(try base.loop() == .noEvents, "a stale break ended the next loop")
        #expect(log.entries == ["breaker", "timer"])
        try timer.delete()
    }

    /// An exit from a callback of a `.once` loop belongs to that loop: it is
    /// reported by `gotExit` and does not end the next loop.
    @Test(arguments: BackendKind.allCases)
    func loopExitInAOnceLoopIsReportedAndDoesNotLeakIntoTheNextLoop(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let exiter = try Event.timer(base: base) { ev, _ in
            log.append("exiter")
            try? ev.base.loopExit()
        }
        try exiter.activate()
        #expect(try base.loop(.once) == .finished)
        #expect(base.gotExit, "the loop ended by the exit, gotExit must say so")
        let timer = try Event.timer(base: base) { _, _ in log.append("timer") }
        try timer.add(timeout: .milliseconds(10))
        #expect(try base.loop() == .noEvents, "a stale exit ended the next loop")
        #expect(log.entries == ["exiter", "timer"])
        try timer.delete()
    }

    @Test(arguments: BackendKind.allCases)
    func breakRequestedWhileNoLoopRunsEndsTheNextLoopAtOnce(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let fired = Counter()
        let timer = try Event.timer(base: base) { _, _ in fired.increment() }
        try timer.add(timeout: .milliseconds(20))
        try base.loopBreak()
        #expect(try base.loop() == .finished)
        #expect(base.gotBreak)
        #expect(fired.value == 0)
        #expect(timer.pending(.timeout) == .timeout)
        // The break was used up: the next loop runs normally.
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 1)
        #expect(!base.gotBreak)
    }

    @Test(arguments: BackendKind.allCases)
    func exitRequestedWhileNoLoopRunsEndsTheNextLoopAtOnce(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let fired = Counter()
        let timer = try Event.timer(base: base) { _, _ in fired.increment() }
        try timer.add(timeout: .milliseconds(20))
        try base.loopExit()
        #expect(try base.loop() == .finished)
        #expect(base.gotExit)
        #expect(fired.value == 0)
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 1)
        #expect(!base.gotExit)
    }

    /// What runs when: `a` and `b` are active at priority 1; `a` makes a
    /// descriptor readable whose event has priority 0. Without
    /// `loopContinue()` the pass finishes (`a`, `b`) before the loop polls
    /// and sees the descriptor; with it the loop polls right after `a`.
    private func continueScenario(_ kind: BackendKind, callContinue: Bool) throws -> [String] {
        let base = try makeBase(kind) { $0.priorityCount = 2 }
        let pair = SocketPair()
        let log = Log()
        let reader = try Event(base: base, fd: pair.left, flags: [.read], priority: 0) { _, _ in
            pair.drain()
            log.append("reader")
        }
        try reader.add()
        let a = try Event.timer(base: base, priority: 1) { ev, _ in
            log.append("a")
            pair.send()
            if callContinue { try? ev.base.loopContinue() }
        }
        let b = try Event.timer(base: base, priority: 1) { _, _ in log.append("b") }
        try a.activate()
        try b.activate()
        #expect(try base.loop() == .noEvents)
        return log.entries
    }

    @Test(arguments: BackendKind.allCases)
    func loopContinueMakesTheLoopPollBeforeRunningTheRestOfThePass(_ kind: BackendKind) throws {
        #expect(try continueScenario(kind, callContinue: false) == ["a", "b", "reader"])
        #expect(try continueScenario(kind, callContinue: true) == ["a", "reader", "b"])
    }

    @Test(arguments: BackendKind.allCases)
    func loopContinueAlsoLetsExpiredTimersIn(_ kind: BackendKind) throws {
        let base = try makeBase(kind) { $0.priorityCount = 2 }
        let log = Log()
        let urgent = try Event.timer(base: base, priority: 0) { _, _ in log.append("urgent") }
        let a = try Event.timer(base: base, priority: 1) { ev, _ in
            log.append("a")
            try? urgent.add(timeout: .zero)
            try? ev.base.loopContinue()
        }
        let b = try Event.timer(base: base, priority: 1) { _, _ in log.append("b") }
        try a.activate()
        try b.activate()
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["a", "urgent", "b"])
    }

    @Test(arguments: BackendKind.allCases)
    func loopFromInsideACallbackThrowsLoopAlreadyRunning(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let errors = TimerKit.Recorder<EventError?>()
        let timer = try Event.timer(base: base) { ev, _ in
            #expect(ev.base.isRunning)
            for options: EventBase.LoopOptions in [[], .nonBlocking] {
                do throws(EventError) {
                    try ev.base.loop(options)
                    errors.append(nil)
                } catch {
                    errors.append(error)
                }
            }
        }
        try timer.add(timeout: .zero)
        #expect(try base.loop() == .noEvents)
        #expect(errors.values == [.loopAlreadyRunning, .loopAlreadyRunning])
        #expect(!base.isRunning)
    }

    // MARK: once

    @Test(arguments: BackendKind.allCases)
    func onceWithATimeoutRunsItsClosureExactlyOnce(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let calls = TimerKit.Recorder<Event.Flags>()
        let start = now()
        let firedAt = Box<Duration>()
        try base.once(timeout: .milliseconds(20)) { what in
            firedAt.value = now() - start
            calls.append(what)
        }
        #expect(base.eventCount == 1)
        #expect(try base.loop() == .noEvents)
        #expect(calls.values == [.timeout])
        #expect(try #require(firedAt.value) >= .milliseconds(20))
        #expect(base.eventCount == 0)
        #expect(try base.loop() == .noEvents)
        #expect(calls.values == [.timeout])
    }

    @Test(arguments: BackendKind.allCases)
    func onceWithoutDescriptorOrTimeoutRunsOnTheNextIteration(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let calls = TimerKit.Recorder<Event.Flags>()
        try base.once { what in calls.append(what) }
        #expect(calls.values.isEmpty)
        #expect(try base.loop(.nonBlocking) == .noEvents)
        #expect(calls.values == [.timeout])
        #expect(try base.loop() == .noEvents)
        #expect(calls.count == 1)
    }

    @Test(arguments: BackendKind.allCases)
    func onceOnAReadableDescriptorRunsOnceAndDropsItsTimeout(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let calls = TimerKit.Recorder<Event.Flags>()
        pair.send()
        try base.once(fd: pair.left, flags: [.read], timeout: .milliseconds(700)) { what in calls.append(what) }
        #expect(base.isWatched(fd: pair.left))
        let start = now()
        #expect(try base.loop() == .noEvents)
        #expect(now() - start < .milliseconds(600), "the loop waited for the timeout of a fired one-shot event")
        // Data is still unread: a level-triggered registration would fire again.
        #expect(calls.values == [.read])
        #expect(!base.isWatched(fd: pair.left))
        #expect(try base.loop(.nonBlocking) == .noEvents)
        #expect(calls.values == [.read])
    }

    @Test(arguments: BackendKind.allCases)
    func onceOnADescriptorTimesOutWithoutData(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let calls = TimerKit.Recorder<Event.Flags>()
        try base.once(fd: pair.left, flags: [.read], timeout: .milliseconds(20)) { what in calls.append(what) }
        #expect(try base.loop() == .noEvents)
        #expect(calls.values == [.timeout])
        #expect(!base.isWatched(fd: pair.left))
    }

    @Test(arguments: BackendKind.allCases)
    func onceRefusesPersistentAndSignalEvents(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let reason = "a one-shot event cannot be a signal or persistent"
        #expect(throws: EventError.invalidFlags([.read, .persist], fd: pair.left, reason: reason)) {
            try base.once(fd: pair.left, flags: [.read, .persist]) { _ in }
        }
        #expect(throws: EventError.invalidFlags([.signal], fd: SIGUSR1, reason: reason)) {
            try base.once(fd: SIGUSR1, flags: [.signal]) { _ in }
        }
        #expect(base.eventCount == 0)
        #expect(try base.loop() == .noEvents)
    }

    // MARK: manual activation

    @Test(arguments: BackendKind.allCases)
    func activatingAnEventNeverAddedRunsItWithTheGivenFlags(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let calls = TimerKit.Recorder<Event.Flags>()
        let reader = try Event(base: base, fd: pair.left, flags: [.read]) { _, what in calls.append(what) }
        let timer = try Event.timer(base: base) { _, what in calls.append(what) }
        try reader.activate([.read, .write])
        #expect(reader.pending() == [.read, .write])
        #expect(base.eventCount == 0)
        #expect(base.activeEventCount == 1)
        #expect(try base.loop() == .noEvents)
        #expect(calls.values == [[.read, .write]])
        #expect(!reader.isPending)
        #expect(!base.isWatched(fd: pair.left))

        try timer.activate()
        #expect(try base.loop() == .noEvents)
        #expect(calls.values == [[.read, .write], .timeout])
    }

    @Test(arguments: BackendKind.allCases)
    func activatingAnActiveEventMergesTheFlagsIntoOneCallback(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let calls = TimerKit.Recorder<Event.Flags>()
        let event = try Event.timer(base: base) { _, what in calls.append(what) }
        let before = base.coalescedActivationCount
        try event.activate(.read)
        try event.activate(.write)
        #expect(base.activeEventCount == 1)
        #expect(base.coalescedActivationCount == before + 1)
        #expect(event.pending() == [.read, .write])
        #expect(try base.loop() == .noEvents)
        #expect(calls.values == [[.read, .write]])
    }

    @Test(arguments: BackendKind.allCases)
    func readinessMergesIntoAManualActivation(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let calls = TimerKit.Recorder<Event.Flags>()
        let reader = try Event(base: base, fd: pair.left, flags: [.read]) { _, what in calls.append(what) }
        try reader.add()
        pair.send()
        try reader.activate(.write)
        let before = base.coalescedActivationCount
        #expect(try base.loop() == .noEvents)
        #expect(calls.values == [[.read, .write]])
        #expect(base.coalescedActivationCount == before + 1)
    }
}
