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
final class CommonTimeoutQueue: @unchecked Sendable {
    // `base` and `duration` are immutable; the rest is writer state of `base`.
    unowned let base: EventBase
    let duration: Int64
    var head: Unmanaged<Event>?
    var tail: Unmanaged<Event>?
    /// The internal timer that sits in the heap at the head's deadline.
    var timer: Event!

    init(base: EventBase, duration: Int64) {
        self.base = base
        self.duration = duration
    }

    var isEmpty: Bool { head == nil }

    func append(_ event: Event) {
        let node = Unmanaged.passUnretained(event)
        event.commonNext = nil
        event.commonPrevious = tail
        if let tail { tail._withUnsafeGuaranteedRef { $0.commonNext = node } } else { head = node }
        tail = node
        event.commonQueue = self
    }

    /// Inserts `event` by deadline, walking from the tail (where a
    /// rescheduled persistent event nearly always belongs; libevent's
    /// `insert_common_timeout_inorder`).
    func insertInOrder(_ event: Event) {
        var after = tail
        while let candidate = after, candidate._withUnsafeGuaranteedRef({ $0.deadline > event.deadline }) {
            after = candidate._withUnsafeGuaranteedRef { $0.commonPrevious }
        }
        guard let after else {
            let node = Unmanaged.passUnretained(event)
            event.commonPrevious = nil
            event.commonNext = head
            if let head { head._withUnsafeGuaranteedRef { $0.commonPrevious = node } } else { tail = node }
            head = node
            event.commonQueue = self
            return
        }
        let node = Unmanaged.passUnretained(event)
        let next = after._withUnsafeGuaranteedRef { $0.commonNext }
        event.commonPrevious = after
        event.commonNext = next
        after._withUnsafeGuaranteedRef { $0.commonNext = node }
        if let next { next._withUnsafeGuaranteedRef { $0.commonPrevious = node } } else { tail = node }
        event.commonQueue = self
    }

    func remove(_ event: Event) {
        if let previous = event.commonPrevious {
            previous._withUnsafeGuaranteedRef { $0.commonNext = event.commonNext }
        } else {
            head = event.commonNext
        }
        if let next = event.commonNext {
            next._withUnsafeGuaranteedRef { $0.commonPrevious = event.commonPrevious }
        } else {
            tail = event.commonPrevious
        }
        event.commonNext = nil
        event.commonPrevious = nil
        event.commonQueue = nil
    }

    func forEach(_ body: (Event) -> Void) {
        var node = head
        while let current = node {
            node = current._withUnsafeGuaranteedRef { event in
                let next = event.commonNext
                body(event)
                return next
            }
        }
    }
}
