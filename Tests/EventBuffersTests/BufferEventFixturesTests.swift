// Helpers for the BufferEvent and ConnectionListener tests: owned bases, a
// loop runner with a watchdog, raw sockets made without the library, and
// raw senders and readers that run on a test's loop.
import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

/// A value confined to the thread that owns a test's base: the test body
/// and the callbacks the loop runs on that same thread touch it.
final class BEVar<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// The address families a listener or a connection can use here (IPv6 only
/// where the machine has ::1).
enum BEFamily: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case ipv4
    case ipv6
    case unix

    var testDescription: String { rawValue }

    static var available: [BEFamily] { BEKit.ipv6Available ? [.ipv4, .ipv6, .unix] : [.ipv4, .unix] }

    /// An address to bind: port 0 on the loopback, or a fresh Unix path.
    func bindAddress() throws -> SocketAddress {
        switch self {
        case .ipv4: try SocketAddress(ipv4: "127.0.0.1", port: 0)
        case .ipv6: try SocketAddress(ipv6: "::1", port: 0)
        case .unix: try SocketAddress(unixPath: BEKit.uniqueUnixPath())
        }
    }
}

enum BEKit {
    /// An owned base on epoll (no locks, one thread).
    static func ownedBase() throws -> EventBase {
        try ownedEpollBase()
    }

    /// Runs the loop until `done()` holds (checked every 2 ms) or `timeout`
    /// passes, whichever is first: the loop always ends. Returns `done()`.
    @discardableResult
    static func run(
        _ base: EventBase, timeout: Duration = .seconds(3), until done: @escaping @Sendable () -> Bool
    ) throws -> Bool {
        try runLoop(base, timeout: timeout, until: done)
    }

    /// Runs the loop for `duration`, to see that something does not happen.
    static func spin(_ base: EventBase, for duration: Duration) throws {
        try run(base, timeout: duration) { false }
    }

    /// Frees what a test made and lets the loop run their finalizers (which
    /// close descriptors with `.closeOnFree`), then shuts the base down.
    static func finish(_ base: EventBase, _ bufferEvents: [BufferEvent] = [], listeners: [ConnectionListener] = []) {
        for bufferEvent in bufferEvents { bufferEvent.free() }
        for listener in listeners { listener.free() }
        _ = try? base.loop(.nonBlocking)
        try? base.shutdown()
    }

    // MARK: addresses

