import CEventShims
import Glibc

/// poll(2): any descriptor, early close through POLLRDHUP (Linux); O(n) per
/// wait in the number of watched descriptors.
public final class PollBackend: Backend {
    public var kind: BackendKind { .poll }
    public var features: BackendFeatures { BackendKind.poll.features }

    /// Registrations, changed by `update`.
    // The base calls a backend only as its writer (owner, lock holder or rcu
    // writer), so accesses never overlap: no runtime exclusivity checks.
    @exclusivity(unchecked) private var fds: UnsafeMutablePointer<pollfd>
    @exclusivity(unchecked) private var capacity = 32
    @exclusivity(unchecked) private var count = 0
    /// The array the wait polls: a copy of `fds`, refreshed by `prepareWait`
    /// only when `update` changed something.
    @exclusivity(unchecked) private var waitFDs: UnsafeMutablePointer<pollfd>
    @exclusivity(unchecked) private var waitCapacity = 32
    @exclusivity(unchecked) private var waitCount = 0
    @exclusivity(unchecked) private var changed = false
    /// fd -> index in `fds` plus one (0: not watched).
    @exclusivity(unchecked) private var slotOf: [Int32] = []
    @exclusivity(unchecked) private var ready = ReadyBuffer(capacity: 32)
    @exclusivity(unchecked) private var isClosed = false
    private static let rdhup = Int16(bitPattern: se_pollrdhup())

    public init() {
        fds = .allocate(capacity: capacity)
        waitFDs = .allocate(capacity: waitCapacity)
    }

    deinit { close() }

    public func update(fd: Int32, from old: IOEvents, to new: IOEvents, edgeTriggered: Bool) throws(SystemCallError) {
        if old.isEmpty && !new.isEmpty && fcntl(fd, F_GETFD) < 0 { throw .last("fcntl(F_GETFD)", fd: fd) }
        changed = true
        let index = Int(fd)
        if index >= slotOf.count {
            if new.isEmpty { return }
            slotOf.append(contentsOf: repeatElement(0, count: index + 1 - slotOf.count))
        }
        let slot = Int(slotOf[index])
        if new.isEmpty {
            guard slot != 0 else { return }
            let position = slot - 1
            count -= 1
            if position != count {
                fds[position] = fds[count]
                slotOf[Int(fds[position].fd)] = Int32(position + 1)
            }
            slotOf[index] = 0
            return
        }
        var mask: Int16 = 0
        if new.contains(.read) { mask |= Int16(POLLIN) }
        if new.contains(.write) { mask |= Int16(POLLOUT) }
        if new.contains(.closed) { mask |= Self.rdhup }
        if slot != 0 {
            fds[slot - 1].events = mask
            return
        }
        if count == capacity {
            let grown = UnsafeMutablePointer<pollfd>.allocate(capacity: capacity * 2)
            grown.update(from: fds, count: count)
            fds.deallocate()
            fds = grown
            capacity *= 2
        }
        fds[count] = pollfd(fd: fd, events: mask, revents: 0)
        count += 1
        slotOf[index] = Int32(count)
    }

    public func prepareWait() {
        guard changed else { return }
        changed = false
        if waitCapacity < count {
            waitFDs.deallocate()
            waitCapacity = capacity
            waitFDs = .allocate(capacity: waitCapacity)
        }
        waitFDs.update(from: fds, count: count)
        waitCount = count
    }

    public func wait(timeoutNanoseconds: Int64) throws(SystemCallError) -> UnsafeBufferPointer<ReadyDescriptor> {
        ready.count = 0
        let fds = waitFDs
        let count = waitCount
        let n = poll(fds, nfds_t(count), milliseconds(roundingUp: timeoutNanoseconds))
        if n < 0 {
            if errno == EINTR { return ready.buffer }
            throw .last("poll")
        }
        guard n > 0 else { return ready.buffer }
        ready.reserve(Int(n))
        var found: Int32 = 0
        for i in 0..<count where found < n {
            let revents = fds[i].revents
            if revents == 0 { continue }
            found += 1
            var what: UInt32 = 0
            // Errors, hang-ups and invalid descriptors wake both directions,
            // as libevent reports them, so the owner's read or write sees why.
            if revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                what = SE_READY_READ | SE_READY_WRITE
            } else {
                if revents & Int16(POLLIN) != 0 { what |= SE_READY_READ }
                if revents & Int16(POLLOUT) != 0 { what |= SE_READY_WRITE }
            }
            if revents & Self.rdhup != 0 { what |= SE_READY_CLOSED }
            ready.append(fd: fds[i].fd, what: what)
        }
        return ready.buffer
    }

    public func reinitialize() throws(SystemCallError) {
        count = 0
        changed = true
        slotOf.removeAll(keepingCapacity: true)
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        fds.deallocate()
        waitFDs.deallocate()
        ready.free()
    }
}
