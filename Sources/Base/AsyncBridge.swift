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
            let cancel = start { result in continuation.resume(returning: result) }
            canceller.install(cancel)
        }
    } onCancel: {
        canceller.cancel()
    }
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
