import EventBackends
import Synchronization

/// An event: a descriptor, signal or timer watched by an ``EventBase``, and
/// the closure to run when it fires (libevent's `struct event`).
///
/// ```swift
/// let ev = try Event(base: base, fd: socket, flags: [.read, .persist]) { ev, what in
///     // read from ev.fd
/// }
/// try ev.add(timeout: .seconds(5))
/// ```
///
/// While an event is added, active or has a timeout, its base keeps it alive;
/// dropping your reference does not stop it. Delete it, or ``finalize(_:)`` it.
///
/// Thread-safety follows the base: in a shared base every method may be
/// called from any thread; in an owned base only from the owner thread.
public final class Event: @unchecked Sendable {
    // Confinement of the mutable state below:
    // - fields marked "writer" are touched only by the base's writer: the owner
    //   thread (owned base), the holder of the base lock (mutex provider), or
    //   the holder of the writer role, which is the loop thread while it runs
    //   (rcu provider);
    // - `Atomic` fields are the ones other threads read or request through.
    public typealias Callback = @Sendable (_ event: Event, _ what: Flags) -> Void

    // The fields the dispatch path touches come first, so they share the
    // object's first two cache lines.

    /// What it waits for.
    public let flags: Flags
    /// The descriptor, the signal number for signal events, or -1.
    public let fd: Int32
    /// Next event on the same descriptor or signal. Read by lock-free readers
    /// under the rcu provider inside read-side sections; written by the writer.
    let ioNext = Atomic<Unmanaged<Event>?>(nil)
    /// In an active queue (EVLIST_ACTIVE) with these results (writer).
    var isActive = false
    /// Linked into its descriptor's or signal's list (libevent's EVLIST_INSERTED).
    var isInserted = false
    /// Has a scheduled timeout (EVLIST_TIMEOUT).
    var hasTimeout = false
    /// The base holds a +1 reference while the event is inserted, timed or active.
    var retainedByBase = false
    /// Counted in the base's user-event count (inserted or timed, not internal).
    var countedAsUserEvent = false
    /// Internal events (common-timeout queue timers, the loop-exit timer) are
    /// left out of introspection.
    let isInternal: Bool
    /// Whether, while added, it keeps the loop from exiting for lack of
    /// events: every user event does, and the loop-exit timer (as libevent's
    /// `event_base_loopexit` event does); queue timers do not.
    let keepsLoopAlive: Bool
    /// Lifecycle: normal, finalizing, finalized.
    let lifecycle = Atomic<UInt8>(Lifecycle.normal)
    var result: Flags = []
    /// Pending signal deliveries to run the callback for.
    var signalCalls = 0
    /// Priority; lower runs first.
    var priorityValue: Int
    // Intrusive links (writer), unretained: the base's +1 keeps linked events alive.
    var activeNext: Unmanaged<Event>?
    var activePrevious: Unmanaged<Event>?
    /// The relative timeout of a persistent event, rescheduled after each run;
    /// -1 when none.
    var interval: Int64 = -1
    let callback: Callback
    /// The rcu provider's delete generation this activation belongs to.
    var activationGeneration: UInt32 = 0
    /// The delete generation the writer has applied.
    var appliedGeneration: UInt32 = 0
    /// Requests from other threads to the rcu writer (``Intent``).
    let intent = Atomic<UInt64>(0)
    /// The loop is running this event's callback on the base's reference;
    /// a release of that reference waits until the callback returns.
    var pinnedByDispatch = false
    var releaseWhenUnpinned = false
    /// rcu: unlinked from a list lock-free readers walk since its last
    /// retirement, so a reader may still hold it: its release must wait for
    /// a grace period. An event that was only active or timed never was.
    var readersMayHold = false

    // MARK: the rest of the writer state

