import CEventShims
import Glibc
import Synchronization

/// Wakes a loop blocked in its backend from another thread (libevent's
/// `th_notify`): an eventfd, or a non-blocking pipe where eventfd is
/// unavailable or the configuration asks for it.
///
/// However many threads notify, at most one write reaches the descriptor per
/// loop iteration: the first notifier after ``acknowledge()`` writes, the
/// rest see the wake-up already pending and return.
public final class Notifier: Sendable {
    public enum Mechanism: String, Sendable, CaseIterable {
        case eventfd
        case pipe
    }

    public let mechanism: Mechanism
    /// Watched for reading by the loop. Immutable until ``reinitialize()``,
    /// which only the loop's owner calls, after fork, with no other thread.
    nonisolated(unsafe) public private(set) var readFD: Int32
    nonisolated(unsafe) private var writeFD: Int32
    private let pending = Atomic<Bool>(false)
    /// Writes made so far (tests check the one-write-per-iteration rule).
    private let writes = Atomic<Int>(0)

    public init(prefer mechanism: Mechanism = .eventfd) throws(SystemCallError) {
        (self.mechanism, readFD, writeFD) = try Self.open(mechanism)
    }

    private static func open(_ mechanism: Mechanism) throws(SystemCallError) -> (Mechanism, Int32, Int32) {
        if mechanism == .eventfd {
            let fd = se_eventfd()
            if fd >= 0 { return (.eventfd, fd, fd) }
            // Fall back to a pipe, as libevent does without eventfd.
        }
        var fds: [Int32] = [-1, -1]
        if se_pipe_nonblocking(&fds) < 0 { throw .last("pipe2") }
        return (.pipe, fds[0], fds[1])
    }

    deinit {
        Glibc.close(readFD)
        if writeFD != readFD { Glibc.close(writeFD) }
    }

    /// Wakes the loop unless a wake-up is already pending. Thread-safe.
    ///
    /// Callers publish their work (a queue push, a state change) with a
    /// sequentially consistent operation before calling this; the loop's
    /// ``acknowledge()`` is sequentially consistent too and reads the work
    /// after it. Either this load sees the acknowledgement and writes, or the
    /// loop's read sees the work: no wake-up is lost.
    @inline(__always)
    public func notify() {
        if pending.load(ordering: .sequentiallyConsistent) { return }
        if pending.exchange(true, ordering: .sequentiallyConsistent) { return }
        writes.add(1, ordering: .relaxed)
        var one: UInt64 = 1
        let count = mechanism == .eventfd ? 8 : 1
        // EAGAIN means the descriptor already holds a wake-up: nothing is lost.
        _ = Glibc.write(writeFD, &one, count)
    }

    /// Called by the loop once it is awake and before it looks at what other
    /// threads handed it: empties the descriptor and re-arms ``notify()``.
    /// The exchange reads the notifier's write, so everything a notifier
    /// published before notifying is visible after this returns.
    public func acknowledge() {
        var sink = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while withUnsafeMutableBytes(of: &sink, { Glibc.read(readFD, $0.baseAddress, $0.count) }) > 0 {
            if mechanism == .eventfd { break }
        }
        _ = pending.exchange(false, ordering: .sequentiallyConsistent)
    }

    /// Whether a wake-up has been written and not yet acknowledged.
    public var isPending: Bool { pending.load(ordering: .acquiring) }

    /// Number of writes to the descriptor since creation.
    public var writeCount: Int { writes.load(ordering: .relaxed) }

    /// After fork: fresh descriptors, so parent and child do not wake each other.
    public func reinitialize() throws(SystemCallError) {
        let (_, newRead, newWrite) = try Self.open(mechanism)
        Glibc.close(readFD)
        if writeFD != readFD { Glibc.close(writeFD) }
        readFD = newRead
        writeFD = newWrite
        pending.store(false, ordering: .releasing)
    }
}
