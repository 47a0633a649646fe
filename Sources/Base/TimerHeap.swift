/// A binary min-heap of events ordered by deadline (libevent's `min_heap`).
/// Each event records its index, so removal and rescheduling are O(log n).
/// Writer-only, like the events it holds. Storage is a manually grown buffer,
/// so heap operations carry no copy-on-write or exclusivity checks.
final class TimerHeap {
    @exclusivity(unchecked) private var storage: UnsafeMutablePointer<Unmanaged<Event>>
    @exclusivity(unchecked) private var capacity = 16
    @exclusivity(unchecked) private(set) var count = 0

    init() {
        storage = .allocate(capacity: capacity)
    }

    deinit {
        storage.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    /// The earliest event.
    var top: Unmanaged<Event>? { count > 0 ? storage[0] : nil }

    @inline(__always)
    private func deadline(_ index: Int) -> Int64 {
        storage[index]._withUnsafeGuaranteedRef { $0.deadline }
    }

    @inline(__always)
    private func place(_ node: Unmanaged<Event>, at index: Int) {
        storage[index] = node
        node._withUnsafeGuaranteedRef { $0.timerSlot = UInt32(truncatingIfNeeded: index) }
    }

    func insert(_ event: Event) {
        if count == capacity {
            let grown = UnsafeMutablePointer<Unmanaged<Event>>.allocate(capacity: capacity * 2)
            grown.moveInitialize(from: storage, count: count)
            storage.deallocate()
            storage = grown
            capacity *= 2
        }
        storage[count] = Unmanaged.passUnretained(event)
        event.timerSlot = UInt32(truncatingIfNeeded: count)
        count += 1
        siftUp(count - 1)
    }

    func remove(_ event: Event) {
        let slot = event.timerSlot
        guard slot & TimerSlot.ringFlag == 0 else { return }
        let index = Int(slot)
        event.timerSlot = TimerSlot.none
        count -= 1
        guard index < count else { return }
        place(storage[count], at: index)
        update(at: index)
    }

    /// Restores order after `event`'s deadline changed in place.
    func update(_ event: Event) {
        update(at: Int(event.timerSlot))
    }

    private func update(at index: Int) {
        if index > 0 && deadline(index) < deadline((index - 1) / 2) {
            siftUp(index)
        } else {
            siftDown(index)
        }
    }

    private func siftUp(_ start: Int) {
        var index = start
        let node = storage[index]
        let key = node._withUnsafeGuaranteedRef { $0.deadline }
        while index > 0 {
            let parent = (index - 1) / 2
            if deadline(parent) <= key { break }
            place(storage[parent], at: index)
            index = parent
        }
        place(node, at: index)
    }

    private func siftDown(_ start: Int) {
        var index = start
        let node = storage[index]
        let key = node._withUnsafeGuaranteedRef { $0.deadline }
        while true {
            var child = 2 * index + 1
            if child >= count { break }
            if child + 1 < count && deadline(child + 1) < deadline(child) { child += 1 }
            if key <= deadline(child) { break }
            place(storage[child], at: index)
            index = child
        }
        place(node, at: index)
    }

    /// Every event in the heap (for introspection and reinit).
    func forEach(_ body: (Event) -> Void) {
        for index in 0..<count { storage[index]._withUnsafeGuaranteedRef(body) }
    }
}
