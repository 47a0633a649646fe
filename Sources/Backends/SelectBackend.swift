import CEventShims
import Glibc

/// select(2) with sets sized to the largest watched descriptor, so
/// descriptors at or above FD_SETSIZE work (libevent 2.1 aborts there).
/// No early close: select cannot tell a hang-up from readable data.
public final class SelectBackend: Backend {
    public var kind: BackendKind { .select }
    public var features: BackendFeatures { BackendKind.select.features }

    /// Interest sets, one bit per descriptor, 64 per word.
    // The base calls a backend only as its writer (owner, lock holder or rcu
    // writer), so accesses never overlap: no runtime exclusivity checks.
    @exclusivity(unchecked) private var readInterest: [UInt64] = []
    @exclusivity(unchecked) private var writeInterest: [UInt64] = []
    @exclusivity(unchecked) private var highestFD: Int32 = -1
    /// The interest sets as of `prepareWait`, and the sets handed to the
    /// kernel; owned by the waiting thread.
    @exclusivity(unchecked) private var readSnapshot: [UInt64] = []
    @exclusivity(unchecked) private var writeSnapshot: [UInt64] = []
    @exclusivity(unchecked) private var readResult: [UInt64] = []
    @exclusivity(unchecked) private var writeResult: [UInt64] = []
    @exclusivity(unchecked) private var snapshotHighestFD: Int32 = -1
    @exclusivity(unchecked) private var ready = ReadyBuffer(capacity: 32)
    @exclusivity(unchecked) private var isClosed = false

    public init() {}

    deinit { close() }

    public func update(fd: Int32, from old: IOEvents, to new: IOEvents, edgeTriggered: Bool) throws(SystemCallError) {
        if new.contains(.closed) && !old.contains(.closed) {
            throw SystemCallError(call: "select: early close is not supported", errno: EOPNOTSUPP, fd: fd)
        }
        if old.isEmpty && !new.isEmpty && fcntl(fd, F_GETFD) < 0 { throw .last("fcntl(F_GETFD)", fd: fd) }
        let word = Int(fd) >> 6
        let bit = UInt64(1) << UInt64(fd & 63)
        if word >= readInterest.count {
            if new.isEmpty { return }
            let words = max(word + 1, readInterest.count * 2)
            readInterest.append(contentsOf: repeatElement(0, count: words - readInterest.count))
            writeInterest.append(contentsOf: repeatElement(0, count: words - writeInterest.count))
        }
        if new.contains(.read) { readInterest[word] |= bit } else { readInterest[word] &= ~bit }
        if new.contains(.write) { writeInterest[word] |= bit } else { writeInterest[word] &= ~bit }
        if !new.isEmpty {
            highestFD = max(highestFD, fd)
        } else if fd == highestFD {
            recomputeHighest()
        }
    }

    private func recomputeHighest() {
        var word = Int(highestFD) >> 6
        while word >= 0 {
            let bits = readInterest[word] | writeInterest[word]
            if bits != 0 {
                highestFD = Int32(word * 64 + 63 - bits.leadingZeroBitCount)
                return
            }
            word -= 1
        }
        highestFD = -1
    }

    public func prepareWait() {
        let words = highestFD < 0 ? 0 : Int(highestFD) / 64 + 1
        if readSnapshot.count < words {
            let grow = readInterest.count - readSnapshot.count
            readSnapshot.append(contentsOf: repeatElement(0, count: grow))
            writeSnapshot.append(contentsOf: repeatElement(0, count: grow))
            readResult.append(contentsOf: repeatElement(0, count: grow))
            writeResult.append(contentsOf: repeatElement(0, count: grow))
        }
        for i in 0..<words {
            readSnapshot[i] = readInterest[i]
            writeSnapshot[i] = writeInterest[i]
        }
        snapshotHighestFD = highestFD
    }

    public func wait(timeoutNanoseconds: Int64) throws(SystemCallError) -> UnsafeBufferPointer<ReadyDescriptor> {
        ready.count = 0
        let highestFD = snapshotHighestFD
        let words = highestFD < 0 ? 0 : Int(highestFD) / 64 + 1
        for i in 0..<words {
            readResult[i] = readSnapshot[i]
            writeResult[i] = writeSnapshot[i]
        }
        let n = selectResults(highestFD: highestFD, timeoutNanoseconds: timeoutNanoseconds)
        if n < 0 {
            if errno == EINTR { return ready.buffer }
            if errno == EBADF { return reportInvalidDescriptors(words: words, highestFD: highestFD) }
            throw .last("select")
        }
        if n > 0 { collectResults(count: n, words: words) }
        return ready.buffer
    }

    /// select(2) on the result sets, which it overwrites.
    private func selectResults(highestFD: Int32, timeoutNanoseconds: Int64) -> Int32 {
        readResult.withUnsafeMutableBufferPointer { r in
            writeResult.withUnsafeMutableBufferPointer { w in
                se_select(highestFD + 1, r.baseAddress, w.baseAddress, timeoutNanoseconds)
            }
        }
    }

    /// Appends the descriptors select left set in the result sets.
    private func collectResults(count n: Int32, words: Int) {
        ready.reserve(ready.count + Int(n))
        for i in 0..<words {
            var bits = readResult[i] | writeResult[i]
            while bits != 0 {
                let offset = bits.trailingZeroBitCount
                bits &= bits - 1
                let mask = UInt64(1) << UInt64(offset)
                var what: UInt32 = 0
                if readResult[i] & mask != 0 { what |= SE_READY_READ }
                if writeResult[i] & mask != 0 { what |= SE_READY_WRITE }
                ready.append(fd: Int32(i * 64 + offset), what: what)
            }
        }
    }

    /// select fails as a whole when a watched descriptor was closed. Report
    /// each such descriptor as readable and writable (poll's POLLNVAL), so
    /// its owner's read or write sees EBADF, and poll the others without
    /// waiting, so one stale registration neither fails every wait nor
    /// hides the descriptors that are ready.
    private func reportInvalidDescriptors(words: Int, highestFD: Int32) -> UnsafeBufferPointer<ReadyDescriptor> {
        for i in 0..<words {
            readResult[i] = readSnapshot[i]
            writeResult[i] = writeSnapshot[i]
            var bits = readSnapshot[i] | writeSnapshot[i]
            while bits != 0 {
                let offset = bits.trailingZeroBitCount
                bits &= bits - 1
                let fd = Int32(i * 64 + offset)
                if fcntl(fd, F_GETFD) < 0 && errno == EBADF {
                    let mask = UInt64(1) << UInt64(offset)
                    readResult[i] &= ~mask
                    writeResult[i] &= ~mask
                    ready.reserve(ready.count + 1)
                    ready.append(fd: fd, what: SE_READY_READ | SE_READY_WRITE)
                }
            }
        }
        let n = selectResults(highestFD: highestFD, timeoutNanoseconds: 0)
        if n > 0 { collectResults(count: n, words: words) }
        return ready.buffer
    }

    public func reinitialize() throws(SystemCallError) {
        for i in 0..<readInterest.count {
            readInterest[i] = 0
            writeInterest[i] = 0
        }
        highestFD = -1
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        ready.free()
    }
}
