import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Priorities and starvation controls on every backend (owned bases):
/// `event_base_priority_init`, `event_priority_set`, and
/// `event_config_set_max_dispatch_interval`.
@Suite struct PriorityTests {
    @Test func defaultPriorityIsTheMiddleOne() throws {
        for (count, middle) in [(1, 0), (2, 1), (3, 1), (4, 2), (256, 128)] {
            let base = try makeBase(.epoll) { $0.priorityCount = count }
            #expect(base.priorityCount == count)
            let event = try Event.timer(base: base) { _, _ in }
            #expect(event.priority == middle, "priorityCount \(count)")
        }
    }

    @Test func invalidPriorityCountsAreRefused() throws {
        for count in [0, -1, 257] {
            #expect(throws: EventError.self, "priorityCount \(count)") {
                _ = try makeBase(.epoll) { $0.priorityCount = count }
            }
        }
    }

    @Test(arguments: BackendKind.allCases)
    func invalidPrioritiesThrow(_ kind: BackendKind) throws {
        let base = try makeBase(kind) { $0.priorityCount = 3 }
        for bad in [-1, 3, 100] {
            #expect(throws: EventError.invalidPriority(bad, count: 3)) {
                _ = try Event.timer(base: base, priority: bad) { _, _ in }
            }
        }
        let event = try Event.timer(base: base, priority: 2) { _, _ in }
        #expect(event.priority == 2)
        for bad in [-1, 3] {
            #expect(throws: EventError.invalidPriority(bad, count: 3)) { try event.setPriority(bad) }
        }
        #expect(event.priority == 2)
        try event.setPriority(0)
        #expect(event.priority == 0)
    }

    @Test(arguments: BackendKind.allCases)
    func settingThePriorityOfAnActiveEventThrows(_ kind: BackendKind) throws {
        let base = try makeBase(kind) { $0.priorityCount = 3 }
        let ran = Counter()
        let event = try Event.timer(base: base) { _, _ in ran.increment() }
        try event.activate()
        #expect(throws: EventError.eventActive(call: "Event.setPriority")) { try event.setPriority(0) }
        #expect(event.priority == 1)
        #expect(try base.loop() == .noEvents)
        #expect(ran.value == 1)
        try event.setPriority(0)
        #expect(event.priority == 0)
    }

    @Test(arguments: BackendKind.allCases)
    func settingThePriorityOfAnAddedEventWorks(_ kind: BackendKind) throws {
        let base = try makeBase(kind) { $0.priorityCount = 3 }
        let log = Log()
        let first = try Event.timer(base: base) { _, _ in log.append("first") }
        let second = try Event.timer(base: base) { _, _ in log.append("second") }
        try first.add(timeout: .milliseconds(5))
        try second.add(timeout: .milliseconds(5))
        try second.setPriority(0)
        TimerKit.pause(.milliseconds(10))
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["second", "first"])
    }

    @Test(arguments: BackendKind.allCases)
    func higherPriorityRunsFirstWithinAPass(_ kind: BackendKind) throws {
        let base = try makeBase(kind) { $0.priorityCount = 3 }
        let log = Log()
        let low = try Event.timer(base: base, priority: 2) { _, _ in log.append("low") }
        let middle = try Event.timer(base: base) { _, _ in log.append("middle") }
        let high = try Event.timer(base: base, priority: 0) { _, _ in log.append("high") }
        try low.activate()
        try middle.activate()
        try high.activate()
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["high", "middle", "low"])
    }

    @Test(arguments: BackendKind.allCases)
    func readableDescriptorsRunInPriorityOrder(_ kind: BackendKind) throws {
        let base = try makeBase(kind) { $0.priorityCount = 3 }
        let lowPair = SocketPair()
        let highPair = SocketPair()
        let log = Log()
        let low = try Event(base: base, fd: lowPair.left, flags: [.read], priority: 2) { _, _ in log.append("low") }
        let high = try Event(base: base, fd: highPair.left, flags: [.read], priority: 0) { _, _ in log.append("high") }
        try low.add()
        try high.add()
        lowPair.send()
        highPair.send()
        #expect(try base.loop(.once) == .finished)
        #expect(log.entries == ["high", "low"])
    }

    /// libevent processes only the highest non-empty priority per pass: an
    /// event that keeps re-activating itself at priority 0 runs until it
    /// stops, and only then does the priority-2 event run.
    @Test(arguments: BackendKind.allCases)
    func reActivatedHighPriorityEventStarvesLowPriority(_ kind: BackendKind) throws {
        let base = try makeBase(kind) { $0.priorityCount = 3 }
        let log = Log()
        let high = try Event.timer(base: base, priority: 0) { ev, _ in
            log.append("high")
            if log.entries.count < 5 { try? ev.activate() }
        }
        let low = try Event.timer(base: base, priority: 2) { _, _ in log.append("low") }
        try low.activate()
        try high.activate()
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == Array(repeating: "high", count: 5) + ["low"])
    }

    /// The same across passes: a persistent, always-readable descriptor at
    /// priority 0 is active in every pass, so the priority-2 event waits
    /// until it is deleted.
    @Test(arguments: BackendKind.allCases)
    func busyHighPriorityDescriptorStarvesLowPriorityUntilItStops(_ kind: BackendKind) throws {
        let base = try makeBase(kind) { $0.priorityCount = 3 }
        let pair = SocketPair()
        let log = Log()
        let high = try Event(base: base, fd: pair.left, flags: [.read, .persist], priority: 0) { ev, _ in
            log.append("high")
            if log.entries.count == 5 { try? ev.delete() }
        }
        let low = try Event.timer(base: base, priority: 2) { _, _ in log.append("low") }
        try high.add()
        pair.send()
        try low.activate()
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == Array(repeating: "high", count: 5) + ["low"])
    }

    /// libevent's `event_running_priority`: activating a higher-priority
    /// event from a callback lets it run before the rest of the pass.
    @Test(arguments: BackendKind.allCases)
    func activatingAHigherPriorityFromACallbackRunsItBeforeTheRestOfThePass(_ kind: BackendKind) throws {
        let base = try makeBase(kind) { $0.priorityCount = 3 }
        let log = Log()
        let urgent = try Event.timer(base: base, priority: 0) { _, _ in log.append("urgent") }
        let a = try Event.timer(base: base, priority: 2) { _, _ in
            log.append("a")
            try? urgent.activate()
        }
        let b = try Event.timer(base: base, priority: 2) { _, _ in log.append("b") }
        try a.activate()
        try b.activate()
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["a", "urgent", "b"])
    }

    // MARK: starvation limits

    /// Ten events `e0`…`e9` are active at priority 1; `e0` makes a descriptor
    /// readable whose one-shot event has priority 0. The marker runs as soon
    /// as the loop polls again, so its place in the log shows where the
    /// first pass ended.
    private func markerScenario(
        _ kind: BackendKind, slowCallbacks: Bool = false,
        configure: (inout EventBase.Configuration) -> Void
    ) throws -> [String] {
        let base = try makeBase(kind) {
            $0.priorityCount = 2
            configure(&$0)
        }
        let pair = SocketPair()
        let log = Log()
        let marker = try Event(base: base, fd: pair.left, flags: [.read], priority: 0) { _, _ in
            pair.drain()
            log.append("marker")
        }
        try marker.add()
        var events: [Event] = []
        for index in 0..<10 {
            let event = try Event.timer(base: base, priority: 1) { _, _ in
                log.append("e\(index)")
                if index == 0 { pair.send() }
                if slowCallbacks { TimerKit.pause(.milliseconds(2)) }
            }
            try event.activate()
            events.append(event)
        }
        #expect(try base.loop() == .noEvents)
        return log.entries
    }

    @Test(arguments: BackendKind.allCases)
    func withoutLimitsAPassRunsEveryActiveCallback(_ kind: BackendKind) throws {
        let log = try markerScenario(kind) { _ in }
        #expect(log == (0..<10).map { "e\($0)" } + ["marker"])
    }

    @Test(arguments: BackendKind.allCases)
    func maxCallbacksPerPassMakesTheLoopPollBetweenBatches(_ kind: BackendKind) throws {
        let log = try markerScenario(kind) {
            $0.maxCallbacksPerPass = 2
            $0.limitsFromPriority = 0
        }
        #expect(log == ["e0", "e1", "marker"] + (2..<10).map { "e\($0)" })
    }

    @Test(arguments: BackendKind.allCases)
    func maxDispatchIntervalMakesTheLoopPollAfterSlowCallbacks(_ kind: BackendKind) throws {
        // Each callback takes 2 ms against a 1 ms budget: one callback per pass.
        let log = try markerScenario(kind, slowCallbacks: true) {
            $0.maxDispatchInterval = .milliseconds(1)
            $0.limitsFromPriority = 0
        }
        #expect(log == ["e0", "marker"] + (1..<10).map { "e\($0)" })
    }

    /// Counts the loop's passes: a persistent, always-readable event at the
    /// same priority as ten manually activated ones is found active again
    /// (and coalesced) by every poll until its turn comes.
    private func coalescedPolls(
        _ kind: BackendKind, priority: Int, configure: (inout EventBase.Configuration) -> Void
    ) throws -> Int {
        let base = try makeBase(kind) {
            $0.priorityCount = 2
            configure(&$0)
        }
        let pair = SocketPair()
        let ran = Counter()
        let probe = try Event(base: base, fd: pair.left, flags: [.read, .persist], priority: priority) { ev, _ in
            try? ev.delete()
        }
        try probe.add()
        pair.send()
        var events: [Event] = []
        for _ in 0..<10 {
            let event = try Event.timer(base: base, priority: priority) { _, _ in ran.increment() }
            try event.activate()
            events.append(event)
        }
        let before = base.coalescedActivationCount
        #expect(try base.loop() == .noEvents)
        #expect(ran.value == 10)
        return base.coalescedActivationCount - before
    }

    @Test(arguments: BackendKind.allCases)
    func limitsApplyOnlyFromLimitsFromPriorityOn(_ kind: BackendKind) throws {
        let limits: (inout EventBase.Configuration) -> Void = {
            $0.maxCallbacksPerPass = 1
            $0.limitsFromPriority = 1
        }
        // Priority 0 is exempt: one pass runs all ten and the probe.
        #expect(try coalescedPolls(kind, priority: 0, configure: limits) == 0)
        // Priority 1 is limited to one callback a pass: ten more polls.
        #expect(try coalescedPolls(kind, priority: 1, configure: limits) == 10)
        // Two a pass: five more polls.
        #expect(try coalescedPolls(kind, priority: 1) { $0.maxCallbacksPerPass = 2 } == 5)
    }
}
