/// One contiguous run of a buffer's bytes: `length` bytes of `storage`
/// starting at `offset`.
struct Segment {
    var storage: SegmentStorage
    var offset: Int
    var length: Int
}

/// The segments of a buffer in order: an array whose live part starts at
/// `head`, so taking from the front is O(1) (amortized, with occasional
/// compaction) and appending is O(1).
struct SegmentList {
    // Slots before `head` are nil: a removed segment does not keep its
    // storage alive (a reference's cleanup and a file's close run on time).
    private var items: [Segment?] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }

    subscript(index: Int) -> Segment {
        @inline(__always) get { items[head + index].unsafelyUnwrapped }
        @inline(__always) _modify { yield &items[head + index]! }
    }

    var last: Segment? { isEmpty ? nil : items[items.count - 1] }

    mutating func append(_ segment: Segment) {
        items.append(segment)
    }

    mutating func prepend(_ segment: Segment) {
        if head > 0 {
            head -= 1
            items[head] = segment
        } else {
            items.insert(segment, at: 0)
        }
    }

    /// Removes and returns the first segment.
    @discardableResult
    mutating func removeFirst() -> Segment {
        let first = items[head].unsafelyUnwrapped
        items[head] = nil
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 32 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return first
    }

    mutating func removeLast() -> Segment {
        let last = items.removeLast().unsafelyUnwrapped
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        return last
    }

    mutating func removeAll() {
        items.removeAll(keepingCapacity: true)
        head = 0
    }

    /// Whether the last segment's storage is heap memory referenced only by
    /// that segment (so bytes may be appended after its data).
    mutating func lastIsExclusiveHeap() -> Bool {
        guard !isEmpty else { return false }
        let index = items.count - 1
        guard items[index].unsafelyUnwrapped.storage.isHeap else { return false }
        return isKnownUniquelyReferenced(&items[index]!.storage)
    }

    func forEach(_ body: (Segment) throws -> Void) rethrows {
        for index in head..<items.count { try body(items[index].unsafelyUnwrapped) }
    }
}
