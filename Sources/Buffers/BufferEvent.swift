import EventBackends
import EventCore
import EventLocking
import Glibc

/// A buffered connection (libevent's `bufferevent`): an input and an output
/// ``EventBuffer`` and the machinery that fills one from, and drains the
/// other to, its transport — a socket (``SocketBufferEvent``), the other end
/// of a pair (``PairBufferEvent``), or another bufferevent through filters
/// (``FilterBufferEvent``). Callbacks say when enough was read, when the
/// output ran low, and when the connection saw EOF, an error, a timeout or
/// completed a connect.
///
/// Threading follows the base. In a shared base every method may be called
/// from any thread; callbacks run on the loop thread, and never with the
/// bufferevent's lock held, so no lock order between bufferevents exists
/// (two bufferevents writing to each other from their callbacks cannot
/// deadlock, libevent #1750). ``free()`` and ``disable(_:)`` never wait for a
/// running callback (libevent #512, #1311): after they return no new
/// callback is delivered, and the internal events are finalized, not
/// deleted with a wait. In an owned base nothing takes a lock.
open class BufferEvent: @unchecked Sendable {
    // Confinement: every `var` below is guarded by `lock`, a recursive lock
    // made by the base's provider (a no-op lock in an owned base, whose
    // single thread confines it), shared with `input` and `output`.

