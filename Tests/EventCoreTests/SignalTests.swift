import CEventShims
import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Runs `body` on a new thread with SIGUSR1 and SIGUSR2 unblocked, so that
/// `se_raise` (raise(3): the calling thread) delivers before it returns. The
/// test runner's own threads block signals.
func onSignalThread(_ body: @escaping @Sendable () throws -> Void) {
    let thread = TestThread {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR1)
        sigaddset(&set, SIGUSR2)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        do {
            try body()
        } catch {
            Issue.record("\(error)")
        }
    }
    thread.join()
}

/// Signals are process-wide: one base receives them at a time, so these run
/// one after another. Each raises only signals it has an event for.
@Suite(.serialized) struct SignalTests {
    @Test(arguments: BackendKind.allCases)
    func aSignalEventFiresWhenTheSignalArrives(_ kind: BackendKind) throws {
        onSignalThread {
            let base = try makeBase(kind)
            let what = Box<Event.Flags>()
            let event = try Event(base: base, signal: SIGUSR1) { ev, flags in
                what.value = flags
                try? ev.delete()
            }
            try event.add()
            #expect(event.pending(.signal) == .signal)
            #expect(se_raise(SIGUSR1) == 0)
            try base.loop()
            #expect(what.value == .signal)
        }
    }

    @Test(arguments: BackendKind.allCases, Provider.all)
    func everyEventOnTheSignalRunsOncePerDelivery(_ kind: BackendKind, _ provider: Provider) throws {
        onSignalThread {
            let base = try makeBase(kind, provider.make())
            let first = Counter()
            let second = Counter()
            let a = try Event(base: base, signal: SIGUSR2) { _, _ in first.increment() }
            let b = try Event(base: base, signal: SIGUSR2) { _, _ in second.increment() }
            try a.add()
            try b.add()
            for _ in 0..<3 { #expect(se_raise(SIGUSR2) == 0) }
            try base.loop([.once, .nonBlocking])
            #expect(first.value == 3)
            #expect(second.value == 3)
            try a.delete()
            try b.delete()
        }
    }

    @Test(arguments: BackendKind.allCases)
    func onlyOneBaseReceivesSignalsAtATime(_ kind: BackendKind) throws {
        onSignalThread {
            let first = try makeBase(kind)
            let second = try makeBase(kind)
            let one = try Event(base: first, signal: SIGUSR1) { _, _ in }
            let two = try Event(base: second, signal: SIGUSR2) { _, _ in }
            try one.add()
            #expect(throws: EventError.signalsOwnedByAnotherBase(signal: SIGUSR2)) { try two.add() }
            #expect(!two.isPending)
            try one.delete()
            try two.add()
            let fired = Counter()
            let three = try Event(base: second, signal: SIGUSR1) { _, _ in fired.increment() }
            try three.add()
            #expect(se_raise(SIGUSR1) == 0)
            try second.loop([.once, .nonBlocking])
            #expect(fired.value == 1)
            try two.delete()
            try three.delete()
        }
    }

    @Test(arguments: BackendKind.allCases)
    func deletingTheLastEventRestoresThePreviousAction(_ kind: BackendKind) throws {
        var ignore = sigaction()
        ignore.__sigaction_handler.sa_handler = SIG_IGN
        var previous = sigaction()
        #expect(sigaction(SIGUSR2, &ignore, &previous) == 0)
        defer { sigaction(SIGUSR2, &previous, nil) }
        let base = try makeBase(kind)
        let event = try Event(base: base, signal: SIGUSR2) { _, _ in }
        try event.add()
        var during = sigaction()
        sigaction(SIGUSR2, nil, &during)
        #expect(unsafeBitCast(during.__sigaction_handler.sa_handler, to: Int.self) != unsafeBitCast(SIG_IGN, to: Int.self))
        try event.delete()
        var after = sigaction()
        sigaction(SIGUSR2, nil, &after)
        #expect(unsafeBitCast(after.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self))
    }

    /// libevent's event_base_loopcontinue, here from a signal's callback: the
    /// loop polls again (finding a higher-priority descriptor event) before
    /// running the rest of the pass.
    @Test(arguments: BackendKind.allCases)
    func loopContinueFromASignalCallbackPollsAgain(_ kind: BackendKind) throws {
        onSignalThread {
            let base = try makeBase(kind) { $0.priorityCount = 2 }
            let pair = SocketPair()
            let log = Log()
            let reader = try Event(base: base, fd: pair.left, flags: [.read], priority: 0) { _, _ in log.append("read") }
            let signal = try Event(base: base, signal: SIGUSR1, flags: [], priority: 1) { ev, _ in
                log.append("signal")
                pair.send()
                try? ev.base.loopContinue()
            }
            let later = try Event.timer(base: base, priority: 1) { _, _ in log.append("later") }
            try reader.add()
            try signal.add()
            #expect(se_raise(SIGUSR1) == 0)
            try base.loop([.once, .nonBlocking])
            try later.activate()
            try base.loop()
            #expect(log.entries == ["signal", "read", "later"])
        }
    }

    @Test(arguments: BackendKind.allCases, Provider.all)
    func activatingBySignalRunsTheSignalsEvents(_ kind: BackendKind, _ provider: Provider) throws {
        let base = try makeBase(kind, provider.make())
        let fired = Counter()
        let event = try Event(base: base, signal: SIGUSR1) { _, what in
            #expect(what == .signal)
            fired.increment()
        }
        try event.add()
        try base.activate(signal: SIGUSR1)
        try base.loop([.once, .nonBlocking])
        #expect(fired.value == 1)
        try event.delete()
    }
}
