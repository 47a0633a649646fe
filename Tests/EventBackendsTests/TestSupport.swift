import EventBackends
import Foundation
import Glibc
import Synchronization
import Testing
import EventTestSupport

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

/// One backend wait, as a map from descriptor to what it reported.
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
