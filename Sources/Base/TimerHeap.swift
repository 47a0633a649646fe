/// A binary min-heap of events ordered by deadline (libevent's `min_heap`).
/// Each event records its index, so removal and rescheduling are O(log n).
/// Writer-only, like the events it holds.
struct TimerHeap {
    private var storage: [Unmanaged<Event>] = []

    var isEmpty: Bool { storage.isEmpty }
    var count: Int { storage.count }

    /// The earliest event.
    var top: Unmanaged<Event>? { storage.first }

    @inline(__always)
    private func deadline(_ index: Int) -> Int64 {
        storage[index]._withUnsafeGuaranteedRef { $0.deadline }
    }

    @inline(__always)
    private mutating func place(_ node: Unmanaged<Event>, at index: Int) {
        storage[index] = node
        node._withUnsafeGuaranteedRef { $0.heapIndex = index }
    }

    mutating func insert(_ event: Event) {
        let node = Unmanaged.passUnretained(event)
        storage.append(node)
        event.heapIndex = storage.count - 1
        siftUp(storage.count - 1)
    }

    mutating func remove(_ event: Event) {
        let index = event.heapIndex
        guard index >= 0 else { return }
        event.heapIndex = -1
        let last = storage.removeLast()
        guard index < storage.count else { return }
        place(last, at: index)
        if index > 0 && deadline(index) < deadline((index - 1) / 2) {
            siftUp(index)
        } else {
            siftDown(index)
        }
    }

    /// Restores order after `event`'s deadline changed in place.
    mutating func update(_ event: Event) {
        let index = event.heapIndex
        if index > 0 && deadline(index) < deadline((index - 1) / 2) {
            siftUp(index)
        } else {
            siftDown(index)
        }
    }

    private mutating func siftUp(_ start: Int) {
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

    private mutating func siftDown(_ start: Int) {
        var index = start
        let node = storage[index]
        let key = node._withUnsafeGuaranteedRef { $0.deadline }
        let count = storage.count
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
        for node in storage { node._withUnsafeGuaranteedRef(body) }
    }
}
