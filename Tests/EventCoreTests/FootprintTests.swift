import CEventShims
import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Memory per event: what `event-bench memory` compares with libevent.
@Suite struct FootprintTests {
    /// An event of an owned or mutex base fits one 128-byte malloc chunk
    /// (libevent's takes 144); the rarely used state is made only on use.
    @Test(arguments: ["none", "mutex"])
    func anEventIsOneSmallAllocation(_ provider: String) throws {
        let base = try makeBase(.epoll, try LockProviders.named(provider, source: "test"))
        let pair = SocketPair()
        let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in }
        try event.add(timeout: .seconds(30))
        let bytes = se_allocation_size(Unmanaged.passUnretained(event).toOpaque())
        #expect(bytes <= 120, "an event takes \(bytes) usable bytes")
        try event.delete()
    }

    /// Persistent intervals and common timeouts move to the cold state and
    /// keep working after many re-arms.
    @Test func coldStateCarriesIntervalsAndCommonTimeouts() throws {
        let base = try makeBase(.epoll, try LockProviders.named("none", source: "test"))
        let fired = Counter()
        let common = try base.commonTimeout(.milliseconds(1))
        let onCommon = try Event.timer(base: base, persist: true) { event, _ in
            fired.increment()
            if fired.value == 20 { try? event.delete() }
        }
        try onCommon.add(timeout: common)
        let fast = try Event.timer(base: base, persist: true) { event, _ in
            if fired.value >= 20 { try? event.delete() }
        }
        try fast.add(timeout: .microseconds(200))
        try base.dispatch()
        #expect(fired.value == 20)
        #expect(!onCommon.isPending && !fast.isPending)
    }
}
