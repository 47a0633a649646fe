import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

/// The kinds of base an executor test runs on.
enum ExecutorBaseKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case owned, mutex, rcu

    var testDescription: String { rawValue }

    func makeBase() throws -> EventBase {
        let provider: any LockProvider =
            switch self {
            case .owned: NoLockProvider()
            case .mutex: MutexLockProvider()
            case .rcu: RCULockProvider()
            }
        var configuration = EventBase.Configuration(method: .epoll, lockProvider: provider)
        configuration.ignoreEnvironment = true
        return try EventBase(configuration)
    }
}

/// A base whose loop runs on a thread of its own. An owned base is made on
/// that thread (so it owns it) and shut down there; a shared one is made by
/// the caller and shut down by `stop()`.
final class RunningBase: Sendable {
    let base: EventBase
    let kind: ExecutorBaseKind
    private let thread: TestThread

    init(_ kind: ExecutorBaseKind) throws {
        self.kind = kind
        if kind == .owned {
            let made = Box<EventBase>()
            let ready = Latch()
            thread = TestThread {
                guard let base = try? kind.makeBase() else { return ready.open() }
                made.value = base
                ready.open()
                _ = try? base.loop(.noExitOnEmpty)
                try? base.shutdown()
            }
            ready.wait()
            base = try #require(made.value)
        } else {
            let base = try kind.makeBase()
            self.base = base
            thread = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        }
    }

    func stop() {
        try? base.post { [base] in try? base.loopExit() }
        thread.join()
        if kind != .owned { try? base.shutdown() }
    }
}

/// Waits until `condition` holds or `timeout` passes, without blocking a
/// thread of Swift's cooperative pool (as wide as the machine's cores: two
/// here, and other tests' tasks need them).
func waitAsync(timeout: Duration = .seconds(60), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return true
}

/// An actor whose executor is an event base.
actor Tally {
    let base: EventBase
    private(set) var count = 0
    nonisolated var unownedExecutor: UnownedSerialExecutor { base.serialExecutor.asUnownedSerialExecutor() }

    init(base: EventBase) { self.base = base }

    /// Adds one; returns the new count and whether this ran on the loop thread.
    func add() -> (count: Int, onLoop: Bool) {
        count += 1
        return (count, base.isLoopThread)
    }
}

/// The README example (README.md, "an actor running on a base"), as it is printed there.
/// Counts connections; runs on the loop thread, next to the base's callbacks.
actor ConnectionCounter {
    let base: EventBase
    private var open = 0
    nonisolated var unownedExecutor: UnownedSerialExecutor { base.serialExecutor.asUnownedSerialExecutor() }

    init(base: EventBase) { self.base = base }

    func opened() -> Int {
        open += 1
        return open
    }
}

/// Runs a base's loop on the calling thread while a task uses the actor.
/// Call it from a thread that may block in the loop (not from an actor).
func countConnections(log: @escaping @Sendable (String) -> Void = { print($0) }) throws {
    let base = try EventBase()  // owned by the calling thread, which runs its loop
    let counter = ConnectionCounter(base: base)
    Task {
        let count = await counter.opened()  // opened() runs on the loop thread
        log("connections: \(count)")  // back on the global executor here
        // A task can prefer the base: its own code then runs on the loop thread.
        await withTaskExecutorPreference(base.taskExecutor) {
            log("task on the loop thread: \(base.isLoopThread)")
            try? base.loopExit()  // the loop thread may use its owned base
        }
    }
    try base.loop(.noExitOnEmpty)
    try base.shutdown()
}

@Suite("A base as a serial and a task executor: actors, task preference, job order, shutdown")
struct ExecutorTests {
    @Test(arguments: ExecutorBaseKind.allCases)
    func actorsRunOnTheLoopThread(_ kind: ExecutorBaseKind) async throws {
        let running = try RunningBase(kind)
        defer { running.stop() }
        let base = running.base
        let tally = Tally(base: base)
        for expected in 1...200 {
            let (count, onLoop) = await tally.add()
            #expect(count == expected)
            #expect(onLoop)
        }
        // Outside any job (a posted closure on the loop thread) the runtime
        // cannot tell on its own: assumeIsolated asks the executor.
        let seen = Box<Int>()
        let asked = Box<Bool?>()
        let done = Latch()
        try base.post {
            asked.value = base.serialExecutor.isIsolatingCurrentContext()
            base.serialExecutor.checkIsolated()
            seen.value = tally.assumeIsolated { $0.count }
            done.open()
        }
        #expect(await waitAsync { done.isOpenNow })
        #expect(seen.value == 200)
        #expect(asked.value == .some(true))
        #expect(base.serialExecutor.isIsolatingCurrentContext() == false)
    }

