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

    // Layout: 104 bytes of fields after the 16-byte object header, so an
    // event is one 128-byte malloc chunk (libevent's is 144). Hot fields
    // first; what few events use (persistent intervals, common timeouts,
    // finalizers, signal counts, the rcu provider's request words) lives in
    // `cold`, made on first use by the writer (at creation under rcu).

    /// What it waits for.
    public let flags: Flags
    /// The descriptor, the signal number for signal events, or -1.
    public let fd: Int32
    /// Next event on the same descriptor or signal. Read by lock-free readers
    /// under the rcu provider inside read-side sections; written by the writer.
    let ioNext = Atomic<Unmanaged<Event>?>(nil)
    // Intrusive links (writer), unretained: the base's +1 keeps linked events alive.
    @exclusivity(unchecked) var activeNext: Unmanaged<Event>?
    @exclusivity(unchecked) var activePrevious: Unmanaged<Event>?
    /// Absolute deadline (monotonic nanoseconds) when `hasTimeout` (writer).
    @exclusivity(unchecked) var deadline: Int64 = 0
    /// Hand-off stack link, written by the one thread that pushes the event
    /// (the `dirty` bit of `intent` makes it one) before its releasing push.
    @exclusivity(unchecked) var handoffNext: Unmanaged<Event>?
    let callback: Callback
    /// The base the event belongs to.
    public let base: EventBase
    /// Rarely used state (writer; immutable reference once made under rcu).
    @exclusivity(unchecked) var cold: EventColdState?
    /// Where the timeout is kept (``TimerSlot``): a timer-heap index or a
    /// common-timeout queue's slot (writer).
    @exclusivity(unchecked) var timerSlot: UInt32 = TimerSlot.none
    /// The flags it is active with (writer).
    @exclusivity(unchecked) var result: Flags = []
    /// Requests from other threads to the writer (``Intent``): under rcu
    /// every request, under mutex/debug handed-over activations.
    let intent = Atomic<UInt64>(0)
    /// What other threads can see without a lock under rcu: inserted I/O
    /// flags, the timeout bit and active result bits (``Published``).
    let published = Atomic<UInt32>(0)
    /// Writer state bits (``StateBit``), and the immutable kind bits.
    @exclusivity(unchecked) var state: UInt16
    /// Priority; lower runs first (writer).
    @exclusivity(unchecked) var priorityRaw: UInt8
    /// Lifecycle: normal, finalizing, finalized.
    let lifecycle = Atomic<UInt8>(Lifecycle.normal)

    // MARK: state bits (writer)

    @inline(__always)
    private func bit(_ mask: UInt16) -> Bool { state & mask != 0 }

    @inline(__always)
    private func set(_ mask: UInt16, _ on: Bool) {
        if on { state |= mask } else { state &= ~mask }
    }

    /// In an active queue (EVLIST_ACTIVE).
    var isActive: Bool {
        @inline(__always) get { bit(StateBit.active) }
        @inline(__always) set { set(StateBit.active, newValue) }
    }
    /// Linked into its descriptor's or signal's list (libevent's EVLIST_INSERTED).
    var isInserted: Bool {
        @inline(__always) get { bit(StateBit.inserted) }
        @inline(__always) set { set(StateBit.inserted, newValue) }
    }
    /// Has a scheduled timeout (EVLIST_TIMEOUT).
    var hasTimeout: Bool {
        @inline(__always) get { bit(StateBit.timeout) }
        @inline(__always) set { set(StateBit.timeout, newValue) }
    }
    /// The base holds a +1 reference while the event is inserted, timed or active.
    var retainedByBase: Bool {
        @inline(__always) get { bit(StateBit.retained) }
        @inline(__always) set { set(StateBit.retained, newValue) }
    }
    /// Counted in the base's user-event count (inserted or timed, not internal).
    var countedAsUserEvent: Bool {
        @inline(__always) get { bit(StateBit.counted) }
        @inline(__always) set { set(StateBit.counted, newValue) }
    }
    /// The loop is running this event's callback on the base's reference;
    /// a release of that reference waits until the callback returns.
    var pinnedByDispatch: Bool {
        @inline(__always) get { bit(StateBit.pinned) }
        @inline(__always) set { set(StateBit.pinned, newValue) }
    }
    var releaseWhenUnpinned: Bool {
        @inline(__always) get { bit(StateBit.releaseWhenUnpinned) }
        @inline(__always) set { set(StateBit.releaseWhenUnpinned, newValue) }
    }
    /// rcu: unlinked from a list lock-free readers walk since its last
    /// retirement, so a reader may still hold it: its release must wait for
    /// a grace period. An event that was only active or timed never was.
    var readersMayHold: Bool {
        @inline(__always) get { bit(StateBit.readersMayHold) }
        @inline(__always) set { set(StateBit.readersMayHold, newValue) }
    }
    /// The finalizer has been queued to run (it runs once).
    var finalizeQueued: Bool {
        @inline(__always) get { bit(StateBit.finalizeQueued) }
        @inline(__always) set { set(StateBit.finalizeQueued, newValue) }
    }
    /// Internal events (common-timeout queue timers, the loop-exit timer) are
    /// left out of introspection.
    var isInternal: Bool { bit(StateBit.internal) }
    /// Whether, while added, it keeps the loop from exiting for lack of
    /// events: every user event does, and the loop-exit timer (as libevent's
    /// `event_base_loopexit` event does); queue timers do not.
    var keepsLoopAlive: Bool { bit(StateBit.keepsLoopAlive) }

    var priorityValue: Int {
        @inline(__always) get { Int(priorityRaw) }
        set { priorityRaw = UInt8(newValue) }
    }

    // MARK: cold state, forwarded (writer unless noted)

    /// The cold state, made now if needed (writer).
    @inline(never)
    func makeCold() -> EventColdState {
        if let cold { return cold }
        let made = EventColdState()
        cold = made
        return made
    }

    /// The cold state under rcu, where it is made at creation.
    var rcuState: EventColdState {
        @inline(__always) get { cold.unsafelyUnwrapped }
    }

    /// The relative timeout of a persistent event, rescheduled after each
    /// run; -1 when none.
    var interval: Int64 {
        @inline(__always) get { cold?.interval ?? -1 }
        set {
            if let cold { cold.interval = newValue } else if newValue != -1 { makeCold().interval = newValue }
        }
    }
    /// Pending signal deliveries to run the callback for (signal events
    /// have cold state from creation).
    var signalCalls: Int {
        get { cold?.signalCalls ?? 0 }
        set { if let cold { cold.signalCalls = newValue } }
    }
    /// The queue a persistent event's timeout is rescheduled on, if common.
    var intervalQueue: CommonTimeoutQueue? {
        get { cold?.intervalQueue }
        set {
            if let cold { cold.intervalQueue = newValue } else if newValue != nil { makeCold().intervalQueue = newValue }
        }
    }
    /// Set on a common queue's internal timer: the queue it expires.
    var expiresQueue: CommonTimeoutQueue? {
        get { cold?.expiresQueue }
        set {
            if let cold { cold.expiresQueue = newValue } else if newValue != nil { makeCold().expiresQueue = newValue }
        }
    }
    /// Stored by the thread whose finalize won (under the lock, as the owner,
    /// or under rcu in the cold state made at creation).
    var finalizer: (@Sendable (Event) -> Void)? {
        get { cold?.finalizer }
        set {
            if let cold { cold.finalizer = newValue } else if newValue != nil { makeCold().finalizer = newValue }
        }
    }

    /// Creates an event on `base` for a descriptor (`fd` ≥ 0 with read,
    /// write or closed), a signal (`.signal` in `flags`, `fd` is the signal
    /// number) or a timer (`fd` -1, no I/O flags). libevent's `event_new`.
    public init(
        base: EventBase, fd: Int32, flags: Flags, priority: Int? = nil,
        callback: @escaping Callback
    ) throws(EventError) {
        try Self.validate(fd: fd, flags: flags, base: base)
        // Everything that can throw comes before the first stored property.
        let count = base.priorityCount
        let chosen = priority ?? count / 2
        guard (0..<count).contains(chosen) else { throw .invalidPriority(chosen, count: count) }
        self.base = base
        self.fd = fd
        self.flags = flags
        self.callback = callback
        self.state = StateBit.keepsLoopAlive
        self.priorityRaw = UInt8(chosen)
        if base.discipline == .readCopyUpdate || flags.contains(.signal) { cold = EventColdState() }
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
        self.state = StateBit.internal | (keepsLoopAlive ? StateBit.keepsLoopAlive : 0)
        self.priorityRaw = UInt8(priority)
        if base.discipline == .readCopyUpdate { cold = EventColdState() }
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

/// What few events use, kept out of ``Event`` to keep it small.
final class EventColdState: @unchecked Sendable {
    // Plain fields: the event's writer (see Event). Atomics: rcu requests
    // from other threads.
    var interval: Int64 = -1
    var signalCalls = 0
    var intervalQueue: CommonTimeoutQueue?
    var expiresQueue: CommonTimeoutQueue?
    var finalizer: (@Sendable (Event) -> Void)?
    /// rcu: the delete generation an activation belongs to, and the one the
    /// writer has applied.
    var activationGeneration: UInt32 = 0
    var appliedGeneration: UInt32 = 0
    /// rcu: the deadline when the published timeout bit is set.
    let publishedDeadline = Atomic<Int64>(0)
    /// rcu: the relative timeout an add request asked for (-1: none), and
    /// the common timeout queue it asked for (nil: none).
    let requestedTimeout = Atomic<Int64>(-1)
    let requestedCommonQueue = Atomic<Unmanaged<CommonTimeoutQueue>?>(nil)
}

/// Bits of ``Event/state``.
enum StateBit {
    static let active: UInt16 = 1 << 0
    static let inserted: UInt16 = 1 << 1
    static let timeout: UInt16 = 1 << 2
    static let retained: UInt16 = 1 << 3
    static let counted: UInt16 = 1 << 4
    static let pinned: UInt16 = 1 << 5
    static let releaseWhenUnpinned: UInt16 = 1 << 6
    static let readersMayHold: UInt16 = 1 << 7
    static let finalizeQueued: UInt16 = 1 << 8
    static let `internal`: UInt16 = 1 << 9
    static let keepsLoopAlive: UInt16 = 1 << 10
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
