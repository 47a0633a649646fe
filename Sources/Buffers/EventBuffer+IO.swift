import CEventShims
import EventBackends
import Glibc

extension EventBuffer {
    /// What one read or write did.
    public enum IOResult: Sendable, Hashable {
        /// This many bytes moved (more than zero).
        case transferred(Int)
        /// The peer closed its side (reads only).
        case endOfFile
        /// Nothing could move without blocking.
        case wouldBlock
    }

    /// Reads up to `maxBytes` from `fd` straight into free space at the end
    /// of the buffer, scattered over at most two segments (libevent's
    /// `evbuffer_read`). Errors other than would-block are thrown.
    public func read(from fd: Int32, maxBytes: Int = 16384) throws(BufferError) -> IOResult {
        try withLock { () throws(BufferError) -> IOResult in
            try checkEnd("EventBuffer.read")
            guard maxBytes > 0 else { return .wouldBlock }
            // One read fills at most this much: larger asks would only
            // reserve memory the kernel rarely has bytes for.
            let maxBytes = min(maxBytes, Self.maxSingleRead)
            let (first, second) = reservePiecesLocked(maxBytes)
            var vectors = (iovec(), iovec())
            var count: Int32 = 0
            var left = maxBytes
            if let first {
                let n = min(first.count, left)
                vectors.0 = iovec(iov_base: first.baseAddress, iov_len: n)
                count = 1
                left -= n
            }
            if let second, left > 0 {
                vectors.1 = iovec(iov_base: second.baseAddress, iov_len: min(second.count, left))
                count = 2
            }
            var n: Int
            repeat {
                n = withUnsafePointer(to: &vectors) { pointer in
                    pointer.withMemoryRebound(to: iovec.self, capacity: 2) { Glibc.readv(fd, $0, count) }
                }
            } while n < 0 && errno == EINTR
            let error = errno
            try commitLocked(max(n, 0))
            if n > 0 {
                changed(added: n)
                return .transferred(n)
            }
            if n == 0 { return .endOfFile }
            if error == EAGAIN || error == EWOULDBLOCK { return .wouldBlock }
            throw .system(SystemCallError(call: "readv", errno: error, fd: fd))
        }
    }

    /// Writes as much of the buffer as `fd` takes, up to `maxBytes`, and
    /// removes what was written (libevent's `evbuffer_write_atmost`): memory
    /// segments with one gathered write (`sendmsg` with MSG_NOSIGNAL on
    /// sockets, so a vanished peer is EPIPE and never SIGPIPE), file segments
    /// with sendfile(2).
    public func write(to fd: Int32, maxBytes: Int? = nil) throws(BufferError) -> IOResult {
        try withLock { () throws(BufferError) -> IOResult in
            try checkStart("EventBuffer.write")
            let limit = min(maxBytes ?? total, total)
            guard limit > 0 else { return .wouldBlock }
            var first = 0
            while segments[first].length == 0 { first += 1 }
            let n: Int
            if let file = segments[first].storage.file {
                n = try sendFile(file, segment: segments[first], to: fd, limit: limit)
            } else {
                n = try gatherWrite(to: fd, limit: limit)
            }
            guard n > 0 else { return .wouldBlock }
            dropFront(n)
            changed(removed: n)
            return .transferred(n)
        }
    }

    /// Writes the whole buffer to a blocking or non-blocking `fd` as far as it
    /// goes (libevent's `evbuffer_write`).
    public func write(to fd: Int32) throws(BufferError) -> IOResult {
        try write(to: fd, maxBytes: nil)
    }

    /// One sendfile of the front file segment; returns bytes sent, 0 if it would block.
    private func sendFile(_ file: FileSegment, segment: Segment, to fd: Int32, limit: Int) throws(BufferError) -> Int {
        var position = file.offset + Int64(segment.offset)
        let wanted = min(segment.length, limit)
        var n: Int
        repeat {
            n = se_sendfile(fd, file.fd, &position, wanted)
        } while n < 0 && errno == EINTR
        if n >= 0 { return n }
        if errno == EAGAIN || errno == EWOULDBLOCK { return 0 }
        throw .system(.last("sendfile", fd: fd))
    }

    /// One gathered write of the memory segments at the front.
    private func gatherWrite(to fd: Int32, limit: Int) throws(BufferError) -> Int {
        let maxVectors = Self.maxWriteVectors
        return try withUnsafeTemporaryAllocation(of: iovec.self, capacity: maxVectors) { vectors throws(BufferError) -> Int in
            var count = 0
            var left = limit
            var index = 0
            while left > 0 && count < maxVectors && index < segments.count {
                let segment = segments[index]
                index += 1
                if segment.length == 0 { continue }
                guard segment.storage.file == nil else { break }
                let n = min(segment.length, left)
                vectors[count] = iovec(iov_base: segment.storage.heapBytes + segment.offset, iov_len: n)
                count += 1
                left -= n
            }
            var n: Int
            repeat {
                n = sendVectors(fd, vectors.baseAddress!, Int32(count))
            } while n < 0 && errno == EINTR
            if n >= 0 { return n }
            if errno == EAGAIN || errno == EWOULDBLOCK { return 0 }
            throw .system(.last(writeCall(fd), fd: fd))
        }
    }

    /// sendmsg(MSG_NOSIGNAL) on sockets; writev with SIGPIPE held off on
    /// anything else (remembered per descriptor, to skip the failed sendmsg).
    private func sendVectors(_ fd: Int32, _ vectors: UnsafePointer<iovec>, _ count: Int32) -> Int {
        if fd != notSocketFD {
            let n = se_send_iovecs(fd, vectors, count)
            if n >= 0 || errno != ENOTSOCK { return n }
            notSocketFD = fd
        }
        return se_writev_nosigpipe(fd, vectors, count)
    }

    private func writeCall(_ fd: Int32) -> String { fd == notSocketFD ? "writev" : "sendmsg" }

    /// The most one `read(from:)` takes.
    static let maxSingleRead = 256 * 1024

    /// Segments gathered into one write (libevent's NUM_WRITE_IOVEC is 128;
    /// 64 keeps the vector on the stack: withUnsafeTemporaryAllocation takes
    /// the heap above 1 KiB).
    static let maxWriteVectors = Int(min(se_iov_max(), 64))
}
