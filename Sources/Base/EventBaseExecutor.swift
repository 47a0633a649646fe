import CEventShims

/// An event base as the serial executor of actors: an actor whose
/// `unownedExecutor` is `base.serialExecutor.asUnownedSerialExecutor()` runs
/// its methods on the thread running the base's loop, between callbacks, so
/// actor code and the base's callbacks share one thread and need no hops or
/// locks between them.
///
/// Any thread may enqueue (also on an owned base: this is part of its one
/// thread-safe door, with ``EventBase/post(_:)``). A job costs no allocation:
/// it waits in a lock-free list linked through the job's own
/// executor-private storage, and the first job of an empty list wakes the
/// loop through its notifier. The loop runs the jobs waiting at the start of
/// each iteration, in the order they were enqueued, and jobs enqueued while
/// those run in the next iteration (it does not block while any wait). The
/// loop must be running (or run later) for jobs to make progress.
///
/// Shutdown: ``EventBase/shutdown()`` first runs the jobs still waiting,
/// on the calling thread acting as the loop thread (for an owned base that
/// is the owner), until none is left, then closes the list. A job enqueued
/// after that stops the program: running it elsewhere would break the
/// actor's isolation, and dropping it would leave its task suspended forever.
public final class EventBaseExecutor: SerialExecutor {
    /// Unowned: the base owns its executor (one per base, for executor identity).
    public unowned let base: EventBase

    init(base: EventBase) { self.base = base }

    public func enqueue(_ job: consuming ExecutorJob) {
        base.enqueue(job, as: .serial)
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// Stops the program unless the caller runs on the loop thread (Swift's
    /// isolation checks, such as `assumeIsolated`, ask when the runtime
    /// cannot tell on its own, e.g. from inside a callback).
    public func checkIsolated() {
        precondition(base.isLoopThread, "SwiftEvent: not on the thread running this base's loop")
    }

    /// Whether the caller runs on the loop thread (asked before `checkIsolated`).
    public func isIsolatingCurrentContext() -> Bool? { base.isLoopThread }
}

extension EventBase {
    /// Whether the calling thread is the one running this base's loop.
    public var isLoopThread: Bool { onLoopThread }

    /// The base as an actor executor (one per base).
    public var serialExecutor: EventBaseExecutor { executorSlot.executor.unsafelyUnwrapped }

    /// The base as a task executor (one per base): tasks that prefer it run
    /// on the loop thread (see ``EventBaseTaskExecutor``).
    public var taskExecutor: EventBaseTaskExecutor { executorSlot.taskExecutor.unsafelyUnwrapped }
}

/// Holds a base's executors; written once at the end of the base's init,
/// before the base is shared, read-only after.
final class ExecutorSlot: @unchecked Sendable {
    var executor: EventBaseExecutor?
    var taskExecutor: EventBaseTaskExecutor?
}
