import EventBackends
import EventCore
import EventLocking
import Glibc

/// A byte queue made of segments (libevent's `evbuffer`): bytes go in at the
/// end and come out at the front without being moved; whole segments move
/// between buffers without copying; memory the caller owns, other buffers'
/// segments and file ranges can be added by reference.
///
/// Not thread-safe unless ``enableLocking(_:)`` gave it a lock (bufferevents
/// of a shared base do); then every method takes the lock, and
/// ``withLock(_:)`` groups several calls.
public final class EventBuffer: @unchecked Sendable {
    // Confinement: with a lock, every stored property is guarded by it;
    // without one, the buffer belongs to a single thread at a time.

    var segments = SegmentList()
    /// Bytes in the buffer.
    var total = 0
    var lock: (any EventLock)?
    var frozenStart = false
    var frozenEnd = false
    var callbacks: [CallbackEntry] = []
    var nextCallbackID = 0
    var callbacksSuspended = 0
    var pendingChange = Change()
    /// Called synchronously, with the lock held, after every change: how a
    /// bufferevent learns that bytes were added to its output or taken from
    /// its input.
    var observer: ((Change) -> Void)?
    /// One heap storage kept for reuse after it drained.
    var spare: SegmentStorage?
    /// The outstanding reservation: free bytes used at the end of the last
    /// segment, and whether a new segment was appended after it. Any change
    /// to the buffer cancels it.
    var reservation: (tailRoom: Int, appended: Bool)?
    /// The event that runs deferred callbacks on a base's loop.
    var deferral: Event?
    /// The last descriptor found not to be a socket (writes use writev there).
    var notSocketFD: Int32 = -1

    /// Segments grow to at least this; a buffer reuses its last drained one.
    static let segmentSize = 4096
    static let largeSegment = 64 * 1024

    public init() {}

    /// Bytes in the buffer (libevent's `evbuffer_get_length`).
    public var count: Int { withLock { total } }

    public var isEmpty: Bool { count == 0 }

    /// Bytes readable in place from the front (`evbuffer_get_contiguous_space`).
    public var contiguousCount: Int { withLock { segments.isEmpty ? 0 : segments[0].length } }

    // MARK: locking

    /// Makes the buffer safe to use from several threads, guarded by `lock`
    /// (libevent's `evbuffer_enable_locking`); a recursive lock lets
    /// ``withLock(_:)`` wrap other calls.
    public func enableLocking(_ lock: any EventLock) {
        self.lock = lock
    }

