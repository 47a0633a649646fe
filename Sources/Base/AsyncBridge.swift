import Synchronization

/// Turns a callback operation into an `async` call (the async faces of
/// DNS, HTTP and RPC use it; there is no second implementation). `start`
/// begins the operation, hands it the completion, and returns how to cancel
/// it; cancelling the task cancels the operation, and a task cancelled
/// before the operation ends throws `CancellationError`.
public func withCancellableCallback<Value: Sendable, Failure: Error>(
    _ start: (_ complete: @escaping @Sendable (Result<Value, Failure>) -> Void) -> (@Sendable () -> Void)?
) async throws -> Value {
    let canceller = Canceller()
    let result: Result<Value, Failure> = await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in
            let cancel = start { result in continuation.resumeOrdered(returning: result) }
            canceller.install(cancel)
        }
    } onCancel: {
        canceller.cancel()
    }
    ResumeOrdering.afterResume()
    if Task.isCancelled, case .failure = result { throw CancellationError() }
    return try result.get()
}

/// The cancel action of one operation, run once, whether the task is
/// cancelled before or after the operation started.
private final class Canceller: Sendable {
    private struct State {
        var action: (@Sendable () -> Void)?
        var cancelled = false
    }
    private let state = Mutex(State())

    func install(_ action: (@Sendable () -> Void)?) {
        let runNow = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.action = action
            return false
        }
        if runNow { action?() }
    }

    func cancel() {
        let action = state.withLock { state -> (@Sendable () -> Void)? in
            state.cancelled = true
            let action = state.action
            state.action = nil
            return action
        }
        action?()
    }
}

/// Makes what a thread did before resuming a continuation visible to
/// ThreadSanitizer as happening before the resumed task goes on. The
/// concurrency runtime orders the two, but it is not instrumented, and when
/// a continuation is resumed before its task reaches the await (the task
/// then goes on without suspending) TSan sees no ordering: a buffer made on
/// the loop thread and read by the task was reported as a race. A
/// releasing increment before the resume and an acquiring load after the
/// await make the ordering explicit (two atomic operations per hand-over).
package enum ResumeOrdering {
    private static let handOvers = Atomic<UInt>(0)

    @inline(__always)
    package static func beforeResume() { handOvers.add(1, ordering: .releasing) }

    @inline(__always)
    package static func afterResume() { _ = handOvers.load(ordering: .acquiring) }
}

extension CheckedContinuation {
    /// `resume(returning:)` after ``ResumeOrdering/beforeResume()``; the
    /// awaiting side calls ``ResumeOrdering/afterResume()``.
    @inline(__always)
    package func resumeOrdered(returning value: sending T) {
        ResumeOrdering.beforeResume()
        resume(returning: value)
    }
}