    /// The base the event belongs to.
    public let base: EventBase
    /// Absolute deadline (monotonic nanoseconds) when `hasTimeout`.
    var deadline: Int64 = 0
    /// Position in the timer heap, -1 when not in it.
    var heapIndex = -1
    /// The common timeout queue the timeout lives in, if any.
    var commonQueue: CommonTimeoutQueue?
    /// The queue a persistent event's timeout is rescheduled on, if common.
    var intervalQueue: CommonTimeoutQueue?
    /// Set on a common queue's internal timer: the queue it expires.
    var expiresQueue: CommonTimeoutQueue?
    var finalizer: (@Sendable (Event) -> Void)?
    /// The finalizer has been queued to run (it runs once).
    var finalizeQueued = false
    var ioPrevious: Unmanaged<Event>?
    var commonNext: Unmanaged<Event>?
    var commonPrevious: Unmanaged<Event>?
    /// Hand-off stack link, written by the one thread that pushes the event
    /// (the `dirty` bit of `intent` makes it one) before its releasing push.
    var handoffNext: Unmanaged<Event>?

    // MARK: shared state for lock-free readers and other threads (rcu)

    /// What other threads can see without a lock: inserted I/O flags, the
    /// timeout bit and active result bits (``Published``).
    let published = Atomic<UInt32>(0)
    /// The deadline when the published timeout bit is set.
    let publishedDeadline = Atomic<Int64>(0)
    /// The relative timeout an add request asked for (-1: none), and the
    /// common timeout queue it asked for (nil: none).
    let requestedTimeout = Atomic<Int64>(-1)
    let requestedCommonQueue = Atomic<Unmanaged<CommonTimeoutQueue>?>(nil)

    /// Creates an event on `base` for a descriptor (`fd` ≥ 0 with read,
    /// write or closed), a signal (`.signal` in `flags`, `fd` is the signal
    /// number) or a timer (`fd` -1, no I/O flags). libevent's `event_new`.
    public init(
        base: EventBase, fd: Int32, flags: Flags, priority: Int? = nil,
        callback: @escaping Callback
    ) throws(EventError) {
        try Self.validate(fd: fd, flags: flags, base: base)
        self.base = base
        self.fd = fd
        self.flags = flags
        self.callback = callback
        self.isInternal = false
        self.keepsLoopAlive = true
        let count = base.priorityCount
        if let priority {
            guard (0..<count).contains(priority) else { throw .invalidPriority(priority, count: count) }
            priorityValue = priority
        } else {
            priorityValue = count / 2
        }
    }

    /// A signal event (libevent's `evsignal_new`): persistent unless `flags`
    /// says otherwise.
    public convenience init(
        base: EventBase, signal: Int32, flags: Flags = [.persist], priority: Int? = nil,
        callback: @escaping Callback
    ) throws(EventError) {
        try self.init(base: base, fd: signal, flags: flags.union(.signal), priority: priority, callback: callback)
    }

    /// A timer (libevent's `evtimer_new`).
    public static func timer(
        base: EventBase, persist: Bool = false, priority: Int? = nil, callback: @escaping Callback
    ) throws(EventError) -> Event {
        try Event(base: base, fd: -1, flags: persist ? [.persist] : [], priority: priority, callback: callback)
    }

    /// Internal events of the base itself.
    init(
        internalOn base: EventBase, keepsLoopAlive: Bool, priority: Int, callback: @escaping Callback
    ) {
        self.base = base
        self.fd = -1
        self.flags = []
        self.callback = callback
        self.isInternal = true
        self.keepsLoopAlive = keepsLoopAlive
        self.priorityValue = priority
    }

    private static func validate(fd: Int32, flags: Flags, base: EventBase) throws(EventError) {
        let io = flags.intersection(.io)
        if flags.contains(.signal) {
            guard io.isEmpty else {
                throw .invalidFlags(flags, fd: fd, reason: "a signal event cannot also wait for I/O")
            }
            try SignalRouter.validate(signal: fd)
            return
        }
        if fd < -1 { throw .badFileDescriptor(fd: fd, call: "Event.init") }
        if fd == -1 && !io.isEmpty {
            throw .invalidFlags(flags, fd: fd, reason: "I/O flags need a descriptor")
        }
        if flags.contains(.edgeTriggered) && io.isEmpty {
            throw .invalidFlags(flags, fd: fd, reason: "edge-triggering needs read, write or closed")
        }
        if flags.contains(.timeout) {
            throw .invalidFlags(flags, fd: fd, reason: "timeout is reported, not requested: pass a timeout to add()")
        }
    }

    /// The priority (lower runs first); libevent's `event_priority_set`.
    /// Cannot change while the event is active.
    public var priority: Int { base.readPriority(of: self) }