    /// Runs `body` with the buffer's lock held, if it has one
    /// (libevent's `evbuffer_lock`/`evbuffer_unlock`).
    @inline(__always)
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        guard let lock else { return try body() }
        lock.lock(at: CallSite())
        defer { lock.unlock(at: CallSite()) }
        return try body()
    }

    // MARK: freezing

    /// Freezes the start (no draining) or the end (no adding) of the buffer
    /// (libevent's `evbuffer_freeze`).
    public func freeze(end: Bool) {
        withLock { if end { frozenEnd = true } else { frozenStart = true } }
    }

    public func unfreeze(end: Bool) {
        withLock { if end { frozenEnd = false } else { frozenStart = false } }
    }

    func checkEnd(_ call: String) throws(BufferError) {
        if frozenEnd { throw .frozen(end: true, call: call) }
    }

    func checkStart(_ call: String) throws(BufferError) {
        if frozenStart { throw .frozen(end: false, call: call) }
    }

    // MARK: adding

    /// Appends a copy of `bytes` (libevent's `evbuffer_add`).
    public func add(_ bytes: UnsafeRawBufferPointer) throws(BufferError) {
        try withLock { () throws(BufferError) in
            try checkEnd("EventBuffer.add")
            appendCopy(bytes)
            changed(added: bytes.count)
        }
    }

    /// Appends a copy of `bytes`.
    public func add(_ bytes: some Collection<UInt8>) throws(BufferError) {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(BufferError) in try add(UnsafeRawBufferPointer(buffer)) }
        }
        if let result { return try result.get() }
        try add(Array(bytes))
    }

    /// Appends the UTF-8 bytes of `text`.
    public func add(_ text: String) throws(BufferError) {
        var text = text
        try text.withUTF8 { utf8 in
            Result { () throws(BufferError) in try add(UnsafeRawBufferPointer(utf8)) }
        }.get()
    }

    /// Copies `bytes` after the last segment, filling its free tail first.
    func appendCopy(_ bytes: UnsafeRawBufferPointer) {
        guard var source = bytes.baseAddress, bytes.count > 0 else { return }
        var remaining = bytes.count
        if segments.lastIsExclusiveHeap() {
            let last = segments[segments.count - 1]
            let room = last.storage.capacity - last.offset - last.length
            if room > 0 {
                let n = min(room, remaining)
                (last.storage.heapBytes + last.offset + last.length).copyMemory(from: source, byteCount: n)
                segments[segments.count - 1].length += n
                source += n
                remaining -= n
            }
        }
        if remaining > 0 {
            let storage = newStorage(atLeast: remaining)
            storage.heapBytes.copyMemory(from: source, byteCount: remaining)
            segments.append(Segment(storage: storage, offset: 0, length: remaining))
        }
        total += bytes.count
    }

    /// Heap storage for at least `count` bytes: the spare one if it fits.
    func newStorage(atLeast count: Int) -> SegmentStorage {
        if let spare, spare.capacity >= count {
            self.spare = nil
            return spare
        }
        var capacity = Self.segmentSize
        while capacity < count && capacity < Self.largeSegment { capacity *= 2 }
        if capacity < count {
            let (rounded, overflow) = count.addingReportingOverflow(Self.segmentSize - 1)
            capacity = overflow ? count : rounded / Self.segmentSize * Self.segmentSize
        }
        return SegmentStorage(capacity: capacity)
    }

    /// Removes empty segments at the end (left by `expand` or an unused
    /// reservation) before segments that are not written into are appended,
    /// as libevent's `evbuffer_chain_insert` does.
    func dropEmptyTail() {
        while let last = segments.last, last.length == 0 {
            var empty = segments.removeLast()
            recycle(&empty)
        }
    }

    /// Keeps a drained heap storage for reuse if nothing else refers to it.
    func recycle(_ segment: inout Segment) {
        guard spare == nil, segment.storage.isHeap, segment.storage.capacity <= Self.largeSegment,
            isKnownUniquelyReferenced(&segment.storage)
        else { return }
        spare = segment.storage
    }

    /// Prepends a copy of `bytes` (libevent's `evbuffer_prepend`).
    public func prepend(_ bytes: UnsafeRawBufferPointer) throws(BufferError) {
        try withLock { () throws(BufferError) in
            try checkStart("EventBuffer.prepend")
            guard let source = bytes.baseAddress, bytes.count > 0 else { return }
            let storage = newStorage(atLeast: bytes.count)
            // Place the bytes at the storage's end, leaving room for more prepends.
            let offset = storage.capacity - bytes.count
            (storage.heapBytes + offset).copyMemory(from: source, byteCount: bytes.count)
            segments.prepend(Segment(storage: storage, offset: offset, length: bytes.count))
            total += bytes.count
            changed(added: bytes.count)
        }
    }

    public func prepend(_ bytes: some Collection<UInt8>) throws(BufferError) {
        let array = Array(bytes)
        try array.withUnsafeBytes { raw in Result { () throws(BufferError) in try prepend(raw) } }.get()
    }

    /// Appends `count` bytes at `memory` without copying them
    /// (libevent's `evbuffer_add_reference`). `cleanup` runs exactly once,
    /// when no buffer refers to the memory any more; until then the memory
    /// must stay valid and unchanged.
    public func add(
        reference memory: UnsafeRawPointer, count: Int, cleanup: (@Sendable () -> Void)? = nil
    ) throws(BufferError) {
        try withLock { () throws(BufferError) in
            // Checked before the storage exists: a refused add does not run the cleanup.
            try checkEnd("EventBuffer.add(reference:)")
            let storage = SegmentStorage(referencing: memory, count: max(count, 0), cleanup: cleanup)
            guard count > 0 else { return }
            dropEmptyTail()
            segments.append(Segment(storage: storage, offset: 0, length: count))
            total += count
            changed(added: count)
        }
    }

    /// Appends `length` bytes of a file segment from `offset` within it
    /// (libevent's `evbuffer_add_file_segment`): sent with sendfile when the
    /// buffer is written to a socket, mapped when its bytes are read.
    public func add(file segment: FileSegment, offset: Int = 0, length: Int? = nil) throws(BufferError) {
        let length = length ?? (segment.length - offset)
        guard offset >= 0, length >= 0, offset + length <= segment.length else {
            throw .outOfRange(position: offset + max(length, 0), length: segment.length)
        }
        let storage = SegmentStorage(file: segment)
        try withLock { () throws(BufferError) in
            try checkEnd("EventBuffer.add(file:)")
            guard length > 0 else { return }
            dropEmptyTail()
            segments.append(Segment(storage: storage, offset: offset, length: length))
            total += length
            changed(added: length)
        }
    }

    /// Appends `length` bytes of `fd` from `offset`, closing `fd` once the
    /// bytes are gone (libevent's `evbuffer_add_file`).
    public func add(fileDescriptor fd: Int32, offset: Int64 = 0, length: Int? = nil) throws(BufferError) {
        let segment: FileSegment
        do throws(SystemCallError) {
            segment = try FileSegment(fd: fd, offset: offset, length: length, closeOnFree: true)
        } catch {
            throw .system(error)
        }
        try add(file: segment)
    }

    /// Moves every byte of `other` to the end of this buffer, whole segments,
    /// no copy (libevent's `evbuffer_add_buffer`).
    public func add(buffer other: EventBuffer) throws(BufferError) {
        guard other !== self else { throw .sameBuffer(call: "EventBuffer.add(buffer:)") }
        try Self.withBothLocked(self, other) { () throws(BufferError) in
            try checkEnd("EventBuffer.add(buffer:)")
            try other.checkStart("EventBuffer.add(buffer:)")
            let moved = other.total
            guard moved > 0 else { return }
            dropEmptyTail()
            other.segments.forEach { if $0.length > 0 { segments.append($0) } }
            other.segments.removeAll()
            other.reservation = nil
            other.total = 0
            total += moved
            other.changed(removed: moved)
            changed(added: moved)
        }
    }

    /// Moves every byte of `other` to the front of this buffer
    /// (libevent's `evbuffer_prepend_buffer`).
    public func prepend(buffer other: EventBuffer) throws(BufferError) {
        guard other !== self else { throw .sameBuffer(call: "EventBuffer.prepend(buffer:)") }
        try Self.withBothLocked(self, other) { () throws(BufferError) in
            try checkStart("EventBuffer.prepend(buffer:)")
            try other.checkStart("EventBuffer.prepend(buffer:)")
            let moved = other.total
            guard moved > 0 else { return }
            for index in stride(from: other.segments.count - 1, through: 0, by: -1) where other.segments[index].length > 0 {
                segments.prepend(other.segments[index])
            }
            other.segments.removeAll()
            other.reservation = nil
            other.total = 0
            total += moved
            other.changed(removed: moved)
            changed(added: moved)
        }
    }

    /// Appends `other`'s bytes by reference: both buffers share the segments,
    /// which become read-only; `other` is unchanged
    /// (libevent's `evbuffer_add_buffer_reference`).
    public func add(bufferReference other: EventBuffer) throws(BufferError) {
        guard other !== self else { throw .sameBuffer(call: "EventBuffer.add(bufferReference:)") }
        try Self.withBothLocked(self, other) { () throws(BufferError) in
            try checkEnd("EventBuffer.add(bufferReference:)")
            let shared = other.total
            guard shared > 0 else { return }
            dropEmptyTail()
            other.segments.forEach { if $0.length > 0 { segments.append($0) } }
            total += shared
            changed(added: shared)
        }
    }

    /// Takes both buffers' locks in a fixed order (by address), so two
    /// threads moving bytes between the same two buffers cannot deadlock.
    static func withBothLocked<T, E: Error>(
        _ a: EventBuffer, _ b: EventBuffer, _ body: () throws(E) -> T
    ) throws(E) -> T {
        let (first, second) = ObjectIdentifier(a) < ObjectIdentifier(b) ? (a, b) : (b, a)
        return try first.withLock { () throws(E) in try second.withLock(body) }
    }

    // MARK: removing

    /// Removes up to `destination.count` bytes from the front into
    /// `destination`; returns how many (libevent's `evbuffer_remove`).
    @discardableResult
    public func remove(into destination: UnsafeMutableRawBufferPointer) throws(BufferError) -> Int {
        try withLock { () throws(BufferError) in
            try checkStart("EventBuffer.remove")
            let n = try copyFront(into: destination, from: 0)
            dropFront(n)
            changed(removed: n)
            return n
        }
    }

    /// Removes and returns up to `maxCount` bytes from the front.
    public func remove(upTo maxCount: Int) throws(BufferError) -> [UInt8] {
        try withLock { () throws(BufferError) in
            try checkStart("EventBuffer.remove")
            let n = min(max(maxCount, 0), total)
            let bytes = try copyToArray(count: n, from: 0)
            dropFront(n)
            changed(removed: n)
            return bytes
        }
    }

    /// Copies up to `destination.count` bytes starting `position` bytes in,
    /// without removing them (libevent's `evbuffer_copyout_from`).
    @discardableResult
    public func copyOut(into destination: UnsafeMutableRawBufferPointer, from position: Int = 0) throws(BufferError) -> Int {
        try withLock { () throws(BufferError) in
            guard position >= 0, position <= total else { throw .outOfRange(position: position, length: total) }
            return try copyFront(into: destination, from: position)
        }
    }

    /// A copy of up to `count` bytes starting `position` bytes in.
    public func copyOut(count: Int, from position: Int = 0) throws(BufferError) -> [UInt8] {
        try withLock { () throws(BufferError) in
            guard position >= 0, position <= total else { throw .outOfRange(position: position, length: total) }
            return try copyToArray(count: min(max(count, 0), total - position), from: position)
        }
    }

    /// `count` bytes from `position` as an array; the lock is held.
    func copyToArray(count: Int, from position: Int) throws(BufferError) -> [UInt8] {
        var failure: BufferError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(BufferError) {
                initialized = try copyFront(into: UnsafeMutableRawBufferPointer(buffer), from: position)
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Every byte, as a string (UTF-8, invalid sequences repaired); for tests and small buffers.
    public func string() throws(BufferError) -> String {
        let bytes = try copyOut(count: count)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Copies bytes from `position` into `destination`; the lock is held.
    func copyFront(into destination: UnsafeMutableRawBufferPointer, from position: Int) throws(BufferError) -> Int {
        guard var target = destination.baseAddress else { return 0 }
        var wanted = min(destination.count, total - position)
        let copied = wanted
        var skip = position
        var index = 0
        while wanted > 0 && index < segments.count {
            let segment = segments[index]
            index += 1
            if skip >= segment.length {
                skip -= segment.length
                continue
            }
            let n = min(segment.length - skip, wanted)
            let bytes = try bytesOf(segment)
            target.copyMemory(from: bytes + skip, byteCount: n)
            target += n
            wanted -= n
            skip = 0
        }
        return copied
    }

    /// The first byte of a segment's data (maps file ranges on demand).
    @inline(__always)
    func bytesOf(_ segment: Segment) throws(BufferError) -> UnsafeMutableRawPointer {
        do throws(SystemCallError) {
            return try segment.storage.bytes() + segment.offset
        } catch {
            throw .system(error)
        }
    }

    /// Removes `count` bytes from the front (libevent's `evbuffer_drain`);
    /// draining more than the buffer holds empties it.
    public func drain(_ count: Int) throws(BufferError) {
        try withLock { () throws(BufferError) in
            try checkStart("EventBuffer.drain")
            let n = min(max(count, 0), total)
            dropFront(n)
            changed(removed: n)
        }
    }

    /// Drops `count` bytes from the front; the lock is held, `count` <= total.
    func dropFront(_ count: Int) {
        guard count > 0 else { return }
        reservation = nil
        var remaining = count
        total -= count
        while remaining > 0 {
            let first = segments[0]
            if first.length <= remaining {
                remaining -= first.length
                var removed = segments.removeFirst()
                recycle(&removed)
            } else {
                segments[0].offset += remaining
                segments[0].length -= remaining
                remaining = 0
            }
        }
        if total == 0, var last = segments.isEmpty ? nil : segments.removeLast() {
            // An empty tail segment left by commit(0) or similar.
            recycle(&last)
        }
    }

    /// Moves up to `count` bytes from the front of this buffer to the end of
    /// `destination`: whole segments move, at most one is split
    /// (libevent's `evbuffer_remove_buffer`). Returns how many moved.
    @discardableResult
    public func move(upTo count: Int, into destination: EventBuffer) throws(BufferError) -> Int {
        guard destination !== self else { throw .sameBuffer(call: "EventBuffer.move(upTo:into:)") }
        return try Self.withBothLocked(self, destination) { () throws(BufferError) in
            try checkStart("EventBuffer.move(upTo:into:)")
            try destination.checkEnd("EventBuffer.move(upTo:into:)")
            let n = min(max(count, 0), total)
            guard n > 0 else { return 0 }
            reservation = nil
            destination.reservation = nil
            destination.dropEmptyTail()
            var remaining = n
            while remaining > 0 {
                let first = segments[0]
                if first.length == 0 {
                    segments.removeFirst()
                } else if first.length <= remaining {
                    destination.segments.append(segments.removeFirst())
                    remaining -= first.length
                } else {
                    // Share the storage: the head moves, the rest stays.
                    destination.segments.append(Segment(storage: first.storage, offset: first.offset, length: remaining))
                    segments[0].offset += remaining
                    segments[0].length -= remaining
                    remaining = 0
                }
            }
            total -= n
            destination.total += n
            changed(removed: n)
            destination.changed(added: n)
            return n
        }
    }

    // MARK: contiguous access and in-place writing

    /// Makes the first `count` bytes (all when nil) contiguous and returns
    /// them, or nil if the buffer holds fewer (libevent's `evbuffer_pullup`).
    /// Valid until the buffer changes.
    public func pullUp(_ count: Int? = nil) throws(BufferError) -> UnsafeRawBufferPointer? {
        try withLock { () throws(BufferError) in
            let n = count ?? total
            guard n >= 0, n <= total else { return nil }
            if n == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
            if segments[0].length >= n {
                // Already contiguous: nothing moves, a reservation stays valid.
                return UnsafeRawBufferPointer(start: try bytesOf(segments[0]), count: n)
            }
            // Gather the first n bytes into one new heap segment.
            reservation = nil
            let storage = SegmentStorage(capacity: max(n, Self.segmentSize))
            _ = try copyFront(into: UnsafeMutableRawBufferPointer(start: storage.heapBytes, count: n), from: 0)
            let keep = total
            dropFront(n)
            total = keep
            segments.prepend(Segment(storage: storage, offset: 0, length: n))
            return UnsafeRawBufferPointer(start: storage.heapBytes, count: n)
        }
    }

    /// Makes sure `count` bytes can be added without another allocation
    /// (libevent's `evbuffer_expand`).
    public func expand(_ count: Int) {
        withLock {
            reservation = nil
            if segments.lastIsExclusiveHeap() {
                let last = segments[segments.count - 1]
                if last.storage.capacity - last.offset - last.length >= count { return }
                if last.length == 0 { _ = segments.removeLast() }
            }
            segments.append(Segment(storage: newStorage(atLeast: count), offset: 0, length: 0))
        }
    }

    /// Writable space for at least `count` bytes at the end, in up to two
    /// pieces (libevent's `evbuffer_reserve_space`); write into it, then
    /// ``commit(_:)`` what was written. Nothing is added until the commit.
    public func reserve(_ count: Int) throws(BufferError) -> [UnsafeMutableRawBufferPointer] {
        try withLock { () throws(BufferError) in
            try checkEnd("EventBuffer.reserve")
            return reserveLocked(count)
        }
    }

    /// The reservation itself; the lock is held.
    func reserveLocked(_ count: Int) -> [UnsafeMutableRawBufferPointer] {
        let (first, second) = reservePiecesLocked(count)
        return [first, second].compactMap { $0 }
    }

    /// The reservation as at most two pieces, without an array (the read
    /// path); the lock is held.
    func reservePiecesLocked(_ count: Int) -> (UnsafeMutableRawBufferPointer?, UnsafeMutableRawBufferPointer?) {
        var first: UnsafeMutableRawBufferPointer? = nil
        var room = 0
        if segments.lastIsExclusiveHeap() {
            let last = segments[segments.count - 1]
            room = last.storage.capacity - last.offset - last.length
            if room > 0 {
                first = UnsafeMutableRawBufferPointer(start: last.storage.heapBytes + last.offset + last.length, count: room)
            }
        }
        var appended = false
        var second: UnsafeMutableRawBufferPointer? = nil
        if room < count {
            let storage = newStorage(atLeast: count - room)
            segments.append(Segment(storage: storage, offset: 0, length: 0))
            let piece = UnsafeMutableRawBufferPointer(start: storage.heapBytes, count: storage.capacity)
            if first == nil { first = piece } else { second = piece }
            appended = true
        }
        reservation = (room, appended)
        return (first, second)
    }

    /// Adds the first `count` bytes written into the last reservation
    /// (libevent's `evbuffer_commit_space`).
    public func commit(_ count: Int) throws(BufferError) {
        try withLock { () throws(BufferError) in
            try commitLocked(count)
            changed(added: count)
        }
    }

    func commitLocked(_ count: Int) throws(BufferError) {
        guard let reservation else { throw .commitWithoutReserve(requested: count, reserved: 0) }
        let appendedRoom = reservation.appended ? segments[segments.count - 1].storage.capacity : 0
        guard count >= 0, count <= reservation.tailRoom + appendedRoom else {
            throw .commitWithoutReserve(requested: count, reserved: reservation.tailRoom + appendedRoom)
        }
        self.reservation = nil
        let intoTail = min(count, reservation.tailRoom)
        let tailIndex = segments.count - (reservation.appended ? 2 : 1)
        if intoTail > 0 { segments[tailIndex].length += intoTail }
        if reservation.appended {
            let intoNew = count - intoTail
            if intoNew > 0 {
                segments[segments.count - 1].length = intoNew
            } else {
                var unused = segments.removeLast()
                recycle(&unused)
            }
        }
        total += count
    }

    /// The segments holding the first `length` bytes (all when nil) from
    /// `position`, without copying (libevent's `evbuffer_peek`). Valid until
    /// the buffer changes.
    public func peek(length: Int? = nil, from position: Int = 0) throws(BufferError) -> [UnsafeRawBufferPointer] {
        try withLock { () throws(BufferError) in
            guard position >= 0, position <= total else { throw .outOfRange(position: position, length: total) }
            var wanted = min(length ?? total, total - position)
            var skip = position
            var pieces: [UnsafeRawBufferPointer] = []
            var index = 0
            while wanted > 0 && index < segments.count {
                let segment = segments[index]
                index += 1
                if skip >= segment.length {
                    skip -= segment.length
                    continue
                }
                let n = min(segment.length - skip, wanted)
                pieces.append(UnsafeRawBufferPointer(start: try bytesOf(segment) + skip, count: n))
                wanted -= n
                skip = 0
            }
            return pieces
        }
    }
}
