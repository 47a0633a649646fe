/// The events of one priority waiting for their callbacks, FIFO, linked
/// through the events themselves. Writer-only.
struct ActiveQueue {
    var head: Unmanaged<Event>?
    var tail: Unmanaged<Event>?

    var isEmpty: Bool { head == nil }

    mutating func append(_ event: Event) {
        let node = Unmanaged.passUnretained(event)
        event.activeNext = nil
        event.activePrevious = tail
        if let tail { tail._withUnsafeGuaranteedRef { $0.activeNext = node } } else { head = node }
        tail = node
    }

    mutating func remove(_ event: Event) {
        if let previous = event.activePrevious {
            previous._withUnsafeGuaranteedRef { $0.activeNext = event.activeNext }
        } else {
            head = event.activeNext
        }
        if let next = event.activeNext {
            next._withUnsafeGuaranteedRef { $0.activePrevious = event.activePrevious }
        } else {
            tail = event.activePrevious
        }
        event.activeNext = nil
        event.activePrevious = nil
    }

    func forEach(_ body: (Event) -> Void) {
        var node = head
        while let current = node {
            node = current._withUnsafeGuaranteedRef { event in
                let next = event.activeNext
                body(event)
                return next
            }
        }
    }
}
