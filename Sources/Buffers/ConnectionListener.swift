import CEventShims
import EventBackends
import EventCore
import EventLocking
import Glibc

/// A listening socket that accepts connections and hands each to a callback
/// (libevent's `evconnlistener`).
///
/// It accepts until the kernel says EAGAIN. When the process runs out of
/// descriptors (EMFILE, ENFILE) it reports the error, stops accepting for a
/// back-off interval (growing to a second), and resumes: it neither spins nor
/// dies. ``disable()`` and ``free()`` never wait for a running accept
/// callback (libevent #1224), and are safe from any thread of a shared base.
public final class ConnectionListener: @unchecked Sendable {
    // Confinement: every `var` is guarded by `lock` (the base provider's).

    /// Options (libevent's `LEV_OPT_*`).
    public struct Options: OptionSet, Sendable, Hashable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        /// Close the listening socket on free.
        public static let closeOnFree = Options(rawValue: 0x01)
        /// Accepted sockets are close-on-exec (always true here; kept for libevent users).
        public static let closeOnExec = Options(rawValue: 0x02)
        public static let reuseAddress = Options(rawValue: 0x04)
        public static let reusePort = Options(rawValue: 0x08)
        /// Accept only once data arrives (TCP_DEFER_ACCEPT).
        public static let deferredAccept = Options(rawValue: 0x10)
        /// An IPv6 socket takes IPv6 only.
        public static let ipv6Only = Options(rawValue: 0x20)
        /// Start disabled (libevent's `LEV_OPT_DISABLED`).
        public static let disabled = Options(rawValue: 0x40)
    }

    /// A new connection: its non-blocking, close-on-exec descriptor and the peer.
    public typealias AcceptCallback = @Sendable (_ listener: ConnectionListener, _ fd: Int32, _ peer: SocketAddress) -> Void
    /// An accept failure other than EAGAIN: its errno.
    public typealias ErrorCallback = @Sendable (_ listener: ConnectionListener, _ errno: Int32) -> Void

    public let base: EventBase
    public let options: Options
    /// The listening socket.
    public let fd: Int32
    private let lock: any EventLock
    private var event: Event?
    private var backoffTimer: Event?
    private var acceptCallback: AcceptCallback?
    private var errorCallback: ErrorCallback?
    private var isEnabled = false
    private var isFreed = false
    private var backingOff = false
    private var backoff: Duration = .milliseconds(10)
    /// Connections accepted just as the listener was disabled: delivered
    /// when it is enabled again, closed if it is freed.
    private var parked: [(fd: Int32, peer: SocketAddress)] = []
    /// Runs once when the listener is freed (ends an accept sequence).
    private var freeHandler: (@Sendable () -> Void)?
    /// The longest pause after running out of descriptors.
    public static let maximumBackoff: Duration = .seconds(1)

    /// Binds to `address` and listens (libevent's `evconnlistener_new_bind`).
    public convenience init(
        base: EventBase, address: SocketAddress, options: Options = [.reuseAddress, .closeOnFree],
        backlog: Int32 = 128, callback: @escaping AcceptCallback
    ) throws(EventError) {
        let fd = Glibc.socket(address.domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw .system(.last("socket")) }
        do throws(SystemCallError) {
            try Self.configure(fd, address: address, options: options)
            if address.withSockaddr({ bind(fd, $0, $1) }) < 0 { throw .last("bind", fd: fd) }
            if listen(fd, backlog) < 0 { throw .last("listen", fd: fd) }
        } catch {
            Glibc.close(fd)
            throw .system(error)
        }
        try self.init(base: base, fd: fd, options: options.union(.closeOnFree), callback: callback)
    }

    /// Listens on an existing socket, which must already be listening
    /// (libevent's `evconnlistener_new`).
    public init(base: EventBase, fd: Int32, options: Options = [], callback: @escaping AcceptCallback) throws(EventError) {
        guard fd >= 0, fcntl(fd, F_GETFD) >= 0 else { throw .badFileDescriptor(fd: fd, call: "ConnectionListener.init") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        self.base = base
        self.fd = fd
        self.options = options
        lock = base.lockProvider.makeLock(.recursive)
        acceptCallback = callback
        event = try Event(base: base, fd: fd, flags: [.read, .persist, .finalize]) { [self] _, _ in acceptReady() }
        backoffTimer = try Event.timer(base: base, persist: false) { [self] _, _ in backoffEnded() }
        if !options.contains(.disabled) { try enable() }
    }

    private static func configure(_ fd: Int32, address: SocketAddress, options: Options) throws(SystemCallError) {
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        if options.contains(.reuseAddress) && address.family != .unix {
            if setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size) < 0 { throw .last("setsockopt(SO_REUSEADDR)", fd: fd) }
        }
        if options.contains(.reusePort) {
            if setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, size) < 0 { throw .last("setsockopt(SO_REUSEPORT)", fd: fd) }
        }
        if options.contains(.ipv6Only) && address.family == .ipv6 {
            if setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, size) < 0 { throw .last("setsockopt(IPV6_V6ONLY)", fd: fd) }
        }
        if options.contains(.deferredAccept) && address.family != .unix {
            var seconds: Int32 = 1
            if setsockopt(fd, Int32(IPPROTO_TCP), TCP_DEFER_ACCEPT, &seconds, size) < 0 {
                throw .last("setsockopt(TCP_DEFER_ACCEPT)", fd: fd)
            }
        }
    }

    /// The address the socket is bound to (the port the kernel chose for port 0).
    public var localAddress: SocketAddress? { try? SocketAddress.local(of: fd) }

    /// Sets the accept callback (libevent's `evconnlistener_set_cb`).
    public func setCallback(_ callback: AcceptCallback?) {
        lock.withLock { acceptCallback = callback }
    }

    /// Sets the error callback (libevent's `evconnlistener_set_error_cb`).
    public func setErrorCallback(_ callback: ErrorCallback?) {
        lock.withLock { errorCallback = callback }
    }

    /// Starts accepting (libevent's `evconnlistener_enable`).
    public func enable() throws(EventError) {
        try lock.withLock { () throws(EventError) in
            guard !isFreed else { throw .eventFinalized(call: "ConnectionListener.enable") }
            isEnabled = true
            if !backingOff { try event?.add() }
            if !parked.isEmpty { try event?.activate(.read) }
        }
    }

    /// Stops accepting (libevent's `evconnlistener_disable`). Returns without
    /// waiting for an accept callback that is running; none starts after.
    public func disable() throws(EventError) {
        try lock.withLock { () throws(EventError) in
            isEnabled = false
            try event?.delete()
        }
    }

    public var isAccepting: Bool { lock.withLock { isEnabled && !backingOff } }

    /// Sets what runs once when the listener is freed; false (and not set)
    /// if it already was.
    func setFreeHandler(_ handler: (@Sendable () -> Void)?) -> Bool {
        lock.withLock {
            guard !isFreed else { return false }
            freeHandler = handler
            return true
        }
    }

    /// Stops accepting for good and closes the socket with `.closeOnFree`,
    /// once the listening event can no longer fire (libevent's `evconnlistener_free`).
    public func free() {
        let (event, timer, freed) = lock.withLock { () -> (Event?, Event?, (@Sendable () -> Void)?) in
            guard !isFreed else { return (nil, nil, nil) }
            isFreed = true
            isEnabled = false
            acceptCallback = nil
            errorCallback = nil
            for connection in parked { Glibc.close(connection.fd) }
            parked.removeAll()
            let taken = (self.event, backoffTimer, freeHandler)
            self.event = nil
            backoffTimer = nil
            freeHandler = nil
            return taken
        }
        freed?()
        try? timer?.finalize { _ in }
        let fd = self.fd
        let close = options.contains(.closeOnFree)
        if let event {
            try? event.finalize { _ in if close { Glibc.close(fd) } }
        }
    }

    // MARK: the loop's side

    private func acceptReady() {
        while true {
            // A connection parked by a disable goes first; then the kernel's.
            let next = lock.withLock { () -> (callback: AcceptCallback?, parked: (fd: Int32, peer: SocketAddress)?)? in
                guard isEnabled, !isFreed else { return nil }
                return (acceptCallback, parked.isEmpty ? nil : parked.removeFirst())
            }
            guard let next else { return }
            if let parked = next.parked {
                if let callback = next.callback { callback(self, parked.fd, parked.peer) } else { Glibc.close(parked.fd) }
                continue
            }
            var storage = sockaddr_storage()
            var length = UInt32(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &storage) { se_accept(fd, $0, &length) }
            if client < 0 {
                let error = errno
                if error == EAGAIN || error == EWOULDBLOCK { return }
                if error == EINTR || error == ECONNABORTED { continue }
                reportAndMaybeBackOff(error)
                return
            }
            let peer = withUnsafeBytes(of: storage) { SocketAddress(raw: $0.baseAddress!, length: Int(length)) }
            enum Disposition { case deliver(AcceptCallback), close, keep }
            let disposition = lock.withLock { () -> Disposition in
                backoff = .milliseconds(10)
                if isFreed { return .close }
                // Disabled between the check and the accept: keep the
                // connection for the next enable.
                guard isEnabled else { return .keep }
                // Enabled without a callback: accept and close, as libevent
                // does, rather than leave the socket readable forever.
                guard let acceptCallback else { return .close }
                return .deliver(acceptCallback)
            }
            switch disposition {
            case .deliver(let callback):
                callback(self, client, peer)
            case .close:
                Glibc.close(client)
            case .keep:
                lock.withLock { parked.append((client, peer)) }
                return
            }
        }
    }

    /// Out of descriptors (or another accept error): report it; for
    /// EMFILE/ENFILE/ENOBUFS/ENOMEM stop accepting for the back-off and
    /// try again after it, doubling it each time up to a second.
    private func reportAndMaybeBackOff(_ error: Int32) {
        let callback = lock.withLock { () -> ErrorCallback? in
            guard !isFreed else { return nil }
            if error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM {
                backingOff = true
                try? event?.delete()
                try? backoffTimer?.add(timeout: backoff)
                backoff = min(backoff * 2, Self.maximumBackoff)
            }
            return errorCallback
        }
        callback?(self, error)
    }

    private func backoffEnded() {
        lock.withLock {
            backingOff = false
            if isEnabled && !isFreed { try? event?.add() }
        }
    }
}
