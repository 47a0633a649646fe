import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Timers on every backend (owned bases): one-shot, persistent, common
/// timeouts, the cached time and precise timers, as libevent defines them.
@Suite struct TimerTests {
    // MARK: one-shot timers

    @Test(arguments: BackendKind.allCases)
    func oneShotTimerFiresOnceAfterItsTimeout(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let fired = Counter()
        let firedAt = Box<Duration>()
        let what = Box<Event.Flags>()
        let start = now()
        let timer = try Event.timer(base: base) { _, flags in
            firedAt.value = now() - start
            what.value = flags
            fired.increment()
        }
        try timer.add(timeout: .milliseconds(40))
        #expect(base.eventCount == 1)
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 1)
        #expect(what.value == .timeout)
        let elapsed = try #require(firedAt.value)
        #expect(elapsed >= .milliseconds(40))
        #expect(elapsed < .milliseconds(1040))
        #expect(!timer.isPending)
        #expect(base.eventCount == 0)
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 1)
    }

    @Test(arguments: BackendKind.allCases)
    func subMillisecondTimerNeverFiresEarly(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let firedAt = Box<Duration>()
        let start = now()
        let timer = try Event.timer(base: base) { _, _ in firedAt.value = now() - start }
        try timer.add(timeout: .microseconds(300))
        try base.loop()
        let elapsed = try #require(firedAt.value)
        #expect(elapsed >= .microseconds(300))
        #expect(elapsed < .seconds(1))
    }

    @Test(arguments: BackendKind.allCases)
    func zeroTimeoutFiresOnTheNextIteration(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let fired = Counter()
        let timer = try Event.timer(base: base) { _, what in
            #expect(what == .timeout)
            fired.increment()
        }
        try timer.add(timeout: .zero)
        #expect(timer.pending(.timeout) == .timeout)
        #expect(fired.value == 0)
        // It runs in the first pass; the next finds nothing left (libevent returns 1).
        #expect(try base.loop(.nonBlocking) == .noEvents)
        #expect(fired.value == 1)
        #expect(!timer.isPending)
    }

    /// A zero timeout added from a callback is not run in the pass that
    /// added it: the events already active run first.
    @Test(arguments: BackendKind.allCases)
    func zeroTimeoutAddedFromACallbackRunsAfterTheRestOfThePass(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let late = try Event.timer(base: base) { _, _ in log.append("timer") }
        let first = try Event.timer(base: base) { _, _ in
            log.append("first")
            try? late.add(timeout: .zero)
        }
        let second = try Event.timer(base: base) { _, _ in log.append("second") }
        try first.activate()
        try second.activate()
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["first", "second", "timer"])
    }

    @Test(arguments: BackendKind.allCases)
    func timersFireInDeadlineOrderWhateverTheAddOrder(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let delays = [50, 10, 40, 0, 30, 5, 20]
        var timers: [Event] = []
        for delay in delays {
            let timer = try Event.timer(base: base) { _, _ in log.append("\(delay)") }
            try timer.add(timeout: .milliseconds(delay))
            timers.append(timer)
        }
        #expect(base.eventCount == delays.count)
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == delays.sorted().map { "\($0)" })
    }

    @Test(arguments: BackendKind.allCases)
    func deletingATimerBeforeTheLoopPreventsIt(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let fired = Counter()
        let timer = try Event.timer(base: base) { _, _ in fired.increment() }
        try timer.add(timeout: .milliseconds(20))
        try timer.delete()
        #expect(!timer.isPending)
        #expect(timer.timeoutRemaining == nil)
        #expect(base.eventCount == 0)
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 0)
    }

    @Test(arguments: BackendKind.allCases)
    func deletingATimerFromAnEarlierCallbackPreventsIt(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let victim = try Event.timer(base: base) { _, _ in log.append("victim") }
        let killer = try Event.timer(base: base) { _, _ in
            log.append("killer")
            try? victim.delete()
        }
        let marker = try Event.timer(base: base) { _, _ in log.append("marker") }
        try victim.add(timeout: .milliseconds(40))
        try killer.add(timeout: .milliseconds(10))
        try marker.add(timeout: .milliseconds(70))
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["killer", "marker"])
    }

    /// Deadlines that pass in the same wait: the earlier callback deletes the
    /// later timer while both are already active; it must not run.
    @Test(arguments: BackendKind.allCases)
    func deletingAnExpiredButNotYetRunTimerPreventsIt(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let victim = try Event.timer(base: base) { _, _ in log.append("victim") }
        let killer = try Event.timer(base: base) { _, _ in
            log.append("killer")
            try? victim.delete()
        }
        try killer.add(timeout: .milliseconds(1))
        try victim.add(timeout: .milliseconds(2))
        TimerKit.pause(.milliseconds(10))
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["killer"])
    }

    @Test(arguments: BackendKind.allCases)
    func reAddingATimerReschedulesIt(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let log = Log()
        let early = try Event.timer(base: base) { _, _ in log.append("early") }
        let marker = try Event.timer(base: base) { _, _ in log.append("marker") }
        let late = try Event.timer(base: base) { _, _ in log.append("late") }
        try marker.add(timeout: .milliseconds(60))
        try early.add(timeout: .milliseconds(500))
        try early.add(timeout: .milliseconds(20))
        try late.add(timeout: .milliseconds(20))
        try late.add(timeout: .milliseconds(120))
        #expect(base.eventCount == 3)
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["early", "marker", "late"])
    }

    @Test(arguments: BackendKind.allCases)
    func oneShotTimerReAddedFromItsCallbackFiresAgain(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let fired = Counter()
        let timer = try Event.timer(base: base) { ev, _ in
            fired.increment()
            if fired.value < 3 { try? ev.add(timeout: .milliseconds(5)) }
        }
        try timer.add(timeout: .milliseconds(5))
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 3)
    }

    // MARK: persistent timers

    @Test(arguments: BackendKind.allCases)
    func persistentTimerFiresRepeatedlyAtItsPeriod(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let times = TimerKit.Recorder<Duration>()
        let start = now()
        let timer = try Event.timer(base: base, persist: true) { _, what in
            #expect(what == .timeout)
            times.append(now() - start)
        }
        try timer.add(timeout: .milliseconds(20))
        try base.loopExit(after: .milliseconds(210))
        #expect(try base.loop() == .finished)
        #expect(base.gotExit)
        let fired = times.values
        #expect((8...11).contains(fired.count), "fired \(fired.count) times in 210 ms at a 20 ms period")
        for (index, time) in fired.enumerated() {
            #expect(time >= .milliseconds(20 * (index + 1)), "firing \(index) came early: \(time)")
        }
        #expect(timer.pending(.timeout) == .timeout)
        try timer.delete()
        #expect(!timer.isPending)
    }

    /// libevent's `event_persist_closure`: a persistent timer that fired by
    /// timeout is rescheduled at its last deadline plus its interval, not at
    /// now plus its interval, so a late run does not shift the schedule.
    /// The first run is made ~20 ms late by a callback that blocks the loop.
    @Test(arguments: BackendKind.allCases)
    func persistentTimerDoesNotDriftWhenARunIsLate(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let period = Duration.milliseconds(40)
        let start = now()
        let blocker = try Event.timer(base: base) { _, _ in TimerKit.pause(until: start + .milliseconds(60)) }
        let deadlines = TimerKit.Recorder<Duration>()
        let timer = try Event.timer(base: base, persist: true) { ev, _ in
            if let deadline = TimerKit.scheduledDeadline(of: ev) { deadlines.append(deadline - start) }
            if deadlines.count == 3 { try? ev.delete() }
        }
        try timer.add(timeout: period)
        try blocker.add(timeout: .milliseconds(5))
        #expect(try base.loop() == .noEvents)
        let scheduled = deadlines.values
        try #require(scheduled.count == 3)
        for (index, deadline) in scheduled.enumerated() {
            let expected = period * (index + 2)
            #expect(deadline >= expected - .milliseconds(1), "next deadline \(index): \(deadline), expected \(expected)")
            #expect(deadline <= expected + .milliseconds(8), "next deadline \(index): \(deadline), expected \(expected)")
        }
    }

    @Test(arguments: BackendKind.allCases)
    func persistentTimerFiredByActivationIsRescheduledFromNow(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let start = now()
        let deadline = Box<Duration>()
        let timer = try Event.timer(base: base, persist: true) { ev, what in
            #expect(what == .read)
            deadline.value = TimerKit.scheduledDeadline(of: ev).map { $0 - start }
            try? ev.delete()
        }
        try timer.add(timeout: .milliseconds(100))
        TimerKit.pause(.milliseconds(30))
        try timer.activate(.read)
        #expect(try base.loop() == .noEvents)
        let next = try #require(deadline.value)
        #expect(next >= .milliseconds(130))
        #expect(next < .milliseconds(1100))
    }

    // MARK: remaining time and pending state

    @Test(arguments: BackendKind.allCases)
    func timeoutRemainingCountsDownAndPendingReportsTheTimeout(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let timer = try Event.timer(base: base) { _, _ in }
        #expect(timer.timeoutRemaining == nil)
        #expect(timer.pending(.timeout) == [])
        try timer.add(timeout: .milliseconds(500))
        #expect(timer.pending(.timeout) == .timeout)
        #expect(timer.pending() == .timeout)
        let first = try #require(timer.timeoutRemaining)
        #expect(first <= .milliseconds(500))
        #expect(first > .milliseconds(300))
        TimerKit.pause(.milliseconds(20))
        let second = try #require(timer.timeoutRemaining)
        #expect(second <= first - .milliseconds(20))
        #expect(second > .zero)
        try timer.delete()
        #expect(timer.timeoutRemaining == nil)
        #expect(timer.pending(.timeout) == [])
    }

    @Test(arguments: BackendKind.allCases)
    func timeoutRemainingDecreasesWhileTheLoopRuns(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let long = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in }
        try long.add(timeout: .seconds(5))
        #expect(long.pending() == [.read, .timeout])
        let remaining = TimerKit.Recorder<Duration>()
        let ticker = try Event.timer(base: base, persist: true) { ev, _ in
            if let left = long.timeoutRemaining { remaining.append(left) }
            if remaining.count == 3 { try? ev.delete() }
        }
        try ticker.add(timeout: .milliseconds(10))
        try base.loop(.once)
        try base.loop(.once)
        try base.loop(.once)
        let values = remaining.values
        try #require(values.count == 3)
        #expect(values[0] < .seconds(5))
        #expect(values[1] < values[0])
        #expect(values[2] < values[1])
        #expect(long.pending() == [.read, .timeout])
        try long.delete()
        #expect(long.pending() == [])
    }

    // MARK: common timeouts

    @Test(arguments: BackendKind.allCases)
    func commonTimeoutIsSharedPerDuration(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let twenty = try base.commonTimeout(.milliseconds(20))
        #expect(try base.commonTimeout(.milliseconds(20)) == twenty)
        #expect(try base.commonTimeout(.microseconds(20_000)) == twenty)
        #expect(try base.commonTimeout(.milliseconds(30)) != twenty)
        #expect(twenty.duration == .milliseconds(20))
        #expect(throws: EventError.invalidTimeout(.milliseconds(-1))) { try base.commonTimeout(.milliseconds(-1)) }
        let other = try makeBase(kind)
        let foreign = try other.commonTimeout(.milliseconds(20))
        #expect(foreign != twenty)
        let timer = try Event.timer(base: base) { _, _ in }
        #expect(throws: EventError.wrongBase(call: "Event.add(timeout: CommonTimeout)")) {
            try timer.add(timeout: foreign)
        }
        #expect(!timer.isPending)
    }

    @Test(arguments: BackendKind.allCases)
    func thousandEventsOnOneCommonTimeoutAllFireInInsertionOrder(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let common = try base.commonTimeout(.milliseconds(20))
        let order = TimerKit.Recorder<Int>()
        let firstAt = Box<Duration>()
        let start = now()
        var events: [Event] = []
        for index in 0..<1000 {
            let event = try Event.timer(base: base) { _, what in
                #expect(what == .timeout)
                if index == 0 { firstAt.value = now() - start }
                order.append(index)
            }
            try event.add(timeout: common)
            events.append(event)
        }
        #expect(base.eventCount == 1000)
        #expect(events.allSatisfy { $0.pending(.timeout) == .timeout })
        #expect(try base.loop() == .noEvents)
        #expect(order.values == Array(0..<1000))
        let first = try #require(firstAt.value)
        #expect(first >= .milliseconds(20))
        #expect(first < .seconds(1))
        #expect(base.eventCount == 0)
    }

    @Test(arguments: BackendKind.allCases)
    func deletingTheHeadOrAMiddleEventOfACommonTimeoutWorks(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let common = try base.commonTimeout(.milliseconds(20))
        let order = TimerKit.Recorder<Int>()
        var events: [Event] = []
        for index in 0..<6 {
            let event = try Event.timer(base: base) { _, _ in order.append(index) }
            try event.add(timeout: common)
            events.append(event)
        }
        try events[0].delete()
        try events[3].delete()
        #expect(!events[0].isPending)
        #expect(base.eventCount == 4)
        #expect(try base.loop() == .noEvents)
        #expect(order.values == [1, 2, 4, 5])
    }

    @Test(arguments: BackendKind.allCases)
    func deletingEveryEventOfACommonTimeoutLeavesNothingToRun(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let common = try base.commonTimeout(.milliseconds(20))
        let fired = Counter()
        var events: [Event] = []
        for _ in 0..<3 {
            let event = try Event.timer(base: base) { _, _ in fired.increment() }
            try event.add(timeout: common)
            events.append(event)
        }
        for event in events { try event.delete() }
        #expect(base.eventCount == 0)
        #expect(try base.loop() == .noEvents)
        // Re-adding after the queue emptied arms it again.
        try events[1].add(timeout: common)
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 1)
    }

    /// The queue's head is re-armed when the head is deleted, so a later
    /// event does not fire at the deleted head's deadline.
    @Test(arguments: BackendKind.allCases)
    func deletingTheHeadOfACommonTimeoutDelaysTheQueueToTheNextEvent(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let common = try base.commonTimeout(.milliseconds(40))
        let start = now()
        let headTimer = try Event.timer(base: base) { _, _ in }
        try headTimer.add(timeout: common)
        TimerKit.pause(.milliseconds(20))
        let firedAt = Box<Duration>()
        let second = try Event.timer(base: base) { _, _ in firedAt.value = now() - start }
        try second.add(timeout: common)
        try headTimer.delete()
        #expect(try base.loop() == .noEvents)
        let elapsed = try #require(firedAt.value)
        #expect(elapsed >= .milliseconds(60))
    }

    @Test(arguments: BackendKind.allCases)
    func commonTimeoutsAndOrdinaryTimersFireInDeadlineOrder(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let common = try base.commonTimeout(.milliseconds(30))
        let log = Log()
        let late = try Event.timer(base: base) { _, _ in log.append("plain 60") }
        let commonEvent = try Event.timer(base: base) { _, _ in log.append("common 30") }
        let early = try Event.timer(base: base) { _, _ in log.append("plain 10") }
        try late.add(timeout: .milliseconds(60))
        try commonEvent.add(timeout: common)
        try early.add(timeout: .milliseconds(10))
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["plain 10", "common 30", "plain 60"])
    }

    @Test(arguments: BackendKind.allCases)
    func reAddingMovesAnEventBetweenCommonAndOrdinaryTimeouts(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let common = try base.commonTimeout(.milliseconds(80))
        let log = Log()
        let marker = try Event.timer(base: base) { _, _ in log.append("marker") }
        let moved = try Event.timer(base: base) { _, _ in log.append("moved") }
        let toCommon = try Event.timer(base: base) { _, _ in log.append("toCommon") }
        try marker.add(timeout: .milliseconds(40))
        try moved.add(timeout: common)
        try moved.add(timeout: .milliseconds(10))
        try toCommon.add(timeout: .milliseconds(5))
        try toCommon.add(timeout: common)
        #expect(base.eventCount == 3)
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["moved", "marker", "toCommon"])
    }

    @Test(arguments: BackendKind.allCases)
    func persistentEventOnACommonTimeoutKeepsFiring(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let common = try base.commonTimeout(.milliseconds(20))
        let times = TimerKit.Recorder<Duration>()
        let start = now()
        let event = try Event.timer(base: base, persist: true) { _, what in
            #expect(what == .timeout)
            times.append(now() - start)
        }
        let companion = try Event.timer(base: base) { _, _ in }
        try event.add(timeout: common)
        try companion.add(timeout: common)
        try base.loopExit(after: .milliseconds(130))
        #expect(try base.loop() == .finished)
        let fired = times.values
        #expect((4...7).contains(fired.count), "fired \(fired.count) times in 130 ms at a 20 ms period")
        for (index, time) in fired.enumerated() {
            #expect(time >= .milliseconds(20 * (index + 1)))
        }
        #expect(event.pending(.timeout) == .timeout)
        try event.delete()
    }

    /// libevent's `event_persist_closure` applies to common timeouts too: a
    /// persistent event on a common timeout that fired by timeout is
    /// rescheduled at its last deadline plus the duration (libevent keeps the
    /// queue ordered with `insert_common_timeout_inorder`).
    @Test(arguments: BackendKind.allCases)
    func persistentEventOnACommonTimeoutDoesNotDriftWhenARunIsLate(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let period = Duration.milliseconds(40)
        let common = try base.commonTimeout(period)
        let start = now()
        let blocker = try Event.timer(base: base) { _, _ in TimerKit.pause(until: start + .milliseconds(60)) }
        let deadlines = TimerKit.Recorder<Duration>()
        let event = try Event.timer(base: base, persist: true) { ev, _ in
            if let deadline = TimerKit.scheduledDeadline(of: ev) { deadlines.append(deadline - start) }
            if deadlines.count == 3 { try? ev.delete() }
        }
        try event.add(timeout: common)
        try blocker.add(timeout: .milliseconds(5))
        #expect(try base.loop() == .noEvents)
        let scheduled = deadlines.values
        try #require(scheduled.count == 3)
        for (index, deadline) in scheduled.enumerated() {
            let expected = period * (index + 2)
            #expect(deadline >= expected - .milliseconds(1), "next deadline \(index): \(deadline), expected \(expected)")
            #expect(deadline <= expected + .milliseconds(8), "next deadline \(index): \(deadline), expected \(expected)")
        }
    }

    // MARK: cached time

    @Test(arguments: BackendKind.allCases)
    func cachedTimeIsConstantWithinAnIterationAndUpdatesOnRequest(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let readings = TimerKit.Recorder<Duration>()
        let wallClock = Box<Duration>()
        let observer = try Event.timer(base: base) { ev, _ in
            if let time = try? ev.base.cachedTime() { readings.append(time) }
        }
        let sleeper = try Event.timer(base: base) { ev, _ in
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            wallClock.value = .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
            if let time = try? ev.base.cachedTime() { readings.append(time) }
            TimerKit.pause(.milliseconds(5))
            if let time = try? ev.base.cachedTime() { readings.append(time) }
            try? ev.base.updateCachedTime()
            if let time = try? ev.base.cachedTime() { readings.append(time) }
        }
        try observer.activate()
        try sleeper.activate()
        try base.loop()
        let values = readings.values
        try #require(values.count == 4)
        #expect(values[0] == values[1], "two callbacks of one pass saw different cached times")
        #expect(values[1] == values[2], "the cached time moved within one callback")
        #expect(values[3] >= values[2] + .milliseconds(5), "updateCachedTime did not refresh it")
        let wall = try #require(wallClock.value)
        #expect(values[1] > wall - .seconds(1) && values[1] < wall + .seconds(1), "not wall-clock time")
    }

    @Test(arguments: BackendKind.allCases)
    func cachedTimeOutsideTheLoopIsTheCurrentTime(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let first = try base.cachedTime()
        TimerKit.pause(.milliseconds(3))
        let second = try base.cachedTime()
        #expect(second >= first + .milliseconds(3))
        try base.updateCachedTime()
        #expect(try base.cachedTime() >= second)
    }

    // MARK: precise timers

    @Test func preciseTimerUnderEpollFiresNoEarlierThanItsTimeout() throws {
        let base = try makeBase(.epoll) { $0.preciseTimer = true }
        for timeout in [Duration.milliseconds(2), .microseconds(500), .microseconds(2500)] {
            let firedAt = Box<Duration>()
            let start = now()
            let timer = try Event.timer(base: base) { _, _ in firedAt.value = now() - start }
            try timer.add(timeout: timeout)
            #expect(try base.loop() == .noEvents)
            let elapsed = try #require(firedAt.value)
            #expect(elapsed >= timeout, "a \(timeout) timer fired after \(elapsed)")
            #expect(elapsed < .seconds(1))
        }
    }
}
