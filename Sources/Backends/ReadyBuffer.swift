/// A growable array of ready descriptors that a backend reuses across waits,
/// so the steady state allocates nothing.
struct ReadyBuffer {
    private(set) var base: UnsafeMutablePointer<ReadyDescriptor>
    private(set) var capacity: Int
    var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        base = .allocate(capacity: self.capacity)
    }

    mutating func reserve(_ needed: Int) {
        guard needed > capacity else { return }
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        let grown = UnsafeMutablePointer<ReadyDescriptor>.allocate(capacity: newCapacity)
        grown.update(from: base, count: count)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }

    /// Appends assuming `reserve` made room.
    @inline(__always)
    mutating func append(fd: Int32, what: UInt32) {
        base[count] = ReadyDescriptor(fd: fd, what: what)
        count += 1
    }

    var buffer: UnsafeBufferPointer<ReadyDescriptor> { UnsafeBufferPointer(start: base, count: count) }

    func free() { base.deallocate() }
}

/// Milliseconds for a poll-style timeout, rounded up so a timer never fires
/// early (libevent's `evutil_tv_to_msec_`); negative means no limit.
@inline(__always)
func milliseconds(roundingUp nanoseconds: Int64) -> Int32 {
    if nanoseconds < 0 { return -1 }
    let ms = (nanoseconds + 999_999) / 1_000_000
    return ms > Int64(Int32.max) ? Int32.max : Int32(ms)
}
