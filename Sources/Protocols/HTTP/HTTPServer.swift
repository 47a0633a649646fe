import CEventShims
import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventSSL
import Glibc

/// An HTTP/1.x server (libevent's `evhttp`): routes by exact path, a
/// generic handler, virtual hosts; keep-alive, pipelining, chunked bodies
/// both ways, 100-continue; strict framing; timeouts and limits on by
/// default. Handlers run on the loop; a request may be answered later and
/// from any thread (in a shared base).
public final class HTTPServer: @unchecked Sendable {
    // Confinement: every `var` is guarded by `lock` (the base's provider; a
    // no-op lock in an owned base).

    public typealias Handler = @Sendable (HTTPServerRequest) -> Void

    public struct Configuration: Sendable {
        public var limits = HTTPLimits()
        /// No progress while reading a request, or writing a response, for
        /// this long closes the connection.
        public var readTimeout: Duration = .seconds(30)
        public var writeTimeout: Duration = .seconds(30)
        /// The whole header section must arrive within this (slowloris).
        public var headerTimeout: Duration = .seconds(20)
        /// A kept-alive connection idle this long is closed.
        public var idleTimeout: Duration = .seconds(60)
        /// Connections beyond this get 503 and are closed.
        public var maxConnections = 10_000
        /// Methods served; others get 501 (default: every method libevent knows).
        public var allowedMethods = Set(HTTPMethod.libeventMethods)
        /// How long a connection closed after an error keeps reading (and
        /// discarding) so the client sees the response, not a reset.
        public var lingerTime: Duration = .seconds(2)
        /// Bufferevents run their callbacks deferred (no effect on behaviour).
        public var serverHeader: String? = "SwiftEvent"
        public init() {}
    }

    public let base: EventBase
    public let configuration: Configuration
    let lock: any EventLock
    // Handlers are kept boxed: a closure taken out of a dictionary (stored
    // at its most general abstraction) is re-wrapped, an allocation a request.
    private var routes: [String: HTTPHandlerBox] = [:]
    private var genericHandler: HTTPHandlerBox?
    private var virtualHosts: [(pattern: String, server: HTTPServer)] = []
    private var aliases: [String] = []
    private var listeners: [ConnectionListener] = []
    var connections: [ObjectIdentifier: HTTPServerConnection] = [:]
    private var isFreed = false
    let dateCache = HTTPDateCache()

    public init(base: EventBase, configuration: Configuration = Configuration()) {
        self.base = base
        self.configuration = configuration
        lock = base.lockProvider.makeLock(.recursive)
    }

    // MARK: listening

    /// Listens on `address` (IPv4, IPv6 or a Unix path); with `tls`, HTTPS.
    /// Returns the bound address (the port the kernel chose for port 0).
    @discardableResult
    public func bind(_ address: SocketAddress, tls: SSLContext? = nil, reusePort: Bool = false) throws -> SocketAddress {
        var options: ConnectionListener.Options = [.reuseAddress, .closeOnFree]
        if reusePort { options.insert(.reusePort) }
        let listener = try ConnectionListener(base: base, address: address, options: options) { [weak self] _, fd, peer in
            guard let self else {
                close(fd)
                return
            }
            self.accept(fd, peer: peer, tls: tls)
        }
        lock.withLock { listeners.append(listener) }
        return listener.localAddress ?? address
    }

    /// Serves connections a listener the caller made accepts (libevent's `evhttp_bind_listener`).
    public func adopt(listeningSocket fd: Int32, tls: SSLContext? = nil) throws {
        let listener = try ConnectionListener(base: base, fd: fd, options: [.closeOnFree]) { [weak self] _, fd, peer in
            guard let self else {
                close(fd)
                return
            }
            self.accept(fd, peer: peer, tls: tls)
        }
        lock.withLock { listeners.append(listener) }
    }

    /// The addresses listened on.
    public var boundAddresses: [SocketAddress] { lock.withLock { listeners.compactMap(\.localAddress) } }

    // MARK: routing

    /// Handles requests for exactly `path` (libevent's `evhttp_set_cb`).
    public func route(_ path: String, _ handler: @escaping Handler) {
        lock.withLock { routes[path] = HTTPHandlerBox(handler) }
    }

    public func removeRoute(_ path: String) { lock.withLock { routes[path] = nil } }

    /// Handles requests no route matches (libevent's `evhttp_set_gencb`); without one, 404.
    public func setGenericHandler(_ handler: Handler?) { lock.withLock { genericHandler = handler.map(HTTPHandlerBox.init) } }