    @Test func checkIsolatedOffTheLoopThreadStopsTheProgram() async {
        await #expect(processExitsWith: .failure) {
            let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
            base.serialExecutor.checkIsolated()
        }
    }

    @Test(arguments: ExecutorBaseKind.allCases)
    func tasksPreferringTheBaseRunOnTheLoopThread(_ kind: ExecutorBaseKind) async throws {
        let running = try RunningBase(kind)
        defer { running.stop() }
        let base = running.base
        #expect(!base.isLoopThread)
        let scoped = await withTaskExecutorPreference(base.taskExecutor) {
            let before = base.isLoopThread
            await Task.yield()
            return before && base.isLoopThread
        }
        #expect(scoped)
        let children = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 { group.addTask(executorPreference: base.taskExecutor) { base.isLoopThread } }
            var onLoop = 0
            for await result in group where result { onLoop += 1 }
            return onLoop
        }
        #expect(children == 200)
        // Such a task uses the base as its callbacks do (an owned base too:
        // the loop thread is its owner), and reaches an actor on the same
        // base without leaving the loop thread.
        let tally = Tally(base: base)
        let (fired, hopOnLoop, after) = await Task(executorPreference: base.taskExecutor) {
            let fired = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                do {
                    try base.once(timeout: .milliseconds(1)) { _ in continuation.resume(returning: base.isLoopThread) }
                } catch {
                    continuation.resume(returning: false)
                }
            }
            let hop = await tally.add().onLoop
            return (fired, hop, base.isLoopThread)
        }.value
        #expect(fired)
        #expect(hopOnLoop)
        #expect(after)
    }

    @Test func tenThousandTasksHopBetweenActorsOnTwoBases() async throws {
        let owned = try RunningBase(.owned)
        defer { owned.stop() }
        let shared = try RunningBase(.mutex)
        defer { shared.stop() }
        let first = Tally(base: owned.base)
        let second = Tally(base: shared.base)
        let tasks = 10_000
        // Half the tasks prefer the owned base, half run on the global executor.
        let offLoop = await withTaskGroup(of: Int.self) { group in
            for index in 0..<tasks {
                let body: @Sendable () async -> Int = {
                    let a = await first.add().onLoop
                    let b = await second.add().onLoop
                    let c = await first.add().onLoop
                    return (a ? 0 : 1) + (b ? 0 : 1) + (c ? 0 : 1)
                }
                if index % 2 == 0 {
                    group.addTask(executorPreference: owned.base.taskExecutor, operation: body)
                } else {
                    group.addTask(operation: body)
                }
            }
            var total = 0
            for await misses in group { total += misses }
            return total
        }
        #expect(offLoop == 0)
        #expect(await first.count == 2 * tasks)
        #expect(await second.count == tasks)
    }

    @Test(arguments: ExecutorBaseKind.allCases)
    func jobsFromManyThreadsKeepEachProducersOrder(_ kind: ExecutorBaseKind) async throws {
        let running = try RunningBase(kind)
        defer { running.stop() }
        let base = running.base
        let producers = 4
        let perProducer = 2_000
        // Written by jobs on the loop thread; the lock only makes the final read safe.
        let seen = Guarded<[[Int]]>(Array(repeating: [], count: producers))
        let offLoop = AtomicCounter()
        let finished = AtomicCounter()
        let go = Latch()
        // Creating a task that prefers the base enqueues its first job at
        // once, from the creating thread: each producer enqueues in order.
        let threads = (0..<producers).map { producer in
            TestThread {
                go.wait()
                for index in 0..<perProducer {
                    Task(executorPreference: base.taskExecutor) {
                        if !base.isLoopThread { offLoop.increment() }
                        seen.withLock { $0[producer].append(index) }
                        finished.increment()
                    }
                }
            }
        }
        go.open()
        #expect(await waitAsync { threads.allSatisfy(\.hasFinished) && finished.value == producers * perProducer })
        #expect(offLoop.value == 0)
        let orders = seen.withLock { $0 }
        for producer in 0..<producers {
            #expect(orders[producer] == Array(0..<perProducer), "producer \(producer) out of order")
        }
    }

    @Test(arguments: ExecutorBaseKind.allCases)
    func shutdownRunsTheJobsStillWaitingOnTheCallingThread(_ kind: ExecutorBaseKind) async throws {
        // Tasks enqueue jobs on a base whose loop never runs; shutdown runs
        // them, and the jobs they enqueue in turn, on its thread, as the loop would.
        struct Step: Sendable, Equatable {
            var task: Int
            var step: Int
            var onLoop: Bool
            var onShutdownThread: Bool
        }
        let steps = Guarded<[Step]>([])
        let count = 50
        let beforeShutdown = Box<Int>()
        let afterShutdown = Box<Bool>()
        let worker = TestThread {
            guard let base = try? kind.makeBase() else { return }
            let me = ThreadIdentity.current
            for task in 0..<count {
                Task(executorPreference: base.taskExecutor) {
                    for step in 0..<2 {
                        let record = Step(
                            task: task, step: step, onLoop: base.isLoopThread, onShutdownThread: ThreadIdentity.current == me)
                        steps.withLock { $0.append(record) }
                        await Task.yield()
                    }
                }
            }
            beforeShutdown.value = steps.withLock { $0.count }
            do {
                try base.shutdown()
            } catch {
                Issue.record("shutdown failed: \(error)")
            }
            afterShutdown.value = base.isLoopThread
        }
        #expect(await waitAsync { worker.hasFinished })
        #expect(beforeShutdown.value == 0, "no job runs before the loop or shutdown does")
        let expected =
            (0..<count).map { Step(task: $0, step: 0, onLoop: true, onShutdownThread: true) }
            + (0..<count).map { Step(task: $0, step: 1, onLoop: true, onShutdownThread: true) }
        #expect(steps.withLock { $0 } == expected)
        #expect(afterShutdown.value == false)
    }

    @Test func aJobEnqueuedAfterShutdownStopsTheProgram() async {
        await #expect(processExitsWith: .failure) {
            let base = try EventBase(.init(method: .epoll, lockProvider: NoLockProvider()))
            try base.shutdown()
            Task(executorPreference: base.taskExecutor) {}
            pause(.seconds(5))
        }
    }

    @Test func readmeExample() async throws {
        let printed = Guarded<[String]>([])
        let failed = AtomicFlag()
        let thread = TestThread {
            do {
                try countConnections { line in printed.withLock { $0.append(line) } }
            } catch {
                failed.value = true
            }
        }
        #expect(await waitAsync { thread.hasFinished })
        #expect(!failed.value)
        #expect(printed.withLock { $0 } == ["connections: 1", "task on the loop thread: true"])
    }
}