    /// Directions of a bufferevent (`EV_READ` / `EV_WRITE`).
    public struct Direction: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let read = Direction(rawValue: 1)
        public static let write = Direction(rawValue: 2)
        public static let both: Direction = [.read, .write]
    }

    /// What happened, for the event callback (libevent's `BEV_EVENT_*`).
    public struct What: OptionSet, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let reading = What(rawValue: 0x01)
        public static let writing = What(rawValue: 0x02)
        public static let endOfFile = What(rawValue: 0x10)
        public static let error = What(rawValue: 0x20)
        public static let timeout = What(rawValue: 0x40)
        public static let connected = What(rawValue: 0x80)

        public var description: String {
            var names: [String] = []
            if contains(.reading) { names.append("reading") }
            if contains(.writing) { names.append("writing") }
            if contains(.endOfFile) { names.append("eof") }
            if contains(.error) { names.append("error") }
            if contains(.timeout) { names.append("timeout") }
            if contains(.connected) { names.append("connected") }
            return names.joined(separator: "|")
        }
    }

    /// Options (libevent's `BEV_OPT_*`).
    public struct Options: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Close the descriptor (or free the underlying bufferevent) on free.
        public static let closeOnFree = Options(rawValue: 1)
        /// Run every callback from the loop after the current pass, never
        /// inside the operation that caused it (`BEV_OPT_DEFER_CALLBACKS`).
        public static let deferCallbacks = Options(rawValue: 2)
    }

    /// How a flush ends (libevent's `bufferevent_flush_mode`).
    public enum FlushMode: Sendable, Hashable {
        /// Pass on what is ready.
        case normal
        /// Pass on everything now, even if a filter would rather wait.
        case flush
        /// Everything has been written: filters may finish their stream.
        case finished
    }

    public typealias DataCallback = @Sendable (_ bufferEvent: BufferEvent) -> Void
    /// The event callback: what happened, and the errno for errors (0 otherwise).
    public typealias EventCallback = @Sendable (_ bufferEvent: BufferEvent, _ what: What, _ errno: Int32) -> Void

    /// Why a direction is held back although enabled.
    struct Suspension: OptionSet {
        let rawValue: UInt8
        static let watermark = Suspension(rawValue: 1)
        static let rateLimit = Suspension(rawValue: 2)
        static let connecting = Suspension(rawValue: 4)
        static let filter = Suspension(rawValue: 8)
    }

    public let base: EventBase
    public let input = EventBuffer()
    public let output = EventBuffer()
    public let options: Options
    package let lock: any EventLock

    var readCallback: DataCallback?
    var writeCallback: DataCallback?
    var eventCallback: EventCallback?
    package var enabledDirections: Direction = .write
    var readSuspension: Suspension = []
    var writeSuspension: Suspension = []
    package var readLowWatermark = 0
    package var readHighWatermark = 0
    package var writeLowWatermark = 0
    package var writeHighWatermark = 0
    package var readTimeout: Duration?
    package var writeTimeout: Duration?
    /// Directions whose timeout restarts at the next transport update
    /// (enabled again, or their timeout changed), as libevent re-adds them.
    public final var timeoutsToRestart: Direction = []
    package var isFreed = false
    /// Callbacks waiting to be delivered.
    package var pendingRead = false
    package var pendingWrite = false
    var pendingEvents: What = []
    var pendingErrno: Int32 = 0
    /// Runs deferred callbacks on the loop.
    var deferredDelivery: Event?
    /// Token buckets, when rate limited.
    var rateLimiter: RateLimiter?
    /// The most one read, or one write, moves (`bufferevent_set_max_single_read`).
    package var maxSingleRead = 16384
    package var maxSingleWrite = 16384
    /// Told once, outside the lock, when ``free()`` runs (the async face
    /// resumes the tasks waiting on the bufferevent through it).
    package var freeHandler: (@Sendable (BufferEvent) -> Void)?

    /// Sets up the shared state; transports call it from their initializers.
    /// `sharingLockOf` makes two bufferevents one locking unit (the ends of a
    /// pair, a filter and what it wraps), as libevent does.
    public init(base: EventBase, options: Options, sharingLockOf other: BufferEvent? = nil) throws(EventError) {
        self.base = base
        self.options = options
        lock = other?.lock ?? base.lockProvider.makeLock(.recursive)
        input.enableLocking(lock)
        output.enableLocking(lock)
        // Users add to the output and take from the input, not the reverse.
        input.freeze(end: true)
        output.freeze(end: false)
        // No weak references to self: a weak reference gives the object a
        // side table, and every retain and release of the bufferevent would
        // take the runtime's slow path. The deferred-delivery event holds
        // the bufferevent until free() finalizes it (as the socket events
        // do), so a bufferevent must be freed, as in libevent; the observers
        // are unowned, cleared by free() (under the buffers' lock) and again
        // in deinit, before the memory goes.
        deferredDelivery = try Event(base: base, fd: -1, flags: [.finalize]) { [self] _, _ in
            deliverCallbacks()
        }
        input.observer = { [unowned(unsafe) self] change in
            if change.removed > 0 { self.inputDrained() }
        }
        output.observer = { [unowned(unsafe) self] change in
            if change.added > 0 { self.outputAdded() }
        }
    }

    deinit {
        // Not under the buffers' lock: a deinit can run inside the loop with
        // the base lock held (the base dropping a finalized event), and the
        // lock order is bufferevent, then base. free() already cleared them
        // under the lock; this covers a bufferevent dropped without free().
        input.observer = nil
        output.observer = nil
    }

    // MARK: public API

    /// Sets the callbacks (libevent's `bufferevent_setcb`); nil for none.
    public final func setCallbacks(
        read: DataCallback?, write: DataCallback?, event: EventCallback?
    ) {
        lock.withLock {
            readCallback = read
            writeCallback = write
            eventCallback = event
        }
    }

    /// Starts reading or writing (libevent's `bufferevent_enable`). Writing is
    /// enabled from the start, as in libevent.
    public final func enable(_ directions: Direction) throws(EventError) {
        try lock.withLock { () throws(EventError) in
            guard !isFreed else { throw .eventFinalized(call: "BufferEvent.enable") }
            enabledDirections.formUnion(directions)
            timeoutsToRestart.formUnion(directions)
            try transportUpdate()
        }
    }

    /// Stops reading or writing (libevent's `bufferevent_disable`). Does not
    /// wait for a running callback; no new one for the direction starts.
    public final func disable(_ directions: Direction) throws(EventError) {
        try lock.withLock { () throws(EventError) in
            enabledDirections.subtract(directions)
            if directions.contains(.read) { pendingRead = false }
            if directions.contains(.write) { pendingWrite = false }
            try transportUpdate()
        }
    }

    /// The directions enabled (libevent's `bufferevent_get_enabled`).
    public final var enabled: Direction { lock.withLock { enabledDirections } }

    /// Watermarks (libevent's `bufferevent_setwatermark`). Read: the read
    /// callback runs once `low` bytes are buffered; reading pauses at `high`
    /// (0: no limit). Write: the write callback runs when the output falls
    /// to `low`; `high` is used by filters only.
    public final func setWatermark(_ directions: Direction, low: Int, high: Int) {
        lock.withLock {
            if directions.contains(.read) {
                readLowWatermark = max(0, low)
                readHighWatermark = max(0, high)
                if readHighWatermark > 0 && readHighWatermark < readLowWatermark { readHighWatermark = readLowWatermark }
                updateWatermarkSuspension()
            }
            if directions.contains(.write) {
                writeLowWatermark = max(0, low)
                writeHighWatermark = max(0, high)
            }
            try? transportUpdate()
        }
    }

    /// Read and write timeouts (libevent's `bufferevent_set_timeouts`): no
    /// progress for that long while enabled reports `.timeout` with the
    /// direction and disables it. Nil (or zero, as in libevent) removes a timeout.
    public final func setTimeouts(read: Duration?, write: Duration?) throws(EventError) {
        for timeout in [read, write] {
            if let timeout, timeout < .zero || timeout > EventBase.maximumTimeout { throw .invalidTimeout(timeout) }
        }
        try lock.withLock { () throws(EventError) in
            readTimeout = read == .zero ? nil : read
            writeTimeout = write == .zero ? nil : write
            timeoutsToRestart = .both
            try transportUpdate()
        }
    }

    /// Adds bytes to the output (libevent's `bufferevent_write`).
    public final func write(_ bytes: some Collection<UInt8>) throws(BufferError) {
        try output.add(bytes)
    }

    public final func write(_ text: String) throws(BufferError) {
        try output.add(text)
    }

    /// Moves a whole buffer to the output (libevent's `bufferevent_write_buffer`).
    public final func write(buffer: EventBuffer) throws(BufferError) {
        try output.add(buffer: buffer)
    }

    /// Takes up to `maxCount` bytes from the input (libevent's `bufferevent_read`).
    public final func read(upTo maxCount: Int) throws(BufferError) -> [UInt8] {
        try input.remove(upTo: maxCount)
    }

    /// Pushes buffered data through (libevent's `bufferevent_flush`); filters
    /// use the mode, sockets write what they can anyway.
    public final func flush(_ directions: Direction = .write, mode: FlushMode = .flush) {
        lock.withLock { transportFlush(directions, mode: mode) }
        // Called from any thread: callbacks still run on the loop.
        scheduleDelivery()
    }

    /// The most a single read or write moves.
    public final func setMaxSingle(read: Int? = nil, write: Int? = nil) {
        lock.withLock {
            if let read { maxSingleRead = max(1, read) }
            if let write { maxSingleWrite = max(1, write) }
        }
    }

    /// Frees the bufferevent (libevent's `bufferevent_free`): callbacks stop,
    /// the internal events are finalized without waiting for a running
    /// callback, the descriptor is closed once they are gone when
    /// `.closeOnFree` was given. Buffered output is dropped.
    public final func free() {
        var handler: (@Sendable (BufferEvent) -> Void)? = nil
        lock.withLock {
            guard !isFreed else { return }
            isFreed = true
            handler = freeHandler
            freeHandler = nil
            readCallback = nil
            writeCallback = nil
            eventCallback = nil
            pendingRead = false
            pendingWrite = false
            pendingEvents = []
            enabledDirections = []
            rateLimiter?.detach(self)
            rateLimiter = nil
            transportFree()
        }
        // Finalized outside the lock; dropping it breaks the event's hold on self.
        let delivery = lock.withLock { () -> Event? in
            defer { deferredDelivery = nil }
            return deferredDelivery
        }
        try? delivery?.finalize { _ in }
        input.withLock { input.observer = nil }
        output.withLock { output.observer = nil }
        handler?(self)
    }

    /// Whether ``free()`` was called.
    public final var isFree: Bool { lock.withLock { isFreed } }

    /// The descriptor of the transport, -1 if none (libevent's `bufferevent_getfd`).
    open var fd: Int32 { -1 }

    // MARK: transport hooks (called with the lock held)

    /// Start or stop watching according to `enabledDirections` and the
    /// suspensions (and rearm timeouts).
    open func transportUpdate() throws(EventError) {}

    /// Bytes were added to the output.
    open func transportOutputAdded() {}

    /// Bytes were taken from the input (after watermark bookkeeping).
    open func transportInputDrained() {}

    /// A flush was asked for.
    open func transportFlush(_ directions: Direction, mode: FlushMode) {}

    /// Tear down: finalize events, close what `.closeOnFree` says.
    open func transportFree() {}

    // MARK: state helpers for transports (the lock is held)

    /// Whether reading is enabled and nothing holds it back.
    public final var readingWanted: Bool { enabledDirections.contains(.read) && readSuspension.isEmpty && !isFreed }

    /// Whether writing is enabled and nothing holds it back.
    public final var writingWanted: Bool { enabledDirections.contains(.write) && writeSuspension.isEmpty && !isFreed }

    /// The most the next read may take: the single-read cap, the room below
    /// the high watermark, and the rate limit.
    public final var readAllowance: Int { min(maxSingleRead, readRoom) }

    /// The room below the high watermark, within the rate limit (no
    /// single-read cap: what a pair moves at once).
    public final var readRoom: Int {
        var allowance = Int.max
        if readHighWatermark > 0 { allowance = readHighWatermark - input.total }
        if let rateLimiter { allowance = min(allowance, rateLimiter.readAllowance(for: self)) }
        return max(0, allowance)
    }

    /// The most the next write may move.
    public final var writeAllowance: Int { min(maxSingleWrite, writeRoom) }

    /// What the rate limit lets through (no single-write cap).
    public final var writeRoom: Int {
        guard let rateLimiter else { return Int.max }
        return max(0, rateLimiter.writeAllowance(for: self))
    }

    /// After a read of `count` bytes into the input: charge the rate limit,
    /// hold reading at the high watermark, and queue the read callback when
    /// the low watermark is reached.
    public final func didRead(_ count: Int) {
        rateLimiter?.charge(self, read: count)
        updateWatermarkSuspension()
        if input.total >= readLowWatermark && input.total > 0 && enabledDirections.contains(.read) {
            pendingRead = true
        }
    }

    /// After a write of `count` bytes from the output: charge the rate
    /// limit and queue the write callback when the output is low.
    public final func didWrite(_ count: Int) {
        rateLimiter?.charge(self, written: count)
        if output.total <= writeLowWatermark && enabledDirections.contains(.write) { pendingWrite = true }
    }

    /// Queues the event callback; `disabling` directions stop as libevent
    /// does on EOF, errors and timeouts.
    public final func report(_ what: What, errno: Int32 = 0, disabling: Direction = []) {
        pendingEvents.formUnion(what)
        if errno != 0 { pendingErrno = errno }
        if !disabling.isEmpty {
            enabledDirections.subtract(disabling)
            try? transportUpdate()
        }
    }

    /// The rate limit lets nothing through in `directions` now: hold them
    /// back until the bucket refills (transports other than this module's).
    package func holdForRateLimit(_ directions: Direction) {
        guard let rateLimiter else { return }
        let starved = directions.contains(.read)
            ? rateLimiter.readAllowance(for: self) == 0 : rateLimiter.writeAllowance(for: self) == 0
        guard starved else { return }
        suspend(directions, .rateLimit)
        rateLimiter.noteStarved(self)
    }

    /// A connect that could not start (a host name that did not resolve):
    /// `.error` with `errno` to the event callback, from the loop.
    package func reportConnectFailure(errno: Int32) {
        lock.withLock { report(.error, errno: errno, disabling: .both) }
        scheduleDelivery()
    }

    /// Holds a direction back, or lets it go, for `reason`.
    func suspend(_ directions: Direction, _ reason: Suspension) {
        if directions.contains(.read) { readSuspension.insert(reason) }
        if directions.contains(.write) { writeSuspension.insert(reason) }
        try? transportUpdate()
    }

    func resume(_ directions: Direction, _ reason: Suspension) {
        if directions.contains(.read) { readSuspension.remove(reason) }
        if directions.contains(.write) { writeSuspension.remove(reason) }
        try? transportUpdate()
    }

    /// Reading pauses at the high watermark and resumes below it.
    func updateWatermarkSuspension() {
        let full = readHighWatermark > 0 && input.total >= readHighWatermark
        if full != readSuspension.contains(.watermark) {
            if full { readSuspension.insert(.watermark) } else { readSuspension.remove(.watermark) }
        }
    }

    private func inputDrained() {
        let wasHeld = readSuspension.contains(.watermark)
        updateWatermarkSuspension()
        if wasHeld && !readSuspension.contains(.watermark) { try? transportUpdate() }
        transportInputDrained()
    }

    private func outputAdded() {
        transportOutputAdded()
    }

    // MARK: delivering callbacks

    /// Runs the queued callbacks now (from a loop callback), or schedules
    /// them on the loop when callbacks are deferred or the caller is not on
    /// the loop. Never with the lock held.
    public final func deliverCallbacksOrDefer(onLoop: Bool) {
        if onLoop && !options.contains(.deferCallbacks) {
            deliverCallbacks()
        } else {
            scheduleDelivery()
        }
    }

    /// Makes the loop deliver the queued callbacks after its current pass.
    public final func scheduleDelivery() {
        let delivery = lock.withLock { pendingRead || pendingWrite || !pendingEvents.isEmpty ? deferredDelivery : nil }
        try? delivery?.activate()
    }

    /// Delivers queued callbacks: connected first, then read, write, and the
    /// other events, as libevent does; without the lock.
    final func deliverCallbacks() {
        // lock/unlock rather than withLock: closures returned through the
        // generic withLock would be re-abstracted, two allocations a call.
        lock.lock(at: CallSite())
        var read: DataCallback? = nil
        var write: DataCallback? = nil
        var event: EventCallback? = nil
        var what: What = []
        var error: Int32 = 0
        if !isFreed {
            if pendingRead { read = readCallback }
            if pendingWrite { write = writeCallback }
            what = pendingEvents
            error = pendingErrno
            if !what.isEmpty { event = eventCallback }
            pendingRead = false
            pendingWrite = false
            pendingEvents = []
            pendingErrno = 0
        }
        lock.unlock(at: CallSite())
        if what.contains(.connected), let event {
            event(self, .connected, 0)
        }
        read?(self)
        write?(self)
        let rest = what.subtracting(.connected)
        if !rest.isEmpty, let event, lock.withLock({ !isFreed }) {
            event(self, rest, error)
        }
    }
}
