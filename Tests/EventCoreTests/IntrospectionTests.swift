import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// What a base tells about its events (libevent's `event_base_foreach_event`,
/// `event_base_dump_events`, `event_base_get_num_events`), on every backend.
@Suite struct IntrospectionTests {
    /// A base with one event in each state introspection must report, plus
    /// internal events (a common timeout's timer, the loop-exit timer) and
    /// events it must not report (never added, deleted).
    private struct Population {
        let base: EventBase
        let pair: SocketPair
        let reader: Event
        let timer: Event
        let readerWithTimeout: Event
        let activeOnly: Event
        let insertedAndActive: Event
        let onCommonTimeout: Event
        let neverAdded: Event
        let deleted: Event

        var reported: [Event] { [reader, timer, readerWithTimeout, activeOnly, insertedAndActive, onCommonTimeout] }

        init(_ kind: BackendKind) throws {
            base = try makeBase(kind)
            pair = SocketPair()
            reader = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in }
            try reader.add()
            timer = try Event.timer(base: base) { _, _ in }
            try timer.add(timeout: .seconds(5))
            readerWithTimeout = try Event(base: base, fd: pair.right, flags: [.read]) { _, _ in }
            try readerWithTimeout.add(timeout: .seconds(5))
            activeOnly = try Event.timer(base: base) { _, _ in }
            try activeOnly.activate(.read)
            insertedAndActive = try Event(base: base, fd: pair.left, flags: [.write]) { _, _ in }
            try insertedAndActive.add()
            try insertedAndActive.activate(.write)
            onCommonTimeout = try Event.timer(base: base) { _, _ in }
            let common = try base.commonTimeout(.seconds(5))
            try onCommonTimeout.add(timeout: common)
            neverAdded = try Event(base: base, fd: pair.right, flags: [.write]) { _, _ in }
            deleted = try Event.timer(base: base) { _, _ in }
            try deleted.add(timeout: .seconds(5))
            try deleted.delete()
            try base.loopExit(after: .seconds(5))
        }
    }

    private func identities(_ events: [Event]) -> [ObjectIdentifier] {
        events.map(ObjectIdentifier.init).sorted()
    }

    @Test(arguments: BackendKind.allCases)
    func allEventsSeesInsertedTimedAndActiveEventsOnceEach(_ kind: BackendKind) throws {
        let population = try Population(kind)
        defer { try? population.base.shutdown() }
        let all = try population.base.allEvents()
        #expect(all.count == population.reported.count, "reported \(all.count) events")
        #expect(Set(all.map(ObjectIdentifier.init)).count == all.count, "an event was reported twice")
        #expect(identities(all) == identities(population.reported))
    }

    @Test(arguments: BackendKind.allCases)
    func forEachEventVisitsTheSameEventsOnceEach(_ kind: BackendKind) throws {
        let population = try Population(kind)
        defer { try? population.base.shutdown() }
        let visited = TimerKit.Recorder<ObjectIdentifier>()
        try population.base.forEachEvent { visited.append(ObjectIdentifier($0)) }
        let seen = visited.values.sorted()
        #expect(seen == identities(population.reported))
    }

    @Test(arguments: BackendKind.allCases)
    func forEachEventWorksFromACallback(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let counted = Box<Int>()
        let keeper = try Event.timer(base: base) { _, _ in }
        try keeper.add(timeout: .seconds(5))
        let walker = try Event.timer(base: base) { ev, _ in
            counted.value = (try? ev.base.allEvents())?.count
            try? keeper.delete()
        }
        try walker.activate()
        #expect(try base.loop() == .noEvents)
        // The walker is running (no longer active or added); the keeper is timed.
        #expect(counted.value == 1)
    }

    @Test(arguments: BackendKind.allCases)
    func dumpEventsListsEventsWithTheirDescriptorAndFlags(_ kind: BackendKind) throws {
        let population = try Population(kind)
        defer { try? population.base.shutdown() }
        let text = try population.base.dumpEvents()
        let divider = try #require(text.firstRange(of: "Active events:\n"), "no active section in:\n\(text)")
        let parts = [String(text[..<divider.lowerBound]), String(text[divider.upperBound...])]
        #expect(parts[0].hasPrefix("Inserted events:\n"))
        let inserted = parts[0].split(separator: "\n").dropFirst().map(String.init)
        let active = parts[1].split(separator: "\n").map(String.init)
        let left = population.pair.left
        let right = population.pair.right

        // reader, timer, readerWithTimeout, insertedAndActive, onCommonTimeout.
        #expect(inserted.count == 5, "inserted section:\n\(parts[0])")
        #expect(inserted.contains { $0.contains("[fd \(left)] [Read Persist]") && !$0.contains("Timeout=") })
        #expect(inserted.contains { $0.contains("[fd \(left)] [Write]") })
        #expect(inserted.contains { $0.contains("[fd \(right)] [Read]") && $0.contains("Timeout=") })
        #expect(inserted.filter { $0.contains("[fd -1]") && $0.contains("Timeout=") }.count == 2)

        // activeOnly, insertedAndActive.
        #expect(active.count == 2, "active section:\n\(parts[1])")
        #expect(active.contains { $0.contains("[fd -1]") && $0.contains("Active=[Read]") })
        #expect(active.contains { $0.contains("[fd \(left)] [Write]") && $0.contains("Active=[Write]") })
    }

    @Test(arguments: BackendKind.allCases)
    func dumpOfAnEmptyBaseListsNothing(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        _ = try base.commonTimeout(.milliseconds(10))
        try base.loopExit(after: .seconds(5))
        #expect(try base.dumpEvents() == "Inserted events:\nActive events:\n")
        #expect(try base.allEvents().isEmpty)
    }

    @Test(arguments: BackendKind.allCases)
    func eventsForADescriptorAndIsWatched(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let unused = SocketPair()
        let reader = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in }
        let writer = try Event(base: base, fd: pair.left, flags: [.write, .persist]) { _, _ in }
        let other = try Event(base: base, fd: pair.right, flags: [.read]) { _, _ in }
        let timer = try Event.timer(base: base) { _, _ in }
        #expect(!base.isWatched(fd: pair.left))
        #expect(base.events(forFD: pair.left).isEmpty)
        try reader.add()
        try writer.add(timeout: .seconds(5))
        try other.add()
        try timer.add(timeout: .seconds(5))

        #expect(identities(base.events(forFD: pair.left)) == identities([reader, writer]))
        #expect(identities(base.events(forFD: pair.right)) == identities([other]))
        #expect(base.isWatched(fd: pair.left))
        #expect(base.isWatched(fd: pair.right))
        #expect(!base.isWatched(fd: unused.left))
        #expect(base.events(forFD: unused.left).isEmpty)
        #expect(!base.isWatched(fd: -1))
        #expect(base.events(forFD: -1).isEmpty)

        try reader.delete()
        #expect(identities(base.events(forFD: pair.left)) == identities([writer]))
        try writer.delete()
        #expect(!base.isWatched(fd: pair.left))
        #expect(base.events(forFD: pair.left).isEmpty)
        try other.delete()
        try timer.delete()
    }

    @Test(arguments: BackendKind.allCases)
    func activatedButNotAddedEventIsNotWatchingItsDescriptor(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let event = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in }
        try event.activate(.read)
        #expect(!base.isWatched(fd: pair.left))
        #expect(base.events(forFD: pair.left).isEmpty)
        #expect(try base.loop() == .noEvents)
    }

    @Test(arguments: BackendKind.allCases)
    func eventCountAndActiveEventCount(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        #expect(base.eventCount == 0)
        #expect(base.activeEventCount == 0)
        let reader = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in }
        let timer = try Event.timer(base: base) { _, _ in }
        let loose = try Event.timer(base: base) { _, _ in }
        try reader.add()
        #expect(base.eventCount == 1)
        try timer.add(timeout: .seconds(5))
        #expect(base.eventCount == 2)
        try reader.add(timeout: .seconds(5))
        #expect(base.eventCount == 2, "an event both inserted and timed counts once")
        try timer.activate()
        #expect(base.eventCount == 2)
        #expect(base.activeEventCount == 1)
        try loose.activate()
        #expect(base.eventCount == 2, "an event that is only active is not counted")
        #expect(base.activeEventCount == 2)
        _ = try base.commonTimeout(.milliseconds(10))
        #expect(base.eventCount == 2, "a common timeout's queue timer is not counted")
        try base.loopExit(after: .milliseconds(30))
        #expect(base.eventCount == 3, "the loop-exit timer keeps the loop alive, as libevent's loopexit event does")

        #expect(try base.loop(.nonBlocking) == .finished)
        #expect(base.activeEventCount == 0)
        #expect(base.eventCount == 2, "the one-shot timer ran and was deleted")
        try reader.delete()
        #expect(base.eventCount == 1)
        #expect(try base.loop() == .finished)
        #expect(base.gotExit)
        #expect(base.eventCount == 0)
        #expect(try base.loop() == .noEvents)
    }

    @Test(arguments: BackendKind.allCases)
    func countsInsideACallback(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let seen = Box<[Int]>()
        let other = try Event.timer(base: base) { _, _ in }
        let event = try Event.timer(base: base) { ev, _ in
            seen.value = [ev.base.eventCount, ev.base.activeEventCount]
        }
        try event.activate()
        try other.activate()
        #expect(try base.loop() == .noEvents)
        // Running `event`: it left the active queue; `other` is still active.
        #expect(seen.value == [0, 1])
    }
}
