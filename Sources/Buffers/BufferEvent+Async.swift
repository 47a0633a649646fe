import EventCore
import EventLocking
import Glibc
import Synchronization

/// Why an operation of an ``AsyncBufferEvent`` failed.
public enum AsyncBufferEventError: Error, Hashable, CustomStringConvertible {
    /// Reading failed (`BEV_EVENT_READING | BEV_EVENT_ERROR`): the errno.
    case readFailed(errno: Int32)
    /// Writing failed (`BEV_EVENT_WRITING | BEV_EVENT_ERROR`): the errno.
    case writeFailed(errno: Int32)
    /// A connect failed (`BEV_EVENT_ERROR` alone): the errno.
    case connectFailed(errno: Int32)
    /// Nothing was read within the bufferevent's read timeout.
    case readTimedOut
    /// The output did not drain within the bufferevent's write timeout.
    case writeTimedOut
    /// The connection was closed with ``AsyncBufferEvent/close()``.
    case closed
    /// The base was shut down, so nothing can run on its loop any more.
    case baseShutDown

    public var description: String {
        switch self {
        case .readFailed(let errno): "reading failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .writeFailed(let errno): "writing failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .connectFailed(let errno): "connecting failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .readTimedOut: "nothing was read within the read timeout"
        case .writeTimedOut: "the output did not drain within the write timeout"
        case .closed: "the connection was closed"
        case .baseShutDown: "the event base was shut down"
        }
    }
}

/// A bufferevent with async/await faces: the bytes it receives as an
/// `AsyncSequence` of chunks (``received``, ``receive()``), a ``write(_:)``
/// that waits for the output to drain, and a ``close()`` that flushes and
/// frees. It is a thin layer over the callback API: the chunks are taken
/// from the bufferevent's input, the writes go to its output, and the
/// bufferevent's own callbacks say when to resume a waiting task.
///
/// **Ownership.** The wrapper takes the bufferevent over: it sets its read,
/// write and event callbacks and its watermarks, and enables reading. It
/// frees the bufferevent on ``close()``, or when the last reference to the
/// wrapper goes (unsent output is then dropped); with `.closeOnFree` that
/// closes the socket.
///
/// **Back-pressure.** Received bytes wait in the bufferevent's input, whose
/// read high watermark is ``Configuration/readHighWatermark``: once that many
/// bytes are buffered and not yet taken by the consumer, the transport stops
/// reading (the kernel's buffers fill and the peer's writes stall), and it
/// reads again as soon as the consumer takes a chunk. A ``write(_:)`` returns
/// only once the output has drained to ``Configuration/writeLowWatermark``,
/// so a writer that awaits each write cannot grow the output without bound.
///
/// **Threading.** Callbacks run on the loop thread and resume the waiting
/// task from there. Every other call into the bufferevent is made where the
/// base allows it: at once on any thread of a shared base (or on the owner
/// thread of an owned base), otherwise posted to the loop with
/// `EventBase.post(_:)`, the one door of an owned base open to every
/// thread. The loop must therefore be running for these calls to finish.
///
/// **Cancellation.** A task cancelled while it waits in ``receive()`` (or in
/// a `for try await` over ``received``) throws `CancellationError`; reading
/// is disabled for good (the peer is held back by the full kernel buffers,
/// not reset), and the bufferevent stays with the wrapper, which can still
/// write and close. A cancelled ``write(_:)`` throws `CancellationError`;
/// its bytes stay queued. A cancelled ``close()`` frees at once.
public final class AsyncBufferEvent: Sendable {
    /// Bounds of the async faces.
    public struct Configuration: Sendable, Hashable {
        /// The most bytes received and not yet taken by the consumer: the
        /// bufferevent's read high watermark, and the largest chunk.
        public var readHighWatermark: Int
        /// ``AsyncBufferEvent/write(_:)`` returns once the output holds at
        /// most this many bytes (0: once everything was handed to the
        /// transport): the bufferevent's write low watermark.
        public var writeLowWatermark: Int

        public init(readHighWatermark: Int = 64 * 1024, writeLowWatermark: Int = 0) {
            self.readHighWatermark = max(1, readHighWatermark)
            self.writeLowWatermark = max(0, writeLowWatermark)
        }
    }

    /// The bufferevent underneath (its buffers and options stay readable;
    /// its callbacks and watermarks belong to the wrapper).
    public let bufferEvent: BufferEvent
    public let configuration: Configuration
    private let state: AsyncBufferEventState

