import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Descriptor events on every backend (owned bases: one thread).
@Suite struct IOEventTests {
    @Test(arguments: BackendKind.allCases)
    func readEventFiresWithDataAndOneShotIsDeletedAfter(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let fired = Counter()
        let event = try Event(base: base, fd: pair.left, flags: [.read]) { ev, what in
            #expect(what == .read)
            #expect(ev.fd == pair.left)
            fired.increment()
        }
        try event.add()
        #expect(event.pending(.read) == .read)
        pair.send("hello")
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 1)
        #expect(!event.isPending)
    }

    @Test(arguments: BackendKind.allCases)
    func persistentReadEventStaysUntilDeleted(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let fired = Counter()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { ev, _ in
            pair.drain()
            fired.increment()
            if fired.value == 3 { try? ev.delete() } else { pair.send() }
        }
        try event.add()
        pair.send()
        #expect(try base.loop() == .noEvents)
        #expect(fired.value == 3)
    }

    @Test(arguments: BackendKind.allCases)
    func writeEventFiresWhenWritable(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let what = Box<Event.Flags>()
        let event = try Event(base: base, fd: pair.left, flags: [.write]) { _, flags in what.value = flags }
        try event.add()
        try base.loop()
        #expect(what.value == .write)
    }

    @Test(arguments: BackendKind.allCases)
    func readAndWriteOnOneEventReportBoth(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        pair.send()
        let what = Box<Event.Flags>()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .write]) { _, flags in what.value = flags }
        try event.add()
        try base.loop()
        #expect(what.value == [.read, .write])
    }

    @Test(arguments: [BackendKind.epoll, .poll])
    func closedEventFiresWhenPeerCloses(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        var fds: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]) }
        let what = Box<Event.Flags>()
        let event = try Event(base: base, fd: fds[0], flags: [.closed]) { _, flags in what.value = flags }
        try event.add()
        close(fds[1])
        try base.loop()
        #expect(what.value?.contains(.closed) == true)
    }

    @Test func selectRefusesClosedEventsWithAClearError() throws {
        let base = try makeBase(.select)
        let pair = SocketPair()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .closed]) { _, _ in }
        #expect(throws: EventError.unsupportedByBackend(feature: .earlyClose, backend: .select, fd: pair.left)) {
            try event.add()
        }
        #expect(!event.isPending)
    }

    @Test func edgeTriggeredFiresOncePerArrivalUnderEpoll() throws {
        let base = try makeBase(.epoll)
        let pair = SocketPair()
        let fired = Counter()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .persist, .edgeTriggered]) { _, _ in
            fired.increment()
        }
        try event.add()
        pair.send("a")
        try base.loop(.nonBlocking)
        // Data is still unread: level-triggered would fire again, edge does not.
        try base.loop(.nonBlocking)
        try base.loop(.nonBlocking)
        #expect(fired.value == 1)
        pair.send("b")
        try base.loop(.nonBlocking)
        #expect(fired.value == 2)
        try event.delete()
    }

    @Test(arguments: [BackendKind.poll, .select])
    func edgeTriggeredIsRefusedWhereUnsupported(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .edgeTriggered]) { _, _ in }
        #expect(throws: EventError.unsupportedByBackend(feature: .edgeTriggered, backend: kind, fd: pair.left)) {
            try event.add()
        }
    }

    @Test func mixingEdgeAndLevelTriggeringOnOneDescriptorIsRefused() throws {
        let base = try makeBase(.epoll)
        let pair = SocketPair()
        let level = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in }
        let edge = try Event(base: base, fd: pair.left, flags: [.write, .edgeTriggered]) { _, _ in }
        try level.add()
        #expect(throws: EventError.mixedEdgeTriggering(fd: pair.left)) { try edge.add() }
        try level.delete()
        try edge.add()
        try edge.delete()
    }

    @Test(arguments: BackendKind.allCases)
    func levelTriggeredLevelRefiresUntilRead(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let fired = Counter()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in fired.increment() }
        try event.add()
        pair.send()
        try base.loop([.once, .nonBlocking])
        try base.loop([.once, .nonBlocking])
        #expect(fired.value == 2)
        pair.drain()
        try base.loop([.once, .nonBlocking])
        #expect(fired.value == 2)
        try event.delete()
    }

    @Test(arguments: BackendKind.allCases)
    func ioEventTimesOutWithoutData(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let what = Box<Event.Flags>()
        let start = now()
        let event = try Event(base: base, fd: pair.left, flags: [.read]) { _, flags in what.value = flags }
        try event.add(timeout: .milliseconds(30))
        #expect(event.pending(.timeout) == .timeout)
        try base.loop()
        #expect(what.value == .timeout)
        #expect(now() - start >= .milliseconds(30))
        #expect(!event.isPending)
    }

    @Test(arguments: BackendKind.allCases)
    func persistentIOEventWithTimeoutKeepsItsRegistrationAfterTimingOut(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let log = Log()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { ev, flags in
            log.append(flags.description)
            if flags.contains(.read) {
                pair.drain()
                try? ev.delete()
            } else {
                pair.send()
            }
        }
        try event.add(timeout: .milliseconds(20))
        try base.loop()
        #expect(log.entries == ["Timeout", "Read"])
    }

    @Test(arguments: BackendKind.allCases)
    func deletingAnEventNeverAddedDoesNothing(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let event = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in }
        try event.delete()
        try event.delete()
        #expect(!event.isPending)
        #expect(try base.loop() == .noEvents)
    }

    @Test(arguments: BackendKind.allCases)
    func addingTwiceReschedulesTheTimeout(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let start = now()
        let fired = Box<Duration>()
        let event = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in fired.value = now() - start }
        try event.add(timeout: .milliseconds(10))
        try event.add(timeout: .milliseconds(60))
        #expect(base.eventCount == 1)
        try base.loop()
        #expect((fired.value ?? .zero) >= .milliseconds(60))
    }

    @Test(arguments: BackendKind.allCases)
    func addWithoutTimeoutKeepsAnExistingTimeout(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let what = Box<Event.Flags>()
        let event = try Event(base: base, fd: pair.left, flags: [.read]) { _, flags in what.value = flags }
        try event.add(timeout: .milliseconds(20))
        try event.add()
        #expect(event.pending(.timeout) == .timeout)
        try base.loop()
        #expect(what.value == .timeout)
    }

    @Test(arguments: BackendKind.allCases)
    func manyEventsOnOneDescriptorAllFire(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let readers = Counter()
        let writers = Counter()
        var events: [Event] = []
        for i in 0..<10 {
            let flags: Event.Flags = i % 2 == 0 ? [.read] : [.write]
            events.append(
                try Event(base: base, fd: pair.left, flags: flags) { _, what in
                    if what.contains(.read) { readers.increment() }
                    if what.contains(.write) { writers.increment() }
                })
        }
        for event in events { try event.add() }
        #expect(base.events(forFD: pair.left).count == 10)
        pair.send()
        try base.loop()
        #expect(readers.value == 5)
        #expect(writers.value == 5)
        #expect(base.events(forFD: pair.left).isEmpty)
    }

    @Test(arguments: BackendKind.allCases)
    func activatingByDescriptorRunsEveryMatchingEvent(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let log = Log()
        let reader = try Event(base: base, fd: pair.left, flags: [.read]) { _, what in log.append("r \(what)") }
        let other = try Event(base: base, fd: pair.left, flags: [.closed, .read]) { _, what in log.append("c \(what)") }
        try reader.add()
        if kind != .select { try other.add() }
        try base.activate(fd: pair.left, flags: [.read])
        try base.loop(.once)
        let expected = kind == .select ? ["r Read"] : ["r Read", "c Read"]
        #expect(log.entries.sorted() == expected.sorted())
        if kind != .select { try other.delete() }
    }

    @Test(arguments: BackendKind.allCases)
    func manyDescriptorsAcrossTheTable(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pairs = (0..<200).map { _ in SocketPair() }
        let fired = Counter()
        var events: [Event] = []
        for pair in pairs {
            let event = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in fired.increment() }
            try event.add()
            events.append(event)
        }
        for pair in pairs.enumerated() where pair.offset % 3 == 0 { pair.element.send() }
        try base.loop(.nonBlocking)
        #expect(fired.value == (200 + 2) / 3)
        for event in events { try event.delete() }
        #expect(try base.loop() == .noEvents)
    }

    @Test func selectWatchesDescriptorsAboveFDSetSize() throws {
        let base = try makeBase(.select)
        let pair = SocketPair()
        let high = dup2(pair.left, 1500)
        #expect(high == 1500)
        defer { close(high) }
        let fired = Counter()
        let event = try Event(base: base, fd: high, flags: [.read]) { _, _ in fired.increment() }
        try event.add()
        pair.send()
        try base.loop()
        #expect(fired.value == 1)
    }

    /// libevent's event_remove_timer: the timeout goes, the descriptor
    /// registration stays.
    @Test(arguments: BackendKind.allCases)
    func removingTheTimerKeepsTheDescriptorRegistration(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let pair = SocketPair()
        let what = Box<Event.Flags>()
        let event = try Event(base: base, fd: pair.left, flags: [.read]) { _, flags in what.value = flags }
        try event.add(timeout: .milliseconds(20))
        try event.removeTimer()
        #expect(event.pending() == .read)
        #expect(event.timeoutRemaining == nil)
        try base.loopExit(after: .milliseconds(60))
        try base.loop()
        #expect(what.value == nil, "the removed timeout fired")
        pair.send()
        try base.loop()
        #expect(what.value == .read)
        let timer = try Event.timer(base: base) { _, _ in what.value = .timeout }
        try timer.add(timeout: .seconds(5))
        try timer.removeTimer()
        #expect(!timer.isPending)
        #expect(try base.loop() == .noEvents)
    }
}