    /// Requests whose Host matches `pattern` ("*" matches any run of
    /// characters, as libevent's) go to `server`'s routes (libevent's `evhttp_add_virtual_host`).
    public func addVirtualHost(_ pattern: String, _ server: HTTPServer) {
        lock.withLock { virtualHosts.append((pattern.lowercased(), server)) }
    }

    /// Another name this server (as a virtual host) answers to (libevent's `evhttp_add_server_alias`).
    public func addAlias(_ name: String) { lock.withLock { aliases.append(name.lowercased()) } }

    /// The handler for a request: virtual host first, then exact route, then generic.
    func handler(for request: HTTPServerRequest) -> HTTPHandlerBox? {
        // lock/unlock rather than withLock: a handler returned through the
        // generic withLock would be re-abstracted (two allocations a request).
        lock.lock(at: CallSite())
        var virtualHost: HTTPServer? = nil
        if !virtualHosts.isEmpty, let host = request.headers["Host"].map(Self.hostWithoutPort)?.lowercased() {
            for (pattern, server) in virtualHosts
            where Self.matches(pattern, host) || server.lock.withLock({ server.aliases.contains { Self.matches($0, host) } }) {
                virtualHost = server
                break
            }
        }
        let server = virtualHost ?? self
        if server !== self {
            lock.unlock(at: CallSite())
            server.lock.lock(at: CallSite())
        }
        // No virtual host: this server's routes, under the same lock.
        let handler = server.routes[request.uri.path] ?? server.genericHandler
        server.lock.unlock(at: CallSite())
        return handler
    }

    static func hostWithoutPort(_ host: String) -> String {
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") { return String(host[...close]) }
        if let colon = host.lastIndex(of: ":") { return String(host[..<colon]) }
        return host
    }

    /// Glob match with "*" (and "?"), as libevent's `prefix_suffix_match`.
    static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.utf8), t = Array(text.utf8)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == t[ti]) {
                pi += 1
                ti += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi
                mark = ti
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    // MARK: connections

    private func accept(_ fd: Int32, peer: SocketAddress, tls: SSLContext?) {
        let over = lock.withLock { isFreed || connections.count >= configuration.maxConnections }
        if over {
            // Too many: a short 503 straight on the socket, then close.
            let reply = Array("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
            _ = reply.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            close(fd)
            return
        }
        // Responses are written whole; small ones must not wait for an ACK (Nagle).
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        let bufferEvent: BufferEvent
        do {
            if let tls {
                bufferEvent = try SSLBufferEvent(base: base, socket: fd, context: tls, options: [.closeOnFree])
            } else {
                bufferEvent = try SocketBufferEvent(base: base, fd: fd, options: [.closeOnFree])
            }
        } catch {
            close(fd)
            return
        }
        let connection = HTTPServerConnection(server: self, bufferEvent: bufferEvent, peer: peer)
        lock.withLock { connections[ObjectIdentifier(connection)] = connection }
        connection.start()
    }

    func connectionClosed(_ connection: HTTPServerConnection) {
        lock.withLock { _ = connections.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    /// Open connections.
    public var connectionCount: Int { lock.withLock { connections.count } }

    /// Stops listening and closes every connection (libevent's `evhttp_free`).
    public func free() {
        let (listeners, connections) = lock.withLock { () -> ([ConnectionListener], [HTTPServerConnection]) in
            isFreed = true
            let all = (self.listeners, Array(self.connections.values))
            self.listeners = []
            self.connections = [:]
            return all
        }
        for listener in listeners { listener.free() }
        for connection in connections { connection.close() }
    }
}

/// The Date header's value, recomputed at most once a second.
/// A handler in a box (see `routes`); immutable.
final class HTTPHandlerBox: Sendable {
    let handler: HTTPServer.Handler
    init(_ handler: @escaping HTTPServer.Handler) { self.handler = handler }
}

final class HTTPDateCache: @unchecked Sendable {
    // `second` and `text` are guarded by `lock`.
    private let lock = PthreadMutexLock()
    private var second = -1
    private var text = ""

    var now: String {
        var clock = timespec()
        clock_gettime(CLOCK_REALTIME, &clock)
        return lock.withLock {
            if clock.tv_sec != second {
                second = clock.tv_sec
                text = Self.format(time_t(clock.tv_sec))
            }
            return text
        }
    }

    /// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
    static func format(_ time: time_t) -> String {
        var seconds = time
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