    /// Takes `bufferEvent` over (see the type's documentation). Callable
    /// from any thread; on an owned base from another thread the setup is
    /// posted to the loop. Throws if the base was shut down.
    public init(_ bufferEvent: BufferEvent, configuration: Configuration = Configuration()) throws(EventError) {
        let configuration = Configuration(
            readHighWatermark: configuration.readHighWatermark, writeLowWatermark: configuration.writeLowWatermark)
        self.bufferEvent = bufferEvent
        self.configuration = configuration
        let state = AsyncBufferEventState(maxChunk: configuration.readHighWatermark)
        self.state = state
        try bufferEvent.base.runWhereAllowed { state.attach(to: bufferEvent, configuration) }
    }

    deinit {
        let bufferEvent = self.bufferEvent
        try? bufferEvent.base.runWhereAllowed { bufferEvent.free() }
    }

    /// The bytes received, chunk by chunk, in order: each chunk is what the
    /// input holds (at most ``Configuration/readHighWatermark`` bytes). The
    /// sequence ends at end of file, throws ``AsyncBufferEventError`` on an
    /// error or read timeout (after the bytes received before it), and
    /// throws `CancellationError` when the consuming task is cancelled.
    /// One task iterates at a time.
    public var received: ReceivedChunks { ReceivedChunks(connection: self) }

    /// The same chunks as buffers the bytes were moved into, not copied
    /// (see ``receiveBuffer()``).
    public var receivedBuffers: ReceivedBuffers { ReceivedBuffers(connection: self) }

    /// The next chunk received; nil at end of file or after ``close()``.
    /// Waits while nothing is buffered. One task receives at a time.
    public func receive() async throws -> [UInt8]? {
        switch try await nextChunk(asBuffer: false) {
        case .bytes(let bytes): return bytes
        case .buffer(let buffer): return try buffer.remove(upTo: buffer.count)
        case nil: return nil
        }
    }

    /// The same without copying: the buffered bytes are moved (their
    /// segments, not the bytes) into a new ``EventBuffer``, which
    /// ``write(buffer:)`` can move on in turn — an echo copies nothing.
    public func receiveBuffer() async throws -> EventBuffer? {
        switch try await nextChunk(asBuffer: true) {
        case .buffer(let buffer): return buffer
        case .bytes(let bytes):
            let buffer = EventBuffer()
            try buffer.add(bytes)
            return buffer
        case nil: return nil
        }
    }

