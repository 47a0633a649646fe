import EventBackends
import EventCore
import Glibc
import Testing
import EventTestSupport

/// The common-timeout queue is a ring of slots with holes: these exercise
/// its growth, compaction, holes at the head and the fallback to the heap.
@Suite struct CommonTimeoutQueueTests {
    /// 300 events on one common timeout; every third is cancelled (holes,
    /// some at the head); the others fire, in the order they were added.
    @Test func cancelledEventsLeaveHolesAndTheRestFireInOrder() throws {
        let base = try makeBase(.epoll)
        let common = try base.commonTimeout(.milliseconds(5))
        let log = Log()
        let events = try (0..<300).map { index in
            try Event.timer(base: base) { _, _ in log.append("\(index)") }
        }
        for event in events { try event.add(timeout: common) }
        for index in stride(from: 0, to: 300, by: 3) { try events[index].delete() }
        #expect(base.eventCount == 200)
        #expect(try base.loop() == .noEvents)
        let expected = (0..<300).filter { $0 % 3 != 0 }.map { "\($0)" }
        #expect(log.entries == expected)
    }

    /// Adds and cancels far more events than the ring holds at once, so it
    /// compacts and grows while a long-lived event stays at its head; every
    /// live event still fires once, in order.
    @Test func compactionAndGrowthKeepEveryEventAndTheOrder() throws {
        let base = try makeBase(.epoll)
        let common = try base.commonTimeout(.milliseconds(20))
        let log = Log()
        let anchor = try Event.timer(base: base) { _, _ in log.append("anchor") }
        try anchor.add(timeout: common)
        var kept: [Event] = []
        for round in 0..<50 {
            let batch = try (0..<40).map { index in
                try Event.timer(base: base) { _, _ in log.append("\(round)-\(index)") }
            }
            for event in batch { try event.add(timeout: common) }
            // Keep one per round, cancel the rest.
            for event in batch.dropFirst() { try event.delete() }
            kept.append(batch[0])
        }
        #expect(base.eventCount == 51)
        #expect(try base.loop() == .noEvents)
        #expect(log.entries == ["anchor"] + (0..<50).map { "\($0)-0" })
        #expect(kept.allSatisfy { !$0.isPending })
    }

    /// A persistent event on a common timeout keeps its period from its
    /// last deadline, even when that lands before the queue's latest
    /// deadline (then it waits in the heap), and never fires early.
    @Test func persistentEventsRescheduledOutOfOrderStillFireOnTime() throws {
        let base = try makeBase(.epoll)
        let common = try base.commonTimeout(.milliseconds(10))
        let start = now()
        let firings = Counter()
        let early = Counter()
        let periodic = try Event.timer(base: base, persist: true) { event, _ in
            firings.increment()
            if now() - start < .milliseconds(10 * firings.value) { early.increment() }
            if firings.value == 5 { try? event.delete() }
        }
        // A neighbour re-added later each time keeps the queue's tail ahead.
        let neighbour = try Event.timer(base: base, persist: true) { event, _ in
            if firings.value >= 5 { try? event.delete() }
        }
        try periodic.add(timeout: common)
        usleep(2000)
        try neighbour.add(timeout: common)
        try base.dispatch()
        #expect(firings.value == 5)
        #expect(early.value == 0)
        let elapsed = now() - start
        #expect(elapsed >= .milliseconds(50))
    }
}
