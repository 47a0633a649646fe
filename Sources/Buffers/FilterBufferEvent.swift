import EventCore

/// A bufferevent that transforms what passes through another one (libevent's
/// `bufferevent_filter_new`): bytes the underlying bufferevent reads go
/// through the input filter into this one's input; bytes written to this
/// one's output go through the output filter into the underlying output. The
/// basis of TLS over any bufferevent. The two share one lock.
public final class FilterBufferEvent: BufferEvent, @unchecked Sendable {
    // Confinement: every `var` is guarded by the shared lock.

    /// What a filter did (libevent's `bufferevent_filter_result`).
    public enum FilterResult: Sendable, Hashable {
        /// It moved what it could.
        case ok
        /// It needs more input before it can produce anything.
        case needMore
        /// The data is bad; the filter reports an error event.
        case error
    }

    /// Moves bytes from `source` to `destination`, adding at most `limit`
    /// bytes to it (a soft limit), in the given flush mode.
    public typealias Filter = @Sendable (
        _ source: EventBuffer, _ destination: EventBuffer, _ limit: Int, _ mode: FlushMode
    ) -> FilterResult

    /// The bufferevent being filtered.
    public let underlying: BufferEvent
    private let inputFilter: Filter
    private let outputFilter: Filter
    private var outputFinished = false

    /// Copies everything through unchanged (the filter libevent uses for NULL).
    public static let passThrough: Filter = { source, destination, limit, _ in
        let moved = (try? source.move(upTo: limit, into: destination)) ?? 0
        return moved > 0 || source.isEmpty ? .ok : .needMore
    }

    /// Wraps `underlying`, taking over its callbacks. With `.closeOnFree`,
    /// freeing this one frees it too.
    public init(
        underlying: BufferEvent, input: Filter? = nil, output: Filter? = nil, options: Options = []
    ) throws(EventError) {
        self.underlying = underlying
        inputFilter = input ?? Self.passThrough
        outputFilter = output ?? Self.passThrough
        try super.init(base: underlying.base, options: options, sharingLockOf: underlying)
        underlying.setCallbacks(
            read: { [weak self] _ in self?.underlyingReadable() },
            write: { [weak self] _ in self?.underlyingWritable() },
            event: { [weak self] _, what, error in self?.underlyingEvent(what, error) })
    }

    public override var fd: Int32 { underlying.fd }

    // MARK: transport

    public override func transportUpdate() throws(EventError) {
        var wanted: Direction = []
        if readingWanted { wanted.insert(.read) }
        if enabledDirections.contains(.write) { wanted.insert(.write) }
        let missing = wanted.subtracting(underlying.enabledDirections)
        if !missing.isEmpty { try underlying.enable(missing) }
        if readingWanted { runInputFilter(.normal) }
    }

    public override func transportOutputAdded() {
        runOutputFilter(.normal)
        scheduleDelivery()
    }

    public override func transportInputDrained() {
        // Room below the high watermark again: filter what is waiting.
        if readingWanted { runInputFilter(.normal) }
        scheduleDelivery()
    }

    public override func transportFlush(_ directions: Direction, mode: FlushMode) {
        if directions.contains(.read) { runInputFilter(mode) }
        if directions.contains(.write) { runOutputFilter(mode) }
    }

    public override func transportFree() {
        if options.contains(.closeOnFree) {
            underlying.free()
        } else {
            underlying.setCallbacks(read: nil, write: nil, event: nil)
        }
    }

    // MARK: filtering (the lock is held)

    /// Filters the underlying input into this input, up to the high watermark.
    private func runInputFilter(_ mode: FlushMode) {
        var added = 0
        input.unfreeze(end: true)
        defer { input.freeze(end: true) }
        while !underlying.input.isEmpty || mode != .normal {
            let room = readHighWatermark > 0 ? readHighWatermark - input.total : Int.max
            guard room > 0 else { break }
            let before = input.total
            let sourceBefore = underlying.input.total
            let result = inputFilter(underlying.input, input, room, mode)
            added += input.total - before
            if result == .error {
                report([.reading, .error])
                break
            }
            if result == .needMore || (input.total == before && underlying.input.total == sourceBefore) { break }
            if mode != .normal && underlying.input.isEmpty { break }
        }
        if added > 0 { didRead(added) }
    }

    /// Filters this output into the underlying output, up to the underlying
    /// write high watermark.
    private func runOutputFilter(_ mode: FlushMode) {
        guard enabledDirections.contains(.write), !outputFinished || mode == .normal else { return }
        var written = 0
        output.unfreeze(end: false)
        defer { output.freeze(end: false) }
        while !output.isEmpty || mode != .normal {
            let high = underlying.writeHighWatermark
            let room = high > 0 ? high - underlying.output.total : Int.max
            guard room > 0 else { break }
            let before = output.total
            let destinationBefore = underlying.output.total
            let result = outputFilter(output, underlying.output, room, mode)
            written += before - output.total
            if result == .error {
                report([.writing, .error])
                break
            }
            if result == .needMore || (output.total == before && underlying.output.total == destinationBefore) { break }
            if mode != .normal && output.isEmpty { break }
        }
        if mode == .finished { outputFinished = true }
        if written > 0 { didWrite(written) }
    }

    // MARK: the underlying bufferevent's callbacks (on the loop, unlocked)

    private func underlyingReadable() {
        lock.withLock { if readingWanted { runInputFilter(.normal) } }
        deliverCallbacksOrDefer(onLoop: true)
    }

    private func underlyingWritable() {
        lock.withLock {
            runOutputFilter(.normal)
            if output.total <= writeLowWatermark && enabledDirections.contains(.write) && underlying.output.isEmpty {
                pendingWrite = true
            }
        }
        deliverCallbacksOrDefer(onLoop: true)
    }

    private func underlyingEvent(_ what: What, _ error: Int32) {
        lock.withLock {
            if what.contains(.endOfFile) {
                // Let the filter see the end: it may hold a last partial block.
                runInputFilter(.finished)
            }
            report(what, errno: error)
        }
        deliverCallbacksOrDefer(onLoop: true)
    }
}
