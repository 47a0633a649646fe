import Synchronization

/// Heads of the intrusive event lists, one per descriptor (or per signal
/// number), as an array of atomic pointers (libevent's `evmap`). Lock-free
/// readers walk a list inside a read-side section while the writer links and
/// unlinks: every link is a releasing store, every read an acquiring load,
/// and an unlinked event keeps its own `ioNext`, so a reader standing on it
/// walks on. A table never changes size: to grow, the writer publishes a
/// copy and retires the old one after a grace period.
final class EventListTable: @unchecked Sendable {
    // `entries` are atomics; `capacity` never changes. The events are kept
    // alive by the base's reference to every linked event.
    let capacity: Int
    private let entries: UnsafeMutablePointer<Atomic<Unmanaged<Event>?>>

    init(capacity: Int, copying old: EventListTable? = nil) {
        self.capacity = capacity
        entries = .allocate(capacity: capacity)
        for i in 0..<capacity {
            let head = old.flatMap { i < $0.capacity ? $0.head(at: i) : nil }
            (entries + i).initialize(to: Atomic(head))
        }
    }

    deinit {
        entries.deinitialize(count: capacity)
        entries.deallocate()
    }

    /// The first event on `index`, nil when none (or out of range).
    @inline(__always)
    func head(at index: Int) -> Unmanaged<Event>? {
        index < capacity ? entries[index].load(ordering: .acquiring) : nil
    }

    /// Links `event` at the head of `index`'s list (writer).
    func link(_ event: Event, at index: Int) {
        let node = Unmanaged.passUnretained(event)
        let first = entries[index].load(ordering: .relaxed)
        event.ioNext.store(first, ordering: .relaxed)
        entries[index].store(node, ordering: .releasing)
    }

    /// Unlinks `event` from `index`'s list (writer). The lists are singly
    /// linked, to keep events small: this walks from the head, which is
    /// short for nearly every descriptor (libev's lists are the same).
    func unlink(_ event: Event, at index: Int) {
        let target = Unmanaged.passUnretained(event).toOpaque()
        let next = event.ioNext.load(ordering: .relaxed)
        guard let first = entries[index].load(ordering: .relaxed) else { return }
        if first.toOpaque() == target {
            entries[index].store(next, ordering: .releasing)
            return
        }
        var previous = first
        while let candidate = previous._withUnsafeGuaranteedRef({ $0.ioNext.load(ordering: .relaxed) }) {
            if candidate.toOpaque() == target {
                previous._withUnsafeGuaranteedRef { $0.ioNext.store(next, ordering: .releasing) }
                return
            }
            previous = candidate
        }
    }

    /// Calls `body` for each event on `index` (writer, or a reader inside a
    /// read-side section).
    @inline(__always)
    func forEach(at index: Int, _ body: (Event) -> Void) {
        var node = head(at: index)
        while let current = node {
            node = current._withUnsafeGuaranteedRef { event in
                let next = event.ioNext.load(ordering: .acquiring)
                body(event)
                return next
            }
        }
    }
}
