import CEventShims
import EventBackends
import EventCore
import Glibc

/// A bufferevent over a socket (libevent's `bufferevent_socket_new`): reads
/// into the input when the socket is readable, writes the output when it is
/// writable, and can connect the socket first.
public final class SocketBufferEvent: BufferEvent, @unchecked Sendable {
    // Confinement: every `var` is guarded by the bufferevent's lock.
    private var socket: Int32
    private var readEvent: Event?
    private var writeEvent: Event?
    private var readArmed = false
    private var writeArmed = false
    /// The timeouts the armed events carry.
    private var readArmedTimeout: Duration?
    private var writeArmedTimeout: Duration?
    private var connecting = false
    /// Internal events still to be finalized before a close-on-free close.
    private var finalizersLeft = 0
    /// Writes output added during the current loop pass once the callback
    /// that added it returns (all of it in one gathered write), without
    /// arming the write event unless the socket does not take everything.
    private var flushEvent: Event?
    private var flushPending = false

    /// A bufferevent on `fd` (made non-blocking), or on no socket yet
    /// (`fd` -1) until ``connect(to:)`` makes one.
    public init(base: EventBase, fd: Int32 = -1, options: Options = []) throws(EventError) {
        socket = fd
        try super.init(base: base, options: options)
        if fd >= 0 {
            guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) >= 0 else {
                throw .badFileDescriptor(fd: fd, call: "SocketBufferEvent.init")
            }
            try makeEvents()
        }
    }

    public override var fd: Int32 { lock.withLock { socket } }

    private func makeEvents() throws(EventError) {
        let fd = socket
        readEvent = try Event(base: base, fd: fd, flags: [.read, .persist, .finalize]) { [self] _, what in
            handleReadable(what)
        }
        writeEvent = try Event(base: base, fd: fd, flags: [.write, .persist, .finalize]) { [self] _, what in
            handleWritable(what)
        }
        flushEvent = try Event(base: base, fd: -1, flags: [.finalize]) { [self] _, _ in
            flushAddedOutput()
        }
    }

    /// Connects to `address` (libevent's `bufferevent_socket_connect`),
    /// making a non-blocking socket if there is none. Completion is reported
    /// to the event callback as `.connected`; failure (refused, unreachable,
    /// timed out by the write timeout) as `.error` with the errno.
    public func connect(to address: SocketAddress) throws(EventError) {
        try lock.withLock { () throws(EventError) in
            guard !isFreed else { throw .eventFinalized(call: "SocketBufferEvent.connect") }
            if socket < 0 {
                let fd = Glibc.socket(address.domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                if fd < 0 { throw .system(.last("socket")) }
                socket = fd
                try makeEvents()
            }
            let rc = address.withSockaddr { Glibc.connect(socket, $0, $1) }
            if rc == 0 {
                report(.connected)
            } else if errno == EINPROGRESS || errno == EINTR {
                connecting = true
                readSuspension.insert(.connecting)
            } else if errno == ECONNREFUSED || errno == ENETUNREACH || errno == EHOSTUNREACH || errno == ENOENT
                || errno == EAGAIN
            {
                // Reported through the event callback, as libevent does.
                report(.error, errno: errno)
            } else {
                throw .system(.last("connect", fd: socket))
            }
            try transportUpdate()
        }
        scheduleDelivery()
    }

    // MARK: transport

    public override func transportUpdate() throws(EventError) {
        guard socket >= 0, let readEvent, let writeEvent else { return }
        let restart = timeoutsToRestart
        timeoutsToRestart = []
        let wantRead = readingWanted && !connecting
        if wantRead {
            if !readArmed || restart.contains(.read) || readArmedTimeout != readTimeout {
                try arm(readEvent, timeout: readTimeout, had: readArmed ? readArmedTimeout : nil)
                readArmed = true
                readArmedTimeout = readTimeout
            }
        } else if readArmed {
            try readEvent.delete()
            readArmed = false
        }
        // Output waiting for the pending flush pass is written there first;
        // the write event is armed only for what the socket does not take.
        let wantWrite = connecting || (writingWanted && output.total > 0 && (writeArmed || !flushPending))
        if wantWrite {
            if !writeArmed || restart.contains(.write) || writeArmedTimeout != writeTimeout {
                try arm(writeEvent, timeout: writeTimeout, had: writeArmed ? writeArmedTimeout : nil)
                writeArmed = true
                writeArmedTimeout = writeTimeout
            }
        } else if writeArmed {
            try writeEvent.delete()
            writeArmed = false
        }
    }

    /// Adds `event` with `timeout`, removing a timeout it had when there is none now.
    private func arm(_ event: Event, timeout: Duration?, had previous: Duration?) throws(EventError) {
        try event.add(timeout: timeout)
        if timeout == nil && previous != nil { try event.removeTimer() }
    }

    public override func transportOutputAdded() {
        guard !writeArmed && writingWanted && !connecting, !flushPending, let flushEvent else { return }
        flushPending = true
        do {
            try flushEvent.activate()
        } catch {
            flushPending = false
            try? transportUpdate()
        }
    }

    /// One gathered write of the output, as much as the rate limit allows
    /// (the lock is held). False when writing stops for now: rate-starved
    /// (suspended until the next refill) or failed (reported).
    private func writeWithinAllowance() -> Bool {
        let allowance = writeAllowance
        guard allowance > 0 else {
            suspend(.write, .rateLimit)
            rateLimiter?.noteStarved(self)
            return false
        }
        output.unfreeze(end: false)
        defer { output.freeze(end: false) }
        do throws(BufferError) {
            if case .transferred(let n) = try output.write(to: socket, maxBytes: allowance) { didWrite(n) }
        } catch {
            report([.writing, .error], errno: errnoOf(error), disabling: .write)
            return false
        }
        return true
    }

    /// The deferred write of output added since the last pass (on the loop).
    private func flushAddedOutput() {
        lock.withLock {
            flushPending = false
            guard !writeArmed && writingWanted && !connecting, socket >= 0, output.count > 0 else { return }
            guard writeWithinAllowance() else { return }
            // What the socket did not take (or a write timeout to run) waits for writability.
            if output.count > 0 { try? transportUpdate() }
        }
        deliverCallbacksOrDefer(onLoop: true)
    }

    public override func transportFlush(_ directions: Direction, mode: FlushMode) {
        // A socket writes whatever the kernel takes as soon as it can.
    }

    public override func transportFree() {
        readArmed = false
        writeArmed = false
        let events = [readEvent, writeEvent, flushEvent].compactMap { $0 }
        readEvent = nil
        writeEvent = nil
        flushEvent = nil
        let fd = socket
        guard options.contains(.closeOnFree), fd >= 0 else {
            for event in events { try? event.finalize { _ in } }
            return
        }
        guard !events.isEmpty else {
            Glibc.close(fd)
            return
        }
        // Close only once neither event can fire: no other descriptor that
        // reuses the number can be touched by a late callback.
        finalizersLeft = events.count
        for event in events {
            try? event.finalize { [self] _ in
                let last = lock.withLock { () -> Bool in
                    finalizersLeft -= 1
                    return finalizersLeft == 0
                }
                if last { Glibc.close(fd) }
            }
        }
    }

    // MARK: the loop's side

    private func handleReadable(_ what: Event.Flags) {
        lock.withLock {
            guard readingWanted, !connecting else { return }
            if what.contains(.timeout) {
                report([.reading, .timeout], disabling: .read)
                return
            }
            let allowance = readAllowance
            guard allowance > 0 else {
                if let rateLimiter, rateLimiter.readAllowance(for: self) == 0 {
                    suspend(.read, .rateLimit)
                    rateLimiter.noteStarved(self)
                }
                try? transportUpdate()
                return
            }
            input.unfreeze(end: true)
            defer { input.freeze(end: true) }
            do throws(BufferError) {
                switch try input.read(from: socket, maxBytes: allowance) {
                case .transferred(let n):
                    didRead(n)
                    if !readingWanted { try? transportUpdate() }
                case .endOfFile:
                    report([.reading, .endOfFile], disabling: .read)
                case .wouldBlock:
                    break
                }
            } catch {
                report([.reading, .error], errno: errnoOf(error), disabling: .read)
            }
        }
        deliverCallbacksOrDefer(onLoop: true)
    }

    private func handleWritable(_ what: Event.Flags) {
        lock.withLock {
            if connecting {
                if what.contains(.timeout) {
                    connecting = false
                    readSuspension.remove(.connecting)
                    report([.writing, .timeout], disabling: .both)
                    return
                }
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(socket, SOL_SOCKET, SO_ERROR, &error, &length) < 0 { error = errno }
                connecting = false
                readSuspension.remove(.connecting)
                if error != 0 {
                    report(.error, errno: error, disabling: .both)
                    return
                }
                report(.connected)
                try? transportUpdate()
                return
            }
            guard writingWanted else { return }
            if what.contains(.timeout) {
                report([.writing, .timeout], disabling: .write)
                return
            }
            guard writeWithinAllowance() else { return }
            if output.total == 0 { try? transportUpdate() }
        }
        deliverCallbacksOrDefer(onLoop: true)
    }
}

/// The errno inside a buffer error (EIO when it carries none).
func errnoOf(_ error: BufferError) -> Int32 {
    if case .system(let system) = error { return system.errno }
    return EIO
}
