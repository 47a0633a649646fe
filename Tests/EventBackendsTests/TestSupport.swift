import EventBackends
import Foundation
import Glibc
import Synchronization
import Testing

/// A backend a test runs on: each kind, plus epoll with timerfd precision.
struct BackendCase: Sendable, CustomTestStringConvertible {
    let kind: BackendKind
    let preciseTimer: Bool

    var testDescription: String { preciseTimer ? "\(kind) (precise timer)" : "\(kind)" }

    func make() throws -> any Backend { try kind.make(preciseTimer: preciseTimer) }

    static let all: [BackendCase] =
        BackendKind.allCases.map { BackendCase(kind: $0, preciseTimer: false) }
        + [BackendCase(kind: .epoll, preciseTimer: true)]
}

/// A connected pair of non-blocking UNIX stream sockets, closed on deinit.
final class SocketPair: @unchecked Sendable {
    // Immutable after init; closing is tracked so a test can close one end early.
    let left: Int32
    let right: Int32
    private var leftOpen = true
    private var rightOpen = true

    init() throws {
        var fds: [Int32] = [-1, -1]
        let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
        try #require(rc == 0, "socketpair: \(String(cString: strerror(errno)))")
        left = fds[0]
        right = fds[1]
    }

    deinit {
        if leftOpen { close(left) }
        if rightOpen { close(right) }
    }

    func closeRight() {
        guard rightOpen else { return }
        rightOpen = false
        close(right)
    }

    /// Writes `count` bytes to `fd` (default: right, so left becomes readable).
    func send(_ count: Int = 1, to fd: Int32? = nil) {
        let target = fd ?? right
        let bytes = [UInt8](repeating: 0x78, count: count)
        let written = bytes.withUnsafeBytes { write(target, $0.baseAddress, $0.count) }
        #expect(written == count)
    }

    /// Reads everything waiting on `fd` (default: left); returns the byte
    /// count (0 at end of file or when nothing waits).
    @discardableResult
    func drain(_ fd: Int32? = nil) -> Int {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd ?? left, $0.baseAddress, $0.count) }
            if n <= 0 { return total }
            total += n
        }
    }

    /// Writes to `fd` (default: left) until the kernel refuses more; returns the byte count.
    @discardableResult
    func fill(_ fd: Int32? = nil) -> Int {
        let chunk = [UInt8](repeating: 0x79, count: 65536)
        var total = 0
        while true {
            let n = chunk.withUnsafeBytes { write(fd ?? left, $0.baseAddress, $0.count) }
            if n <= 0 { return total }
            total += n
        }
    }
}

/// One wait: prepares the snapshot, waits, and copies the ready descriptors
/// out of the backend's buffer (merging duplicates).
func waitOnce(_ backend: any Backend, timeout: Duration) throws -> [Int32: IOEvents] {
    backend.prepareWait()
    let (seconds, attoseconds) = timeout.components
    let nanoseconds = timeout < .zero ? -1 : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    let ready = try backend.wait(timeoutNanoseconds: nanoseconds)
    var result: [Int32: IOEvents] = [:]
    for descriptor in ready { result[descriptor.fd, default: []].formUnion(descriptor.events) }
    return result
}

/// Waits until `fd` is reported (or `timeout` passes) and returns what was reported for it.
func waitFor(_ fd: Int32, on backend: any Backend, timeout: Duration = .seconds(5)) throws -> IOEvents? {
    let deadline = ContinuousClock.now + timeout
    repeat {
        let remaining = deadline - ContinuousClock.now
        let ready = try waitOnce(backend, timeout: max(remaining, .zero))
        if let events = ready[fd] { return events }
    } while ContinuousClock.now < deadline
    return nil
}

/// A descriptor number at or above `minimum`, duplicated from `fd`; the
/// caller closes it. Raises the soft descriptor limit if it is too low.
func duplicate(_ fd: Int32, atOrAbove minimum: Int32) throws -> Int32 {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    if limit.rlim_cur <= rlim_t(minimum) + 64 && limit.rlim_max > rlim_t(minimum) + 64 {
        limit.rlim_cur = min(limit.rlim_max, rlim_t(minimum) + 1024)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    let high = fcntl(fd, F_DUPFD_CLOEXEC, minimum)
    try #require(high >= minimum, "fcntl(F_DUPFD) to >= \(minimum): \(String(cString: strerror(errno)))")
    return high
}

/// A one-shot event a thread can wait for with a deadline.
final class Latch: @unchecked Sendable {
    // `isOpen` is guarded by `condition`.
    private let condition = NSCondition()
    private var isOpen = false

    func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }

    @discardableResult
    func wait(timeout: Duration = .seconds(10)) -> Bool {
        let (seconds, attoseconds) = timeout.components
        let deadline = Date(timeIntervalSinceNow: Double(seconds) + Double(attoseconds) / 1e18)
        condition.lock()
        defer { condition.unlock() }
        while !isOpen {
            if !condition.wait(until: deadline) { return isOpen }
        }
        return true
    }
}

/// A thread started for a test; `join` waits with a deadline.
final class TestThread: Sendable {
    private let finished = Latch()

    init(_ body: @escaping @Sendable () -> Void) {
        let finished = self.finished
        let thread = Thread {
            body()
            finished.open()
        }
        thread.start()
    }

    func join(timeout: Duration = .seconds(20)) -> Bool { finished.wait(timeout: timeout) }
}

func pause(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    usleep(UInt32(seconds) * 1_000_000 + UInt32(attoseconds / 1_000_000_000_000))
}

extension BackendCase {
    /// A number distinct per case, so parallel cases pick distinct fd ranges.
    var slot: Int32 {
        switch (kind, preciseTimer) {
        case (.epoll, false): 0
        case (.poll, _): 1
        case (.select, _): 2
        case (.epoll, true): 3
        }
    }
}

/// An open regular file (already unlinked), closed by the caller.
func openTemporaryFile() throws -> Int32 {
    var template = Array("/tmp/swiftevent-backend-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    try #require(fd >= 0, "mkstemp: \(String(cString: strerror(errno)))")
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    return fd
}

/// A counter shared between threads.
final class AtomicCounter: Sendable {
    private let storage = Atomic<Int>(0)
    func increment() { storage.add(1, ordering: .sequentiallyConsistent) }
    var value: Int { storage.load(ordering: .sequentiallyConsistent) }
}
