import CEventShims

/// An event base as the serial executor of actors: an actor whose
/// `unownedExecutor` is `base.serialExecutor.asUnownedSerialExecutor()` runs
/// its methods on the thread running the base's loop, between callbacks, so
/// actor code and the base's callbacks share one thread and need no hops or
/// locks between them. Jobs go through `post(_:)` (any thread may enqueue;
/// the loop runs them in order). The loop must be running (or run later)
/// for jobs to make progress.
public final class EventBaseExecutor: SerialExecutor {
    /// Unowned: the base owns its executor (one per base, for executor identity).
    public unowned let base: EventBase

    init(base: EventBase) { self.base = base }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        do {
            try base.post { unowned.runSynchronously(on: executor) }
        } catch {
            // A base shut down cannot run the job; running it here would
            // break the actor's isolation, so it is a programming error.
            preconditionFailure("SwiftEvent: a job was enqueued on an event base that was shut down")
        }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// Whether the caller runs on the loop thread (Swift's isolation checks ask).
    public func checkIsolated() {
        precondition(base.isLoopThread, "SwiftEvent: not on the thread running this base's loop")
    }
}

extension EventBase {
    /// Whether the calling thread is the one running this base's loop.
    public var isLoopThread: Bool { onLoopThread }

    /// The base as an actor executor (one per base).
    public var serialExecutor: EventBaseExecutor { executorSlot.executor.unsafelyUnwrapped }
}

/// Holds a base's executor; written once at the end of the base's init,
/// before the base is shared, read-only after.
final class ExecutorSlot: @unchecked Sendable {
    var executor: EventBaseExecutor?
}