    static let ipv6Available: Bool = {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        } == 0
    }()

    private static let pathCounter = AtomicCounter()

    /// A Unix socket path no other test uses.
    static func uniqueUnixPath() -> String {
        pathCounter.increment()
        return "/tmp/swev-be-\(getpid())-\(pathCounter.value)-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    static func loopback4(port: UInt16) throws -> SocketAddress { try SocketAddress(ipv4: "127.0.0.1", port: port) }

    /// A TCP port on 127.0.0.1 nothing listens on (bound once, then closed).
    static func closedPort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(withRawAddress(try loopback4(port: 0)) { bind(fd, $0, $1) } == 0)
        return try #require(try SocketAddress.local(of: fd).port)
    }

    /// Calls `body` with `address` as a kernel sockaddr, built from its public parts.
    static func withRawAddress<T>(_ address: SocketAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) throws -> T {
        switch address.family {
        case .ipv4:
            var raw = sockaddr_in()
            raw.sin_family = sa_family_t(AF_INET)
            raw.sin_port = (address.port ?? 0).bigEndian
            try #require(inet_pton(AF_INET, address.host ?? "", &raw.sin_addr) == 1)
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .ipv6:
            var raw = sockaddr_in6()
            raw.sin6_family = sa_family_t(AF_INET6)
            raw.sin6_port = (address.port ?? 0).bigEndian
            try #require(inet_pton(AF_INET6, address.host ?? "", &raw.sin6_addr) == 1)
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        case .unix:
            var raw = sockaddr_un()
            raw.sun_family = sa_family_t(AF_UNIX)
            let path = Array(try #require(address.path).utf8)
            withUnsafeMutableBytes(of: &raw.sun_path) { bytes in
                bytes.copyBytes(from: path)
                bytes[path.count] = 0
            }
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
    }

    static func domain(of address: SocketAddress) -> Int32 {
        switch address.family {
        case .ipv4: AF_INET
        case .ipv6: AF_INET6
        case .unix: AF_UNIX
        }
    }

    // MARK: raw sockets

    /// A blocking connect to `address` with a plain socket; the result is
    /// left non-blocking. Succeeds while the connection waits in the backlog.
    static func connect(to address: SocketAddress) throws -> Int32 {
        let fd = socket(domain(of: address), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        let rc = try withRawAddress(address) { Glibc.connect(fd, $0, $1) }
        let error = errno
        if rc != 0 { close(fd) }
        try #require(rc == 0, "connect to \(address): \(String(cString: strerror(error)))")
        setNonBlocking(fd)
        return fd
    }

    /// The errno of a blocking connect to `address` (0 on success; the socket is closed either way).
    static func connectError(to address: SocketAddress) throws -> Int32 {
        let fd = socket(domain(of: address), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        let rc = try withRawAddress(address) { Glibc.connect(fd, $0, $1) }
        return rc == 0 ? 0 : errno
    }

    /// A listening socket made without the library.
    static func listeningSocket(_ address: SocketAddress, backlog: Int32 = 64) throws -> Int32 {
        let fd = socket(domain(of: address), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        let bound = try withRawAddress(address) { bind(fd, $0, $1) }
        guard bound == 0, listen(fd, backlog) == 0 else {
            close(fd)
            Issue.record("bind/listen \(address): \(String(cString: strerror(errno)))")
            throw BEKitError.setup
        }
        return fd
    }

    /// Two ends of one TCP connection on 127.0.0.1, both non-blocking.
    static func tcpPair() throws -> (Int32, Int32) {
        let listener = try listeningSocket(try loopback4(port: 0), backlog: 1)
        defer { close(listener) }
        let port = try #require(try SocketAddress.local(of: listener).port)
        let client = try connect(to: loopback4(port: port))
        let server = accept(listener, nil, nil)
        if server < 0 { close(client) }
        try #require(server >= 0)
        _ = fcntl(server, F_SETFD, FD_CLOEXEC)
        setNonBlocking(server)
        return (client, server)
    }

    static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    static func setBufferSizes(_ fd: Int32, send: Int32? = nil, receive: Int32? = nil) {
        if var send { _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send, socklen_t(MemoryLayout<Int32>.size)) }
        if var receive { _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive, socklen_t(MemoryLayout<Int32>.size)) }
    }

    /// Makes the next close send a reset instead of a FIN.
    static func setLingerReset(_ fd: Int32) {
        var option = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
    }

    /// Writes all of `bytes` to `fd`, waiting for room up to `timeout`.
    static func sendAll(_ fd: Int32, _ bytes: [UInt8], timeout: Duration = .seconds(3)) throws {
        var offset = 0
        let deadline = now() + timeout
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                offset += n
                continue
            }
            let error = errno
            try #require(n < 0 && (error == EAGAIN || error == EINTR), "send: \(String(cString: strerror(error)))")
            try #require(now() < deadline, "send timed out with \(bytes.count - offset) bytes left")
            var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&descriptor, 1, 10)
        }
    }

    static func sendAll(_ fd: Int32, _ text: String) throws { try sendAll(fd, Array(text.utf8)) }

    /// Whatever `fd` has to read right now (empty at EOF or when nothing waits).
    static func readAvailable(_ fd: Int32) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { return result }
            result += chunk[0..<n]
        }
    }

    /// Reads from `fd` until `count` bytes came, EOF, or `timeout`.
    static func receive(_ fd: Int32, count: Int, timeout: Duration = .seconds(3)) -> [UInt8] {
        var result: [UInt8] = []
        let deadline = now() + timeout
        var chunk = [UInt8](repeating: 0, count: 65536)
        while result.count < count && now() < deadline {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 10) > 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, count - result.count), Int32(MSG_DONTWAIT)) }
            if n == 0 { break }
            if n > 0 { result += chunk[0..<n] }
        }
        return result
    }

    /// Whether `fd` sees end of file (or a reset) within `timeout`.
    static func seesEndOfFile(_ fd: Int32, within timeout: Duration) -> Bool {
        let deadline = now() + timeout
        var chunk = [UInt8](repeating: 0, count: 4096)
        while now() < deadline {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 10) > 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return true }
        }
        return false
    }

    /// Bytes waiting to be read on a socket (FIONREAD).
    static func pendingBytes(_ fd: Int32) -> Int {
        var count: Int32 = 0
        guard ioctl(fd, UInt(FIONREAD), &count) == 0 else { return -1 }
        return Int(count)
    }

    // MARK: descriptors

    /// What a descriptor refers to, to tell it apart from a later descriptor
    /// that reuses the number (other tests run in parallel).
    struct Identity: Equatable {
        let device: UInt64
        let inode: UInt64
    }

    static func identity(_ fd: Int32) -> Identity? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        return Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Whether `fd` is still the descriptor `identity` was taken from.
    static func isOpen(_ fd: Int32, as identity: Identity?) -> Bool {
        fcntl(fd, F_GETFD) >= 0 && BEKit.identity(fd) == identity
    }

    /// A descriptor number no descriptor can have (above the soft limit).
    static func unusedDescriptor() -> Int32 {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return Int32(clamping: min(limit.rlim_cur, 1 << 24)) + 17
    }

    /// CPU time the calling thread has used.
    static func threadCPUTime() -> Duration {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
    }

    // MARK: data

    /// `count` pseudo-random bytes that differ for each `seed`.
    static func pattern(_ count: Int, seed: Int) -> [UInt8] {
        var state = UInt32(truncatingIfNeeded: seed &* 2_654_435_761 &+ 0x9E37_79B9) | 1
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBufferPointer { buffer in
            for index in 0..<count {
                state ^= state << 13
                state ^= state >> 17
                state ^= state << 5
                buffer[index] = UInt8(truncatingIfNeeded: state)
            }
        }
        return bytes
    }

    /// `count` bytes made of a 65521-byte random block repeated (a period
    /// that lines up with no buffer or segment size).
    static func largePattern(_ count: Int) -> [UInt8] {
        let block = pattern(65521, seed: 7)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count { bytes += block.prefix(count - bytes.count) }
        return bytes
    }

    /// Whether two byte arrays are equal (memcmp; a failed expectation then
    /// prints a Boolean, not megabytes).
    static func same(_ got: [UInt8], _ expected: [UInt8]) -> Bool {
        got.count == expected.count && matches(got, expected, at: 0)
    }

    /// Whether `chunk` equals `expected[offset ..< offset + chunk.count]`.
    static func matches(_ chunk: [UInt8], _ expected: [UInt8], at offset: Int) -> Bool {
        guard offset + chunk.count <= expected.count else { return false }
        guard !chunk.isEmpty else { return true }
        return chunk.withUnsafeBytes { got in
            expected.withUnsafeBytes { want in memcmp(got.baseAddress!, want.baseAddress! + offset, chunk.count) == 0 }
        }
    }
}

