import CAllocationCounter
import EventCore
import Glibc
import Synchronization

/// An actor whose executor is an event base: its methods run on the base's loop thread.
actor HopTarget {
    let base: EventBase
    private var count = 0
    nonisolated var unownedExecutor: UnownedSerialExecutor { base.serialExecutor.asUnownedSerialExecutor() }

    init(base: EventBase) { self.base = base }

    func hop() -> Int {
        count += 1
        return count
    }

    /// Ends the loop running the actor (called on the loop thread).
    func stopLoop() { try? base.loopExit() }
}

/// A base made and looped on a thread of its own (the thread owns it).
final class BaseOnThread: Sendable {
    let base: EventBase
    private let thread: BenchThread

    init(_ configuration: EventBase.Configuration) throws {
        let handoff = Handoff()
        thread = BenchThread {
            guard let base = try? EventBase(configuration) else {
                handoff.ready.store(-1, ordering: .releasing)
                return
            }
            handoff.base = base
            handoff.ready.store(1, ordering: .releasing)
            _ = try? base.loop(.noExitOnEmpty)
            try? base.shutdown()
        }
        while handoff.ready.load(ordering: .acquiring) == 0 { sched_yield() }
        guard let base = handoff.base else {
            thread.join()
            throw BenchError("could not make a second base")
        }
        self.base = base
    }

    /// Waits for the loop to end (ended with `loopExit()` on its thread).
    func join() { thread.join() }

    /// Hands the base from its thread to the creating one.
    private final class Handoff: @unchecked Sendable {
        // `base` is written by the base's thread before its releasing store
        // to `ready`, read by the creator after an acquiring load of it.
        var base: EventBase?
        let ready = Atomic<Int>(0)  // 1: made, -1: failed
    }
}

/// What a driving task reports back to the thread running a loop.
final class HopReport: Sendable {
    let hops = Atomic<Int>(0)
    let allocations = Atomic<UInt64>(0)
}

extension Allocations {
    /// Mallocs counted (process-wide) while `body` runs.
    static func countingAsync(_ body: () async -> Void) async -> UInt64 {
        let before = se_allocations_count()
        se_allocations_set_counting(1)
        await body()
        se_allocations_set_counting(0)
        return se_allocations_count() - before
    }

    /// actor-hop: a task on Swift's global executor awaits -i calls of an
    /// actor whose executor is `base`; the loop runs on this thread. Each
    /// call is a job enqueued on the base from a pool thread and a
    /// continuation back on the global executor.
    func actorHop(_ base: EventBase) throws -> (Int, UInt64) {
        let target = HopTarget(base: base)
        let report = HopReport()
        let count = i
        Task {
            for _ in 0..<max(count / 10, 1000) { _ = await target.hop() }
            let allocations = await Allocations.countingAsync {
                for _ in 0..<count { _ = await target.hop() }
            }
            report.hops.store(count, ordering: .releasing)
            report.allocations.store(allocations, ordering: .releasing)
            await target.stopLoop()
        }
        try base.loop(.noExitOnEmpty)
        return (report.hops.load(ordering: .acquiring), report.allocations.load(ordering: .acquiring))
    }

    /// task-hop: a task that prefers a second base (same provider, its loop
    /// on another thread) as its task executor awaits -i calls of an actor
    /// whose executor is `base`: every hop is a job on one of the two bases.
    func taskHop(_ base: EventBase, locking: String) throws -> (Int, UInt64) {
        let other = try BaseOnThread(try common.configuration(locking: locking))
        let target = HopTarget(base: base)
        let report = HopReport()
        let count = i
        let home = other.base
        Task(executorPreference: home.taskExecutor) {
            for _ in 0..<max(count / 10, 1000) { _ = await target.hop() }
            let allocations = await Allocations.countingAsync {
                for _ in 0..<count { _ = await target.hop() }
            }
            report.hops.store(count, ordering: .releasing)
            report.allocations.store(allocations, ordering: .releasing)
            await target.stopLoop()
            try? home.loopExit()
        }
        try base.loop(.noExitOnEmpty)
        other.join()
        return (report.hops.load(ordering: .acquiring), report.allocations.load(ordering: .acquiring))
    }
}
