import CEventShims
import EventBackends
import Glibc

/// The memory behind one or more segments of an ``EventBuffer`` (libevent's
/// `evbuffer_chain`): heap memory the buffer owns, memory a caller lent with
/// a cleanup closure, or a range of a file (sent with sendfile, mapped when
/// the bytes themselves are needed).
///
/// Several segments, in several buffers, may share one storage (a buffer
/// added by reference, a segment split by a partial move); the storage is
/// freed, or its cleanup run, exactly once, when the last one lets go. Only
/// heap storage referenced by a single segment is ever written into.
final class SegmentStorage {
    enum Origin {
        case heap
        case reference(cleanup: (@Sendable () -> Void)?)
        case file(FileSegment)
    }

    let origin: Origin
    let capacity: Int
    /// Nil for a file range until it is mapped.
    private var memory: UnsafeMutableRawPointer?

    /// Heap storage of `capacity` bytes.
    init(capacity: Int) {
        origin = .heap
        self.capacity = capacity
        memory = .allocate(byteCount: capacity, alignment: 16)
    }

    /// Memory owned by the caller; `cleanup` runs once nothing refers to it.
    init(referencing memory: UnsafeRawPointer, count: Int, cleanup: (@Sendable () -> Void)?) {
        origin = .reference(cleanup: cleanup)
        capacity = count
        self.memory = UnsafeMutableRawPointer(mutating: memory)
    }

    /// A whole file segment (its bytes are `0..<segment.length`).
    init(file segment: FileSegment) {
        origin = .file(segment)
        capacity = segment.length
        memory = nil
    }

    deinit {
        switch origin {
        case .heap: memory?.deallocate()
        case .reference(let cleanup): cleanup?()
        case .file: break  // the FileSegment unmaps and closes itself
        }
    }

    var isHeap: Bool {
        if case .heap = origin { return true }
        return false
    }

    var file: FileSegment? {
        if case .file(let segment) = origin { return segment }
        return nil
    }

    /// The bytes; maps a file range on first use.
    func bytes() throws(SystemCallError) -> UnsafeMutableRawPointer {
        if let memory { return memory }
        guard case .file(let segment) = origin else { fatalError("storage without memory") }
        let mapped = try segment.mappedBytes()
        memory = mapped
        return mapped
    }

    /// The bytes of heap or referenced storage (never a file).
    @inline(__always)
    var heapBytes: UnsafeMutableRawPointer { memory.unsafelyUnwrapped }
}

/// A range of a file added to a buffer (libevent's `evbuffer_file_segment`).
/// Written to a socket with sendfile(2); mapped (read-only, private) when the
/// bytes are needed otherwise. With `closeOnFree` the descriptor is closed,
/// and `cleanup` runs, when the last buffer referring to it lets go.
public final class FileSegment: @unchecked Sendable {
    // `mapping` is set once, by whoever maps first, under `mapLock`; the rest
    // is immutable.
    public let fd: Int32
    public let offset: Int64
    public let length: Int
    public let closeOnFree: Bool
    private let cleanup: (@Sendable () -> Void)?
    private let mapLock = PthreadSpin()
    private var mapping: (base: UnsafeMutableRawPointer, delta: Int)?

    /// A segment for `length` bytes of `fd` from `offset`
    /// (libevent's `evbuffer_file_segment_new`). Fails for a descriptor that
    /// is not a readable regular file or a range past its end.
    public init(
        fd: Int32, offset: Int64 = 0, length: Int? = nil, closeOnFree: Bool = false,
        cleanup: (@Sendable () -> Void)? = nil
    ) throws(SystemCallError) {
        var info = stat()
        if fstat(fd, &info) < 0 { throw .last("fstat", fd: fd) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw SystemCallError(call: "FileSegment: not a regular file", errno: EINVAL, fd: fd)
        }
        let available = Int64(info.st_size) - offset
        guard offset >= 0, available >= 0 else {
            throw SystemCallError(call: "FileSegment: offset past the end of the file", errno: EINVAL, fd: fd)
        }
        let wanted = length.map(Int64.init) ?? available
        guard wanted >= 0, wanted <= available else {
            throw SystemCallError(call: "FileSegment: range past the end of the file", errno: EINVAL, fd: fd)
        }
        self.fd = fd
        self.offset = offset
        self.length = Int(wanted)
        self.closeOnFree = closeOnFree
        self.cleanup = cleanup
    }

    deinit {
        if let mapping { _ = se_unmap(mapping.base - mapping.delta, length + mapping.delta) }
        if closeOnFree { Glibc.close(fd) }
        cleanup?()
    }

    /// The range's bytes, mapped on first use.
    func mappedBytes() throws(SystemCallError) -> UnsafeMutableRawPointer {
        mapLock.lock()
        defer { mapLock.unlock() }
        if let mapping { return mapping.base }
        if length == 0 { return UnsafeMutableRawPointer(bitPattern: 1)! }
        var delta = 0
        guard let address = se_map_file(fd, offset, length, &delta) else { throw .last("mmap", fd: fd) }
        let base = address + delta
        mapping = (base, delta)
        return base
    }
}

/// A tiny spin lock for a once-only initialization (a file mapping).
final class PthreadSpin: @unchecked Sendable {
    // The pthread spinlock is only touched through pthread calls.
    private let spin = UnsafeMutablePointer<pthread_spinlock_t>.allocate(capacity: 1)
    init() { pthread_spin_init(spin, 0) }
    deinit {
        pthread_spin_destroy(spin)
        spin.deallocate()
    }
    func lock() { pthread_spin_lock(spin) }
    func unlock() { pthread_spin_unlock(spin) }
}
