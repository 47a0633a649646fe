/// A timeout duration shared by many events, scheduled in O(1) each
/// (libevent's `event_base_init_common_timeout`). Get one from
/// ``EventBase/commonTimeout(_:)`` and pass it to ``Event/add(timeout:)-(CommonTimeout)``.
public struct CommonTimeout: Sendable, Hashable {
    /// The duration every event on this queue waits.
    public var duration: Duration { .nanoseconds(queue.duration) }
    let queue: CommonTimeoutQueue

    public static func == (lhs: CommonTimeout, rhs: CommonTimeout) -> Bool { lhs.queue === rhs.queue }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(queue)) }
}

/// The events waiting on one common timeout, in deadline order (which is
/// insertion order, since they share a duration). One internal event sits in
/// the timer heap at the earliest deadline.
///
/// Not an intrusive list (that would cost every event two links): a ring of
/// event pointers whose slot an event records in its `timerSlot` together
/// with the queue's id (libevent shares the same word between its heap index
/// and its common-timeout links). Adding appends; removing leaves a hole
/// that the head skips; a full ring is compacted or grown. Events whose
/// deadline would break the order (a persistent event rescheduled from its
/// last deadline, a clock read older than the tail's) go to the heap instead.
final class CommonTimeoutQueue: @unchecked Sendable {
    // `base`, `duration` and `id` are immutable; the rest is writer state of `base`.
    unowned let base: EventBase
    let duration: Int64
    /// The queue's number in `timerSlot` (nil past the 255th queue of a base:
    /// then its events go to the heap).
    let id: UInt32?
    /// The internal timer that sits in the heap at the head's deadline.
    @exclusivity(unchecked) var timer: Event!
    @exclusivity(unchecked) private var slots: UnsafeMutablePointer<Unmanaged<Event>?>
    @exclusivity(unchecked) private var capacity = 16
    /// First slot that may hold an event, and one past the last used.
    @exclusivity(unchecked) private var first = 0
    @exclusivity(unchecked) private var end = 0
    @exclusivity(unchecked) private(set) var count = 0
    /// The latest deadline appended (appending earlier would break the order).
    @exclusivity(unchecked) private var lastDeadline = Int64.min

    init(base: EventBase, duration: Int64, id: UInt32?) {
        self.base = base
        self.duration = duration
        self.id = id
        slots = .allocate(capacity: capacity)
    }

    deinit { slots.deallocate() }

    var isEmpty: Bool { count == 0 }

    /// The earliest event.
    var head: Unmanaged<Event>? { count == 0 ? nil : slots[first] }

    /// The head's slot position (meaningful when not empty).
    var firstPosition: Int { first }

    /// Appends `event` (its deadline set) and records its slot; false when it
    /// must go to the heap instead.
    func append(_ event: Event) -> Bool {
        guard let id, event.deadline >= lastDeadline else { return false }
        if end == capacity { makeRoom() }
        guard end <= TimerSlot.maximumPosition else { return false }
        slots[end] = Unmanaged.passUnretained(event)
        event.timerSlot = TimerSlot.ring(queue: id, position: end)
        end += 1
        count += 1
        lastDeadline = event.deadline
        return true
    }

    /// Empties `event`'s slot.
    func remove(_ event: Event) {
        let position = TimerSlot.position(event.timerSlot)
        slots[position] = nil
        event.timerSlot = TimerSlot.none
        count -= 1
        if count == 0 {
            first = 0
            end = 0
            lastDeadline = Int64.min
        } else if position == first {
            while slots[first] == nil { first += 1 }
        }
    }

    /// Moves the events to the front of the ring, growing it when more than
    /// half full, and renumbers their slots.
    private func makeRoom() {
        if count * 2 > capacity {
            let grown = UnsafeMutablePointer<Unmanaged<Event>?>.allocate(capacity: capacity * 2)
            var to = 0
            for from in first..<end {
                guard let node = slots[from] else { continue }
                grown[to] = node
                node._withUnsafeGuaranteedRef { $0.timerSlot = TimerSlot.ring(queue: id!, position: to) }
                to += 1
            }
            slots.deallocate()
            slots = grown
            capacity *= 2
            first = 0
            end = to
        } else {
            var to = 0
            for from in first..<end {
                guard let node = slots[from] else { continue }
                slots[to] = node
                node._withUnsafeGuaranteedRef { $0.timerSlot = TimerSlot.ring(queue: id!, position: to) }
                to += 1
            }
            first = 0
            end = to
        }
    }

    func forEach(_ body: (Event) -> Void) {
        for index in first..<end {
            if let node = slots[index] { node._withUnsafeGuaranteedRef(body) }
        }
    }
}

/// Where an event's timeout is kept (``Event/timerSlot``): nowhere, at an
/// index of the timer heap, or at a position of a common-timeout queue.
enum TimerSlot {
    static let none: UInt32 = .max
    static let ringFlag: UInt32 = 1 << 31
    static let positionBits: UInt32 = 23
    static let maximumPosition = Int((1 << 23) - 2)
    /// Queue ids 0...254 (255 with the largest position would be `none`).
    static let maximumQueues = 255

    @inline(__always)
    static func ring(queue: UInt32, position: Int) -> UInt32 {
        ringFlag | queue << positionBits | UInt32(truncatingIfNeeded: position)
    }

    @inline(__always)
    static func isInRing(_ slot: UInt32) -> Bool { slot & ringFlag != 0 && slot != none }

    @inline(__always)
    static func queue(_ slot: UInt32) -> Int { Int((slot & ~ringFlag) >> positionBits) }

    @inline(__always)
    static func position(_ slot: UInt32) -> Int { Int(slot & ((1 << positionBits) - 1)) }
}
