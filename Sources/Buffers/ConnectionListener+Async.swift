import EventCore
import EventLocking
import Glibc

extension ConnectionListener {
    /// Binds to `address` and listens without accepting yet: for
    /// ``connections(backlog:configuration:)``, which starts accepting when
    /// it is iterated. (A connection accepted while no callback is set, by
    /// an `enable()` of your own, is closed.)
    public convenience init(
        base: EventBase, address: SocketAddress, options: Options = [.reuseAddress, .closeOnFree], backlog: Int32 = 128
    ) throws(EventError) {
        try self.init(base: base, address: address, options: options.union(.disabled), backlog: backlog) { _, fd, _ in
            Glibc.close(fd)
        }
    }

    /// The connections this listener accepts, as an `AsyncSequence` (the
    /// async face of `evconnlistener`'s callback). Each element is a
    /// ready ``AsyncBufferEvent`` over a ``SocketBufferEvent`` made on the
    /// loop thread with `.closeOnFree` (so it works the same on owned and
    /// shared bases), and the peer's address; its ``BufferEvent/fd`` is the
    /// accepted descriptor.
    ///
    /// Iterating sets the listener's accept callback and enables it. At most
    /// `backlog` accepted connections wait for the consumer: when that many
    /// wait, the listener is disabled (further connections wait in the
    /// kernel's listen queue) and enabled again as soon as the consumer takes
    /// one.
    ///
    /// The sequence ends (nil, after the connections already waiting) when
    /// the listener is freed. It throws `CancellationError` when the
    /// consuming task is cancelled. When it is cancelled, or the iteration
    /// ends early (a `break`, an error thrown out of the loop), the listener
    /// is disabled and its accept callback removed, and the connections
    /// accepted but not handed over are freed, closing their sockets; the
    /// listener itself stays with its owner, who frees it. Connections
    /// handed over belong to the consumer. One iteration at a time per listener.
    public func connections(
        backlog: Int = 16, configuration: AsyncBufferEvent.Configuration = AsyncBufferEvent.Configuration()
    ) -> AcceptedConnections {
        AcceptedConnections(listener: self, backlog: max(1, backlog), configuration: configuration)
    }

    /// The connections a listener accepts (see ``ConnectionListener/connections(backlog:configuration:)``).
    public struct AcceptedConnections: AsyncSequence, Sendable {
        public typealias Element = (connection: AsyncBufferEvent, peer: SocketAddress)
        let listener: ConnectionListener
        let backlog: Int
        let configuration: AsyncBufferEvent.Configuration

        public func makeAsyncIterator() -> Iterator {
            let state = AcceptState(base: listener.base, backlog: backlog, configuration: configuration)
            let listener = self.listener
            do {
                try listener.base.runWhereAllowed { state.start(listener) }
            } catch {
                state.fail(.baseShutDown)
            }
            return Iterator(iteration: AcceptIteration(state: state, listener: listener))
        }

        public struct Iterator: AsyncIteratorProtocol {
            let iteration: AcceptIteration

            public mutating func next() async throws -> Element? {
                try await iteration.next()
            }
        }
    }
}

/// How a wait for a connection ended.
enum AcceptOutcome: Sendable {
    case connection(AsyncBufferEvent, SocketAddress)
    case end
    case failed(AsyncBufferEventError)
    case cancelled
}

/// One iteration over a listener's connections; when it goes (the loop
/// ended), accepting through it stops.
final class AcceptIteration: Sendable {
    let state: AcceptState
    let listener: ConnectionListener

    init(state: AcceptState, listener: ConnectionListener) {
        self.state = state
        self.listener = listener
    }

    deinit {
        let (state, listener) = (self.state, self.listener)
        try? listener.base.runWhereAllowed { state.stop(listener, cancelled: false) }
    }

    func next() async throws -> ConnectionListener.AcceptedConnections.Element? {
        let (state, listener) = (self.state, self.listener)
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<AcceptOutcome, Never>) in
                do {
                    try listener.base.runWhereAllowed { state.next(continuation, listener) }
                } catch {
                    continuation.resumeOrdered(returning: .failed(.baseShutDown))
                }
            }
        } onCancel: {
            try? listener.base.runWhereAllowed { state.stop(listener, cancelled: true) }
        }
        ResumeOrdering.afterResume()
        switch outcome {
        case .connection(let connection, let peer): return (connection, peer)
        case .end: return nil
        case .failed(let error): throw error
        case .cancelled: throw CancellationError()
        }
    }
}

/// The connections accepted and not yet taken, and the consumer waiting.
final class AcceptState: @unchecked Sendable {
    // Confinement: every `var` is guarded by `lock`, made by the base's
    // provider: a real lock in a shared base; a no-op lock in an owned base,
    // where every access runs on the owner (loop) thread (the accept
    // callback runs there, the rest is posted there by `runWhereAllowed`).
    // Lock order: this lock, then the listener's (enable/disable run under it).

    private enum End {
        case listenerFreed, stopped, cancelled, failed(AsyncBufferEventError)
    }