    public func setPriority(_ priority: Int) throws(EventError) {
        try base.setPriority(priority, of: self)
    }

    /// Adds the event, with an optional timeout (libevent's `event_add`).
    /// Adding an added event with a timeout reschedules it; without one, an
    /// existing timeout stays as it was (as in libevent).
    public func add(timeout: Duration? = nil) throws(EventError) {
        try base.add(self, timeout: timeout.map { .relative($0) } ?? .none)
    }

    /// Removes the event's timeout, leaving its descriptor or signal
    /// registration as it is (libevent's `event_remove_timer`). A pure timer
    /// is no longer pending afterwards.
    public func removeTimer() throws(EventError) {
        try base.removeTimer(self)
    }

    /// Adds the event with a timeout on a common-timeout queue (O(1) for
    /// many events sharing one duration; libevent's common timeouts).
    public func add(timeout: CommonTimeout) throws(EventError) {
        try base.add(self, timeout: .common(timeout))
    }

    /// Deletes the event (libevent's `event_del`). Deleting an event that was
    /// never added does nothing. From another thread of a shared base it
    /// returns only when the callback is not running and will not run again
    /// (with `.finalize` in its flags: it will not start again, but one that
    /// is running may still be finishing); from inside its own callback it
    /// returns at once.
    public func delete() throws(EventError) {
        try base.delete(self)
    }

    /// Makes the event active with `what` as if it had fired
    /// (libevent's `event_active`); works whether or not it is added.
    public func activate(_ what: Flags = .timeout) throws(EventError) {
        try base.activate(self, what)
    }

    /// Which of `what` the event is pending or active for (libevent's
    /// `event_pending`): inserted I/O or signal flags, `.timeout` if a
    /// timeout is scheduled, and the flags it is active with.
    public func pending(_ what: Flags = [.read, .write, .closed, .signal, .timeout]) -> Flags {
        base.pending(self).intersection(what)
    }

    /// Whether the event is added or active for anything.
    public var isPending: Bool { !pending().isEmpty }

    /// Time left until the scheduled timeout, or nil when none.
    public var timeoutRemaining: Duration? { base.timeoutRemaining(of: self) }

    /// Deletes the event without waiting and runs `finalizer` on the loop
    /// once the event can no longer fire (libevent's `event_finalize`). The
    /// event cannot be used afterwards.
    public func finalize(_ finalizer: @escaping @Sendable (Event) -> Void) throws(EventError) {
        try base.finalize(self, finalizer)
    }

    /// Whether ``finalize(_:)`` was called.
    public var isFinalized: Bool { lifecycle.load(ordering: .acquiring) != Lifecycle.normal }
}

/// Lifecycle values of ``Event/lifecycle``.
enum Lifecycle {
    static let normal: UInt8 = 0
    static let finalizing: UInt8 = 1
    static let finalized: UInt8 = 2
}

/// Bits of ``Event/published``: the inserted I/O/signal flags and active
/// result flags in the low byte (libevent's values), plus state bits.
enum Published {
    static let flagMask: UInt32 = 0xFF
    /// Active result flags live in the second byte.
    static let activeShift: UInt32 = 8
    static let timeoutScheduled: UInt32 = 1 << 16
}

/// Layout of ``Event/intent`` under the rcu provider: requests from threads
/// other than the writer, taken by the writer in one atomic exchange.
enum Intent {
    /// Activation results requested (low byte, libevent's flag values).
    static let activationMask: UInt64 = 0xFF
    /// The event is in (or being pushed onto) the hand-off stack.
    static let dirty: UInt64 = 1 << 8
    /// Request field: none, add, delete or finalize (last one wins).
    static let requestShift: UInt64 = 9
    static let requestMask: UInt64 = 0x3 << 9
    static let add: UInt64 = 1 << 9
    static let delete: UInt64 = 2 << 9
    static let finalize: UInt64 = 3 << 9
    /// Remove the timeout (``Event/removeTimer()``); an add with a timeout
    /// made after it clears it.
    static let removeTimer: UInt64 = 1 << 11
    /// Delete generation: bumped by every delete, compared at dispatch.
    static let generationShift: UInt64 = 32

    @inline(__always)
    static func generation(_ word: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: word >> generationShift) }
}
