import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Counts every lock operation of the locks it makes; reports itself as a
/// no-exclusion provider, so a base using it is an owned base.
struct CountingNoLockProvider: LockProvider {
    let operations = Counter()
    var name: String { "counting-none" }
    var providesMutualExclusion: Bool { false }
    func makeLock(_ kind: LockKind) -> any EventLock { CountingLock(kind: kind, operations: operations) }
    func makeReadWriteLock() -> any EventReadWriteLock { NoReadWriteLock() }
    func makeCondition() -> any EventCondition { NoCondition() }
}

final class CountingLock: EventLock {
    let kind: LockKind
    let operations: Counter
    init(kind: LockKind, operations: Counter) {
        self.kind = kind
        self.operations = operations
    }
    func lock(at site: CallSite) { operations.increment() }
    func unlock(at site: CallSite) { operations.increment() }
    func tryLock(at site: CallSite) -> Bool {
        operations.increment()
        return true
    }
}

/// Owned bases: one thread, no locks; foreign calls are caught.
@Suite struct OwnedModeTests {
    @Test(arguments: BackendKind.allCases)
    func anOwnedBaseTakesNoLockOnAnyPath(_ kind: BackendKind) throws {
        let provider = CountingNoLockProvider()
        let base = try makeBase(kind, provider)
        #expect(base.threadingMode == .owned)
        let pair = SocketPair()
        let fired = Counter()
        let reader = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in
            pair.drain()
            fired.increment()
        }
        let timer = try Event.timer(base: base) { _, _ in fired.increment() }
        try reader.add(timeout: .seconds(5))
        try timer.add(timeout: .milliseconds(1))
        pair.send()
        try base.loop(.once)
        try timer.activate()
        try base.loop([.once, .nonBlocking])
        _ = reader.pending()
        _ = base.events(forFD: pair.left)
        try reader.finalize { _ in fired.increment() }
        try base.loop()
        #expect(fired.value >= 3)
        #expect(provider.operations.value == 0, "an owned base took a lock")
    }

    @Test func sharedBasesReportTheirMode() throws {
        for provider in Provider.shared {
            #expect(try makeBase(.epoll, provider.make()).threadingMode == .shared)
        }
        #expect(try makeBase(.epoll).threadingMode == .owned)
    }

    @Test func aForeignCallStopsWithAMessageNamingTheCallAndTheOwner() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let base = try! EventBase(.init(method: .poll, lockProvider: NoLockProvider()))
            let event = try! Event.timer(base: base) { _, _ in }
            let thread = TestThread { try? event.add(timeout: .seconds(1)) }
            thread.join()
        }
        let text = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(text.contains("Event.add"))
        #expect(text.contains("owned by thread"))
    }

    @Test func postFromAnotherThreadRunsOnTheOwner() throws {
        let base = try makeBase(.epoll)
        let owner = ThreadIdentity.current
        let ranOn = Box<ThreadIdentity>()
        let poster = TestThread {
            try! base.post {
                ranOn.value = ThreadIdentity.current
                try? base.loopBreak()
            }
        }
        poster.join()
        try base.loop(.noExitOnEmpty)
        #expect(ranOn.value == owner)
    }

    @Test func ownershipCanBeHandedToTheThreadThatRunsTheLoop() throws {
        let base = try makeBase(.epoll)
        let fired = Counter()
        let timer = try Event.timer(base: base) { _, _ in fired.increment() }
        try timer.add(timeout: .milliseconds(1))
        #expect(base.ownerThread == ThreadIdentity.current)
        base.releaseOwnership()
        #expect(base.ownerThread == nil)
        let runner = TestThread {
            try! base.loop()
            #expect(base.ownerThread == ThreadIdentity.current)
        }
        runner.join()
        #expect(fired.value == 1)
    }
}