enum BEKitError: Error {
    case setup
}

/// Writes `data` to a raw non-blocking descriptor from the loop, as fast as
/// the peer takes it.
final class BERawSender: @unchecked Sendable {
    // Confined to the loop thread (the test's thread).
    private let data: [UInt8]
    private var offset = 0
    private var event: Event?

    init(base: EventBase, fd: Int32, data: [UInt8]) throws {
        self.data = data
        BEKit.setNonBlocking(fd)
        event = try Event(base: base, fd: fd, flags: [.write, .persist]) { [weak self] event, _ in
            guard let self else { return }
            let n = self.data.withUnsafeBytes { send(fd, $0.baseAddress! + self.offset, $0.count - self.offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 { self.offset += n }
            if self.offset == self.data.count || (n < 0 && errno != EAGAIN && errno != EINTR) { try? event.delete() }
        }
        try event?.add()
    }

    var sent: Int { offset }
    var isDone: Bool { offset == data.count }

    func stop() {
        try? event?.delete()
        event = nil
    }
}

/// Reads everything a raw descriptor receives from the loop.
final class BERawReader: @unchecked Sendable {
    // Confined to the loop thread (the test's thread).
    private(set) var received: [UInt8] = []
    private(set) var sawEndOfFile = false
    private var event: Event?

    init(base: EventBase, fd: Int32) throws {
        BEKit.setNonBlocking(fd)
        event = try Event(base: base, fd: fd, flags: [.read, .persist]) { [weak self] event, _ in
            guard let self else { return }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                self.received += chunk[0..<n]
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                self.sawEndOfFile = true
                try? event.delete()
            }
        }
        try event?.add()
    }

    func stop() {
        try? event?.delete()
        event = nil
    }
}

/// What a bufferevent's callbacks saw, in order.
final class BERecorder: @unchecked Sendable {
    // Confined to the loop thread (the test's thread).
    enum Entry: Equatable, CustomStringConvertible {
        case read(Int)
        case write(Int)
        case event(BufferEvent.What, Int32)

        var description: String {
            switch self {
            case .read(let count): "read(\(count))"
            case .write(let count): "write(\(count))"
            case .event(let what, let error): "event(\(what), errno \(error))"
            }
        }
    }

    var entries: [Entry] = []
    /// Bytes taken from the input by the read callback (when `drains`).
    var received: [UInt8] = []
    var drains: Bool

    init(drains: Bool = true) { self.drains = drains }

    var reads: Int { entries.filter { if case .read = $0 { true } else { false } }.count }
    var writes: Int { entries.filter { if case .write = $0 { true } else { false } }.count }
    var events: [(BufferEvent.What, Int32)] {
        entries.compactMap { if case .event(let what, let error) = $0 { (what, error) } else { nil } }
    }

    /// Installs callbacks on `bufferEvent` that record into this recorder.
    func attach(to bufferEvent: BufferEvent) {
        bufferEvent.setCallbacks(
            read: { [self] bev in
                entries.append(.read(bev.input.count))
                if drains { received += (try? bev.read(upTo: Int.max)) ?? [] }
            },
            write: { [self] bev in entries.append(.write(bev.output.count)) },
            event: { [self] _, what, error in entries.append(.event(what, error)) })
    }

    var receivedText: String { String(decoding: received, as: UTF8.self) }
}