    private func nextChunk(asBuffer: Bool) async throws -> Chunk? {
        let state = self.state
        let bufferEvent = self.bufferEvent
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ReadOutcome, Never>) in
                do {
                    try bufferEvent.base.runWhereAllowed { state.receive(continuation, asBuffer: asBuffer, from: bufferEvent) }
                } catch {
                    continuation.resumeOrdered(returning: .failed(.baseShutDown))
                }
            }
        } onCancel: {
            try? bufferEvent.base.runWhereAllowed { state.cancelReceiving(bufferEvent) }
        }
        ResumeOrdering.afterResume()
        switch outcome {
        case .chunk(let chunk): return chunk
        case .end: return nil
        case .failed(let error): throw error
        case .cancelled: throw CancellationError()
        }
    }

    /// Adds `bytes` to the output (libevent's `bufferevent_write`) and
    /// returns once the output has drained to the write low watermark.
    /// Throws ``AsyncBufferEventError`` if writing failed or timed out
    /// (then, or before: the bytes are not added after a failure), and
    /// `CancellationError` if the task was cancelled while waiting (the
    /// bytes stay queued).
    public func write(_ bytes: some Collection<UInt8> & Sendable) async throws {
        try await waitForOutput(limit: configuration.writeLowWatermark) { bufferEvent throws(BufferError) in
            try bufferEvent.write(bytes)
        }
    }

    public func write(_ text: String) async throws {
        try await write(Array(text.utf8))
    }

    /// Moves the contents of `buffer` to the output (libevent's
    /// `bufferevent_write_buffer`: segments move, bytes are not copied; the
    /// buffer is left empty) and returns once the output has drained to the
    /// write low watermark, as ``write(_:)-(some Collection<UInt8> & Sendable)``.
    public func write(buffer: EventBuffer) async throws {
        try await waitForOutput(limit: configuration.writeLowWatermark) { bufferEvent throws(BufferError) in
            try bufferEvent.write(buffer: buffer)
        }
    }

    /// Flushes and frees (libevent's `bufferevent_free` after the output
    /// drained): waits until everything written was handed to the
    /// transport, then frees the bufferevent (closing the socket with
    /// `.closeOnFree`). A receiver still waiting gets nil; later writes throw
    /// ``AsyncBufferEventError/closed``. Throws the write error if the output
    /// could not be flushed, and `CancellationError` if the task was
    /// cancelled while waiting; the bufferevent is freed in every case.
    public func close() async throws {
        var failure: (any Error)?
        do {
            try await waitForOutput(limit: 0, adding: nil)
        } catch {
            failure = error
        }
        let state = self.state
        let bufferEvent = self.bufferEvent
        do {
            try bufferEvent.base.runWhereAllowed { state.close(bufferEvent) }
        } catch {
            failure = failure ?? AsyncBufferEventError.baseShutDown
        }
        if let failure { throw failure }
    }

    /// Adds what `adding` adds (nothing when nil) and waits until the output
    /// holds at most `limit` bytes.
    private func waitForOutput(
        limit: Int, adding: (@Sendable (BufferEvent) throws(BufferError) -> Void)?
    ) async throws {
        try Task.checkCancellation()
        let state = self.state
        let bufferEvent = self.bufferEvent
        let cancellation = WriteCancellation()
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<WriteOutcome, Never>) in
                do {
                    try bufferEvent.base.runWhereAllowed {
                        state.write(limit: limit, adding: adding, cancellation, continuation, to: bufferEvent)
                    }
                } catch {
                    continuation.resumeOrdered(returning: .failed(.baseShutDown))
                }
            }
        } onCancel: {
            cancellation.isCancelled.store(true, ordering: .sequentiallyConsistent)
            try? bufferEvent.base.runWhereAllowed { state.cancelWriter(cancellation, bufferEvent) }
        }
        ResumeOrdering.afterResume()
        switch outcome {
        case .done: return
        case .failed(let error): throw error
        case .cancelled: throw CancellationError()
        }
    }
}

extension AsyncBufferEvent {
    /// The chunks an ``AsyncBufferEvent`` receives (see ``AsyncBufferEvent/received``).
    public struct ReceivedChunks: AsyncSequence, Sendable {
        public typealias Element = [UInt8]
        let connection: AsyncBufferEvent

        public func makeAsyncIterator() -> Iterator { Iterator(connection: connection) }

        public struct Iterator: AsyncIteratorProtocol {
            let connection: AsyncBufferEvent

            public mutating func next() async throws -> [UInt8]? {
                try await connection.receive()
            }
        }
    }
}

extension AsyncBufferEvent {
    /// The chunks as moved buffers (see ``AsyncBufferEvent/receivedBuffers``).
    public struct ReceivedBuffers: AsyncSequence, Sendable {
        public typealias Element = EventBuffer
        let connection: AsyncBufferEvent

        public func makeAsyncIterator() -> Iterator { Iterator(connection: connection) }

        public struct Iterator: AsyncIteratorProtocol {
            let connection: AsyncBufferEvent

            public mutating func next() async throws -> EventBuffer? {
                try await connection.receiveBuffer()
            }
        }
    }
}

extension EventBase {
    /// Runs `body` at once when the calling thread may use this base
    /// directly (any thread of a shared base, the owner thread of an owned
    /// one), and otherwise posts it to the loop, the one thread-safe door of
    /// an owned base. The async faces make every bufferevent and listener
    /// call through it.
    func runWhereAllowed(_ body: @escaping @Sendable () -> Void) throws(EventError) {
        if threadingMode == .shared || ownerThread == ThreadIdentity.current {
            body()
        } else {
            try post(body)
        }
    }
}

/// What one receive hands over: a copy, or the segments moved into a buffer.
enum Chunk: Sendable {
    case bytes([UInt8])
    case buffer(EventBuffer)
}

/// How a wait in ``AsyncBufferEvent/receive()`` ended.
enum ReadOutcome: Sendable {
    case chunk(Chunk)
    case end
    case failed(AsyncBufferEventError)
    case cancelled
}

/// How a wait for the output to drain ended.
enum WriteOutcome: Sendable {
    case done
    case failed(AsyncBufferEventError)
    case cancelled
}

