import CEventShims
import Glibc

/// epoll(7): O(1), edge-triggered and early-close capable; refuses regular
/// files and directories (EPERM), as the kernel does.
public final class EpollBackend: Backend {
    public var kind: BackendKind { .epoll }
    public var features: BackendFeatures { BackendKind.epoll.features }

    // The base calls a backend only as its writer (owner, lock holder or rcu
    // writer), so accesses never overlap: no runtime exclusivity checks.
    @exclusivity(unchecked) private var epfd: Int32
    @exclusivity(unchecked) private var events: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var ready: ReadyBuffer
    /// timerfd for sub-millisecond timeouts, when precise timing was asked for.
    @exclusivity(unchecked) private var timerFD: Int32 = -1
    @exclusivity(unchecked) private var timerArmed = false
    private let preciseTimer: Bool

    /// libevent starts at 32 and doubles up to 4096 when a wait fills the array.
    private static let initialCapacity = 32
    private static let maximumCapacity = 4096

    public init(preciseTimer: Bool = false) throws(SystemCallError) {
        self.preciseTimer = preciseTimer
        epfd = se_epoll_create()
        if epfd < 0 { throw .last("epoll_create1") }
        events = se_epoll_events_alloc(Int32(Self.initialCapacity))
        ready = ReadyBuffer(capacity: Self.initialCapacity)
        if preciseTimer {
            do throws(SystemCallError) { try makeTimerFD() } catch {
                Glibc.close(epfd)
                throw error
            }
        }
    }

    deinit { close() }

    private func makeTimerFD() throws(SystemCallError) {
        timerFD = se_timerfd()
        if timerFD < 0 { throw .last("timerfd_create") }
        if se_epoll_ctl(epfd, 1, timerFD, SE_READY_READ, 0) < 0 {
            let error = SystemCallError.last("epoll_ctl(ADD)", fd: timerFD)
            Glibc.close(timerFD)
            timerFD = -1
            throw error
        }
    }

    public func update(fd: Int32, from old: IOEvents, to new: IOEvents, edgeTriggered: Bool) throws(SystemCallError) {
        let et: Int32 = edgeTriggered ? 1 : 0
        if new.isEmpty {
            guard !old.isEmpty else { return }
            // A descriptor closed before its events were deleted is already
            // gone from the epoll set: that is not an error (libevent agrees).
            if se_epoll_ctl(epfd, 2, fd, 0, 0) < 0, errno != ENOENT, errno != EBADF, errno != EPERM {
                throw .last("epoll_ctl(DEL)", fd: fd)
            }
            return
        }
        if old.isEmpty {
            if se_epoll_ctl(epfd, 1, fd, new.rawValue, et) == 0 { return }
            // Still registered from a descriptor that was closed and reused:
            // modify instead, as libevent does.
            guard errno == EEXIST else { throw .last("epoll_ctl(ADD)", fd: fd) }
            if se_epoll_ctl(epfd, 3, fd, new.rawValue, et) < 0 { throw .last("epoll_ctl(MOD)", fd: fd) }
            return
        }
        if se_epoll_ctl(epfd, 3, fd, new.rawValue, et) == 0 { return }
        guard errno == ENOENT else { throw .last("epoll_ctl(MOD)", fd: fd) }
        if se_epoll_ctl(epfd, 1, fd, new.rawValue, et) < 0 { throw .last("epoll_ctl(ADD)", fd: fd) }
    }

    /// The kernel holds epoll's registrations: nothing to snapshot.
    public func prepareWait() {}

    public func wait(timeoutNanoseconds: Int64) throws(SystemCallError) -> UnsafeBufferPointer<ReadyDescriptor> {
        var timeoutMs = milliseconds(roundingUp: timeoutNanoseconds)
        if timerFD >= 0 {
            if timeoutNanoseconds > 0 {
                if se_timerfd_arm(timerFD, timeoutNanoseconds) < 0 { throw .last("timerfd_settime", fd: timerFD) }
                timerArmed = true
                timeoutMs = -1
            } else if timerArmed {
                if se_timerfd_arm(timerFD, 0) < 0 { throw .last("timerfd_settime", fd: timerFD) }
                timerArmed = false
            }
        }
        let n = se_epoll_wait(epfd, events, ready.base, Int32(ready.capacity), timeoutMs)
        if n < 0 {
            if errno == EINTR {
                ready.count = 0
                return ready.buffer
            }
            throw .last("epoll_wait", fd: epfd)
        }
        ready.count = Int(n)
        if timerFD >= 0 { dropTimerWakeUp() }
        if ready.count == ready.capacity && ready.capacity < Self.maximumCapacity { grow() }
        return ready.buffer
    }

    /// The timerfd only ends the wait; it is not a caller's descriptor.
    private func dropTimerWakeUp() {
        var i = 0
        while i < ready.count {
            if ready.base[i].fd == timerFD {
                var expirations: UInt64 = 0
                _ = Glibc.read(timerFD, &expirations, 8)
                timerArmed = false
                ready.base[i] = ready.base[ready.count - 1]
                ready.count -= 1
            } else {
                i += 1
            }
        }
    }

    /// A wait filled the arrays: double them for the next one, keeping this
    /// wait's results.
    private func grow() {
        ready.reserve(ready.capacity * 2)
        se_epoll_events_free(events)
        events = se_epoll_events_alloc(Int32(ready.capacity))
    }

    public func reinitialize() throws(SystemCallError) {
        let fresh = se_epoll_create()
        if fresh < 0 { throw .last("epoll_create1") }
        Glibc.close(epfd)
        epfd = fresh
        if timerFD >= 0 {
            Glibc.close(timerFD)
            timerFD = -1
            timerArmed = false
            try makeTimerFD()
        }
    }

    public func close() {
        guard epfd >= 0 else { return }
        Glibc.close(epfd)
        epfd = -1
        if timerFD >= 0 {
            Glibc.close(timerFD)
            timerFD = -1
        }
        se_epoll_events_free(events)
        ready.free()
    }
}