    private let lock: any EventLock
    private let backlog: Int
    private let configuration: AsyncBufferEvent.Configuration
    private var waiting: [(connection: AsyncBufferEvent, peer: SocketAddress)] = []
    private var consumer: CheckedContinuation<AcceptOutcome, Never>?
    private var end: End?
    /// Whether this sequence disabled the listener because the backlog is full.
    private var paused = false

    init(base: EventBase, backlog: Int, configuration: AsyncBufferEvent.Configuration) {
        lock = base.lockProvider.makeLock(.recursive)
        self.backlog = backlog
        self.configuration = configuration
    }

    /// Takes the listener's accept callback and enables it.
    func start(_ listener: ConnectionListener) {
        let hooked = listener.setFreeHandler { [self] in listenerFreed() }
        guard hooked else {
            lock.withLock { end = .listenerFreed }
            return
        }
        listener.setCallback { [self] listener, fd, peer in accepted(fd, peer, listener) }
        do {
            try listener.enable()
        } catch {
            lock.withLock { if end == nil { end = .listenerFreed } }
        }
    }

    func fail(_ error: AsyncBufferEventError) {
        lock.withLock { end = .failed(error) }
    }

    /// The accept callback (on the loop): wraps the socket, hands it to the
    /// waiting consumer or keeps it, and pauses the listener at the backlog.
    private func accepted(_ fd: Int32, _ peer: SocketAddress, _ listener: ConnectionListener) {
        let bufferEvent: SocketBufferEvent
        do {
            bufferEvent = try SocketBufferEvent(base: listener.base, fd: fd, options: [.closeOnFree])
        } catch {
            Glibc.close(fd)
            return
        }
        let connection: AsyncBufferEvent
        do {
            connection = try AsyncBufferEvent(bufferEvent, configuration: configuration)
        } catch {
            bufferEvent.free()
            return
        }
        // A connection nobody wants is freed (its socket closed) when this
        // function returns, after the lock is released.
        if let consumer = keep(connection, peer, listener) {
            consumer.resumeOrdered(returning: .connection(connection, peer))
        }
    }

    /// Keeps an accepted connection, or returns the consumer waiting for
    /// it; pauses the listener when the backlog is full.
    private func keep(
        _ connection: AsyncBufferEvent, _ peer: SocketAddress, _ listener: ConnectionListener
    ) -> CheckedContinuation<AcceptOutcome, Never>? {
        lock.lock()
        defer { lock.unlock() }
        if end != nil { return nil }
        if let waiting = consumer {
            consumer = nil
            return waiting
        }
        waiting.append((connection, peer))
        if waiting.count >= backlog && !paused {
            paused = true
            try? listener.disable()
        }
        return nil
    }

    func next(_ continuation: CheckedContinuation<AcceptOutcome, Never>, _ listener: ConnectionListener) {
        let outcome = lock.withLock { () -> AcceptOutcome? in
            precondition(consumer == nil, "SwiftEvent: two tasks iterate one listener's connections at once")
            switch end {
            case .cancelled: return .cancelled
            case .failed(let error): return .failed(error)
            case .stopped: return .end
            case .listenerFreed, nil: break
            }
            if !waiting.isEmpty {
                let (connection, peer) = waiting.removeFirst()
                if paused && end == nil && waiting.count < backlog {
                    paused = false
                    try? listener.enable()
                }
                return .connection(connection, peer)
            }
            if end != nil { return .end }
            consumer = continuation
            return nil
        }
        if let outcome { continuation.resumeOrdered(returning: outcome) }
    }

    /// Ends the iteration: the listener is disabled and its callback
    /// removed; connections not handed over are freed.
    func stop(_ listener: ConnectionListener, cancelled: Bool) {
        var unwanted: [(connection: AsyncBufferEvent, peer: SocketAddress)] = []
        let consumer = lock.withLock { () -> CheckedContinuation<AcceptOutcome, Never>? in
            // Only once: a later sequence may own the listener by now.
            switch end {
            case .cancelled, .stopped: return nil
            case .listenerFreed, .failed, nil: end = cancelled ? .cancelled : .stopped
            }
            _ = listener.setFreeHandler(nil)
            listener.setCallback(nil)
            try? listener.disable()
            paused = false
            swap(&unwanted, &waiting)
            defer { self.consumer = nil }
            return self.consumer
        }
        // Frees the connections not handed over (closing their sockets),
        // without the lock.
        unwanted.removeAll()
        consumer?.resumeOrdered(returning: cancelled ? .cancelled : .end)
    }

    /// The listener was freed: the consumer gets what waits, then the end.
    private func listenerFreed() {
        let consumer = lock.withLock { () -> CheckedContinuation<AcceptOutcome, Never>? in
            if end == nil { end = .listenerFreed }
            guard waiting.isEmpty else { return nil }
            defer { self.consumer = nil }
            return self.consumer
        }
        consumer?.resumeOrdered(returning: .end)
    }
}
