import EventBackends
import Synchronization

/// Everything the base knows about one descriptor or signal number (libevent's
/// `evmap_io`/`evmap_signal` entry): the events watching it, as a list that
/// lock-free readers can walk, and what the backend was asked to watch.
final class FDSlot: @unchecked Sendable {
    // `head` is read by lock-free readers (rcu provider, inside read-side
    // sections) and written by the writer; every other field is writer-only.
    let fd: Int32
    let head = Atomic<Unmanaged<Event>?>(nil)
    var readers = 0
    var writers = 0
    var closers = 0
    var edgeTriggered = 0
    var count = 0
    /// What the backend watches for this descriptor now.
    var interest: IOEvents = []
    /// A descriptor of the base itself (wake-up or signal pipe), not of an event.
    var internalRole: InternalRole = .none

    enum InternalRole {
        case none
        case notifier
        case signals
    }

    init(fd: Int32) { self.fd = fd }

    /// What the events on this descriptor ask the backend for.
    var wantedInterest: IOEvents {
        var wanted: IOEvents = []
        if readers > 0 { wanted.insert(.read) }
        if writers > 0 { wanted.insert(.write) }
        if closers > 0 { wanted.insert(.closed) }
        return wanted
    }

    /// Links `event` at the head. Readers see either the old or the new head;
    /// the releasing store publishes the event's fields with it.
    func link(_ event: Event) {
        let node = Unmanaged.passUnretained(event)
        let first = head.load(ordering: .relaxed)
        event.ioNext.store(first, ordering: .relaxed)
        event.ioPrevious = nil
        first?._withUnsafeGuaranteedRef { $0.ioPrevious = node }
        head.store(node, ordering: .releasing)
        count += 1
    }

    /// Unlinks `event`. Its own `ioNext` is left intact, so a reader standing
    /// on it can still walk on; the caller keeps the event alive until such
    /// readers are gone.
    func unlink(_ event: Event) {
        let next = event.ioNext.load(ordering: .relaxed)
        if let previous = event.ioPrevious {
            previous._withUnsafeGuaranteedRef { $0.ioNext.store(next, ordering: .releasing) }
        } else {
            head.store(next, ordering: .releasing)
        }
        next?._withUnsafeGuaranteedRef { $0.ioPrevious = event.ioPrevious }
        event.ioPrevious = nil
        count -= 1
    }

    /// Calls `body` for each event, reading links with acquiring loads (safe
    /// for readers inside a read-side section, and for the writer).
    @inline(__always)
    func forEach(_ body: (Event) -> Void) {
        var node = head.load(ordering: .acquiring)
        while let current = node {
            node = current._withUnsafeGuaranteedRef { event in
                let next = event.ioNext.load(ordering: .acquiring)
                body(event)
                return next
            }
        }
    }
}

/// The descriptor-to-slot map. A table is immutable in size: the writer
/// fills empty entries in place (atomically) and, to grow, publishes a new
/// table and retires the old one after a grace period.
final class FDTable: @unchecked Sendable {
    // `entries` are atomics; `capacity` never changes. Slots are kept alive
    // by the base's `slots` array, not by the table.
    let capacity: Int
    private let entries: UnsafeMutablePointer<Atomic<Unmanaged<FDSlot>?>>

    init(capacity: Int, copying old: FDTable? = nil) {
        self.capacity = capacity
        entries = .allocate(capacity: capacity)
        for i in 0..<capacity {
            let value = old.flatMap { i < $0.capacity ? $0[i] : nil }
            (entries + i).initialize(to: Atomic(value))
        }
    }

    deinit {
        entries.deinitialize(count: capacity)
        entries.deallocate()
    }

    @inline(__always)
    subscript(fd: Int) -> Unmanaged<FDSlot>? {
        get { entries[fd].load(ordering: .acquiring) }
        set { entries[fd].store(newValue, ordering: .releasing) }
    }
}
