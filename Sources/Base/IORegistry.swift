import EventBackends

/// What the events on one descriptor ask the backend for (writer-only).
/// Ten bytes per descriptor: counts are 16-bit, as libevent's are.
struct IOCounts {
    var readers: UInt16 = 0
    var writers: UInt16 = 0
    var closers: UInt16 = 0
    var edgeTriggered: UInt16 = 0
    /// What the backend watches for this descriptor now (its low byte:
    /// read, write, closed).
    private var interestBits: UInt8 = 0
    var interest: IOEvents {
        get { IOEvents(rawValue: UInt32(interestBits)) }
        set { interestBits = UInt8(truncatingIfNeeded: newValue.rawValue) }
    }

    /// Whether any event is registered (every I/O event reads, writes or
    /// waits for close).
    var hasEvents: Bool { readers | writers | closers != 0 }

    var wanted: IOEvents {
        var wanted: IOEvents = []
        if readers > 0 { wanted.insert(.read) }
        if writers > 0 { wanted.insert(.write) }
        if closers > 0 { wanted.insert(.closed) }
        return wanted
    }
}

/// Per-descriptor counts, in a buffer grown by doubling (writer-only: no
/// atomics, no copy-on-write or exclusivity checks).
final class IORegistry {
    @exclusivity(unchecked) private(set) var capacity = 64
    @exclusivity(unchecked) private var storage: UnsafeMutablePointer<IOCounts>

    init() {
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: IOCounts(), count: capacity)
    }

    deinit {
        storage.deallocate()
    }

    /// The counts of `fd`, growing the buffer as needed.
    @inline(__always)
    func counts(_ fd: Int32) -> UnsafeMutablePointer<IOCounts> {
        let index = Int(fd)
        if index >= capacity { grow(to: index + 1) }
        return storage + index
    }

    private func grow(to needed: Int) {
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        let grown = UnsafeMutablePointer<IOCounts>.allocate(capacity: newCapacity)
        grown.moveInitialize(from: storage, count: capacity)
        (grown + capacity).initialize(repeating: IOCounts(), count: newCapacity - capacity)
        storage.deallocate()
        storage = grown
        capacity = newCapacity
    }

    /// Descriptors with events on them.
    func watchedDescriptors() -> [Int32] {
        (0..<capacity).filter { storage[$0].hasEvents }.map { Int32($0) }
    }

    /// Forgets what the backend watches (after fork, before registering again).
    func clearInterest() {
        for index in 0..<capacity { storage[index].interest = [] }
    }
}