/// Marks one write as cancelled (set by the cancellation handler, on any
/// thread, before it looks for the waiting writer under the lock).
final class WriteCancellation: Sendable {
    let isCancelled = Atomic<Bool>(false)
}

/// What the async faces of one bufferevent wait for, and its callbacks.
final class AsyncBufferEventState: @unchecked Sendable {
    // Confinement: every `var` is guarded by the bufferevent's lock. In a
    // shared base that is its recursive provider lock; in an owned base it
    // is a no-op lock and every access runs on the owner (loop) thread: the
    // callbacks run there and everything else is posted there through
    // `runWhereAllowed`.

    /// How reading ends once the input is empty.
    private enum ReadEnd {
        case open, endOfFile, failed(AsyncBufferEventError), cancelled, closed
    }

    private struct Writer {
        let cancellation: WriteCancellation
        let limit: Int
        let continuation: CheckedContinuation<WriteOutcome, Never>
    }

    private let maxChunk: Int
    private var readEnd = ReadEnd.open
    private var reader: CheckedContinuation<ReadOutcome, Never>?
    /// Whether the waiting reader takes its chunk as a moved buffer.
    private var readerWantsBuffer = false
    private var writeFailure: AsyncBufferEventError?
    private var writers: [Writer] = []

    init(maxChunk: Int) { self.maxChunk = maxChunk }

    /// Sets the callbacks and watermarks and starts reading.
    func attach(to bufferEvent: BufferEvent, _ configuration: AsyncBufferEvent.Configuration) {
        bufferEvent.setWatermark(.read, low: 0, high: configuration.readHighWatermark)
        bufferEvent.setWatermark(.write, low: configuration.writeLowWatermark, high: 0)
        bufferEvent.lock.withLock { bufferEvent.freeHandler = { [self] bufferEvent in freed(bufferEvent) } }
        bufferEvent.setCallbacks(
            read: { [self] bufferEvent in readable(bufferEvent) },
            write: { [self] bufferEvent in drained(bufferEvent) },
            event: { [self] bufferEvent, what, errno in happened(what, errno: errno, bufferEvent) })
        do {
            try bufferEvent.enable(.both)
        } catch {
            close(bufferEvent)
        }
    }

    // MARK: reading

    /// What a receiver gets now, or nil if it must wait (the lock is held).
    private func readOutcome(_ input: EventBuffer, asBuffer: Bool) -> ReadOutcome? {
        switch readEnd {
        case .cancelled: return .cancelled
        case .closed: return .end
        case .open, .endOfFile, .failed: break
        }
        if input.count > 0 {
            guard asBuffer else { return .chunk(.bytes((try? input.remove(upTo: maxChunk)) ?? [])) }
            let chunk = EventBuffer()
            _ = try? input.move(upTo: maxChunk, into: chunk)
            return .chunk(.buffer(chunk))
        }
        switch readEnd {
        case .open: return nil
        case .endOfFile, .closed: return .end
        case .failed(let error): return .failed(error)
        case .cancelled: return .cancelled
        }
    }

    func receive(_ continuation: CheckedContinuation<ReadOutcome, Never>, asBuffer: Bool, from bufferEvent: BufferEvent) {
        let outcome = bufferEvent.lock.withLock { () -> ReadOutcome? in
            precondition(reader == nil, "SwiftEvent: two tasks receive from one AsyncBufferEvent at once")
            if let outcome = readOutcome(bufferEvent.input, asBuffer: asBuffer) { return outcome }
            reader = continuation
            readerWantsBuffer = asBuffer
            return nil
        }
        if let outcome { continuation.resumeOrdered(returning: outcome) }
    }

    func cancelReceiving(_ bufferEvent: BufferEvent) {
        let waiting = bufferEvent.lock.withLock { () -> CheckedContinuation<ReadOutcome, Never>? in
            if case .closed = readEnd {} else { readEnd = .cancelled }
            try? bufferEvent.disable(.read)
            defer { reader = nil }
            return reader
        }
        waiting?.resumeOrdered(returning: .cancelled)
    }

    /// The read callback: bytes arrived (on the loop).
    private func readable(_ bufferEvent: BufferEvent) {
        resumeReader(bufferEvent)
    }

    /// Hands the waiting receiver what there is now.
    private func resumeReader(_ bufferEvent: BufferEvent) {
        let resumption = bufferEvent.lock.withLock { () -> (CheckedContinuation<ReadOutcome, Never>, ReadOutcome)? in
            guard let reader, let outcome = readOutcome(bufferEvent.input, asBuffer: readerWantsBuffer) else { return nil }
            self.reader = nil
            return (reader, outcome)
        }
        if let (reader, outcome) = resumption { reader.resumeOrdered(returning: outcome) }
    }

    // MARK: writing

    func write(
        limit: Int, adding: (@Sendable (BufferEvent) throws(BufferError) -> Void)?, _ cancellation: WriteCancellation,
        _ continuation: CheckedContinuation<WriteOutcome, Never>, to bufferEvent: BufferEvent
    ) {
        let outcome = bufferEvent.lock.withLock { () -> WriteOutcome? in
            // Cancelled before it got here: its cancelWriter found nothing to resume.
            if cancellation.isCancelled.load(ordering: .sequentiallyConsistent) { return .cancelled }
            if case .closed = readEnd { return .failed(.closed) }
            if let adding {
                if let writeFailure { return .failed(writeFailure) }
                do throws(BufferError) {
                    try adding(bufferEvent)
                } catch {
                    return .failed(.writeFailed(errno: errnoOf(error)))
                }
            }
            if bufferEvent.output.count <= limit { return .done }
            if let writeFailure { return .failed(writeFailure) }
            writers.append(Writer(cancellation: cancellation, limit: limit, continuation: continuation))
            return nil
        }
        if let outcome { continuation.resumeOrdered(returning: outcome) }
    }

    func cancelWriter(_ cancellation: WriteCancellation, _ bufferEvent: BufferEvent) {
        let waiting = bufferEvent.lock.withLock { () -> Writer? in
            guard let index = writers.firstIndex(where: { $0.cancellation === cancellation }) else { return nil }
            return writers.remove(at: index)
        }
        waiting?.continuation.resumeOrdered(returning: .cancelled)
    }

    /// The write callback: the output fell to the low watermark (on the loop).
    private func drained(_ bufferEvent: BufferEvent) {
        let done = bufferEvent.lock.withLock { () -> [Writer] in
            let total = bufferEvent.output.count
            let done = writers.filter { $0.limit >= total }
            writers.removeAll { $0.limit >= total }
            return done
        }
        for writer in done { writer.continuation.resumeOrdered(returning: .done) }
    }

    // MARK: events and closing

    /// The event callback: end of file, errors, timeouts (on the loop).
    private func happened(_ what: BufferEvent.What, errno: Int32, _ bufferEvent: BufferEvent) {
        let failed = bufferEvent.lock.withLock { () -> ([Writer], AsyncBufferEventError?) in
            if what.contains(.endOfFile), case .open = readEnd { readEnd = .endOfFile }
            let reading = what.contains(.reading)
            let writing = what.contains(.writing)
            let error: AsyncBufferEventError? =
                if what.contains(.timeout) {
                    writing ? .writeTimedOut : .readTimedOut
                } else if what.contains(.error) {
                    reading ? .readFailed(errno: errno) : writing ? .writeFailed(errno: errno) : .connectFailed(errno: errno)
                } else {
                    nil
                }
            guard let error else { return ([], nil) }
            if reading || !writing, case .open = readEnd { readEnd = .failed(error) }
            guard writing || !reading, writeFailure == nil else { return ([], nil) }
            writeFailure = error
            defer { writers.removeAll() }
            return (writers, error)
        }
        resumeReader(bufferEvent)
        if let error = failed.1 {
            for writer in failed.0 { writer.continuation.resumeOrdered(returning: .failed(error)) }
        }
    }

    /// Ends everything and frees the bufferevent.
    func close(_ bufferEvent: BufferEvent) {
        // The free hook set in attach ends the waits (also when the owner
        // frees the bufferevent itself rather than through close()).
        bufferEvent.free()
    }

    /// The bufferevent was freed: a waiting receiver gets the end, waiting
    /// writers `.closed` (called by free(), outside the lock).
    private func freed(_ bufferEvent: BufferEvent) {
        let (reader, writers) = bufferEvent.lock.withLock { () -> (CheckedContinuation<ReadOutcome, Never>?, [Writer]) in
            readEnd = .closed
            defer {
                self.reader = nil
                self.writers.removeAll()
            }
            return (self.reader, self.writers)
        }
        reader?.resumeOrdered(returning: .end)
        for writer in writers { writer.continuation.resumeOrdered(returning: .failed(.closed)) }
    }
}
