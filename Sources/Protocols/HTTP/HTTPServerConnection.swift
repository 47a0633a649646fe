import EventBackends
import EventBuffers
import EventCore
import EventLocking
import Glibc
import Synchronization

/// One request as a handler sees it (libevent's `evhttp_request` on the
/// server side). Answer it once: `respond`, or `startStream` / `sendChunk` /
/// `endStream`, or `respond(file:)`; from the loop or (in a shared base)
/// from any thread, now or later.
public final class HTTPServerRequest: @unchecked Sendable {
    // The stored properties are set by the connection, under its lock,
    // before the handler sees the request, and not changed while anyone
    // else holds it: a request object is reused for the connection's next
    // request only when the connection's reference to it, and its
    // reference to its body, are the only ones (checked with an acquiring
    // fence). `body` is an EventBuffer with its own lock.
    public internal(set) var method: HTTPMethod
    public internal(set) var uri: HTTPURI
    /// The request target as sent.
    public internal(set) var target: String
    public internal(set) var version: HTTPVersion
    public internal(set) var headers: HTTPHeaders
    /// Trailer fields of a chunked body.
    public internal(set) var trailers = HTTPHeaders()
    public internal(set) var body = EventBuffer()
    public let peer: SocketAddress
    /// Strong (a weak reference would put every connection's reference
    /// counting on the runtime's slow path): the connection holds the
    /// request only while it is current, so there is no lasting cycle; a
    /// request kept after its connection closed keeps only the object.
    let connection: HTTPServerConnection

    init(head: HTTPRequestHead, uri: HTTPURI, peer: SocketAddress, connection: HTTPServerConnection) {
        method = head.method
        self.uri = uri
        target = head.target
        version = head.version
        headers = head.headers
        self.peer = peer
        self.connection = connection
    }

    /// Makes a spent request (uniquely held, body empty) the next one.
    func reuse(head: HTTPRequestHead, uri: HTTPURI) {
        handlerTask = nil
        method = head.method
        self.uri = uri
        target = head.target
        version = head.version
        headers = head.headers
        if !trailers.fields.isEmpty { trailers = HTTPHeaders() }
    }

    /// The whole response (libevent's `evhttp_send_reply`). Content-Length,
    /// Date and Connection are added unless `headers` has them.
    public func respond(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), body: some Collection<UInt8>) {
        connection.respond(self, status, headers, bytes: body)
    }

    public func respond(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), body: String = "") {
        connection.respond(self, status, headers, bytes: body.utf8)
    }

    /// The response with a buffer as its body (moved, not copied).
    public func respond(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), buffer: EventBuffer) {
        connection.respond(self, status, headers, buffer)
    }

    /// A file range as the body, sent with sendfile(2) on plain sockets.
    public func respond(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), file: FileSegment) {
        let buffer = EventBuffer()
        do {
            try buffer.add(file: file)
        } catch {
            connection.respond(self, .internalServerError, HTTPHeaders(), EventBuffer())
            return
        }
        connection.respond(self, status, headers, buffer)
    }

    /// Starts a streamed response: chunked on HTTP/1.1, until close on 1.0
    /// (libevent's `evhttp_send_reply_start`).
    public func startStream(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders()) {
        connection.startStream(self, status, headers)
    }

    /// One chunk (libevent's `evhttp_send_reply_chunk`); empty chunks are skipped.
    public func sendChunk(_ bytes: some Collection<UInt8>) {
        connection.sendChunk(self, Array(bytes))
    }

    public func sendChunk(_ text: String) { sendChunk(Array(text.utf8)) }

    /// Ends a streamed response (libevent's `evhttp_send_reply_end`).
    public func endStream() { connection.endStream(self) }

    /// Whether the connection this request came on is gone.
    public var isConnectionClosed: Bool { connection.isClosed }

    /// The async handler's task, cancelled if the connection closes before
    /// the request is answered. Guarded by the connection's lock.
    var handlerTask: Task<Void, Never>?

    /// Cancels `task` if the connection closes before this request is
    /// answered (at once if it already has).
    func cancelOnConnectionClose(_ task: Task<Void, Never>) {
        let closed = connection.lock.withLock { () -> Bool in
            if connection.isClosedLocked { return true }
            handlerTask = task
            return false
        }
        if closed { task.cancel() }
    }

    func connectionClosed() {
        let task = connection.lock.withLock { () -> Task<Void, Never>? in
            defer { handlerTask = nil }
            return handlerTask
        }
        task?.cancel()
    }
}

/// One server connection's state machine; guarded by `lock`.
final class HTTPServerConnection: @unchecked Sendable {
    // Confinement: every `var` is guarded by `lock` (a recursive lock from
    // the base's provider). Lock order: this lock, then the bufferevent's.
    enum State {
        case readingHead
        case readingBody(HTTPServerRequest, HTTPBodyFraming, remaining: Int)
        case handling(HTTPServerRequest)
        case streaming(HTTPServerRequest, chunked: Bool)
        /// Output is being flushed before closing.
        case closing
        /// After an error: reading and discarding until the peer closes or time runs out.
        case lingering
        case closed
    }

    unowned let server: HTTPServer
    // Copies of the server's constants, so the hot path does not go through
    // the unowned reference (an unowned load is an atomic operation, and a
    // slow one on an object that also has weak references).
    let configuration: HTTPServer.Configuration
    let dateCache: HTTPDateCache
    let base: EventBase
    let bufferEvent: BufferEvent
    let peer: SocketAddress
    let lock: any EventLock
    private var state: State = .readingHead
    private var decoder = ChunkedDecoder()
    private var requestsServed = 0
    private var headerTimer: Event?
    private var lingerTimer: Event?
    private var kick: Event?
    private var closeAfterResponse = false
    /// When the current request head must be complete (monotonic ns); the
    /// header timer is armed once and re-armed only when it fires early.
    private var headDeadline: UInt64 = 0
    /// The read timeout the bufferevent has now (set only on change).
    private var readTimeoutSet: Duration?? = .none
    /// The read timeout wanted; while a request is dispatched from the read
    /// callback, changes wait until the handler returns, so a reply given
    /// at once (handling → reading the next head) changes nothing.
    private var readTimeoutWanted: Duration? = nil
    private var dispatching = false
    /// The response head being written (capacity kept between requests).
    private var scratch: [UInt8] = []
    /// The buffered start of the input while a request head is parsed.
    private var headBytes: [UInt8] = []
    /// The last answered request, reused for the next if nobody kept it.
    private var spare: HTTPServerRequest?

    init(server: HTTPServer, bufferEvent: BufferEvent, peer: SocketAddress) {
        self.server = server
        self.bufferEvent = bufferEvent
        self.peer = peer
        configuration = server.configuration
        dateCache = server.dateCache
        base = server.base
        lock = base.lockProvider.makeLock(.recursive)
    }

    var isClosed: Bool { lock.withLock { isClosedLocked } }

    /// Whether the connection is closed; the lock is held.
    var isClosedLocked: Bool { if case .closed = state { true } else { false } }

    func start() {
        bufferEvent.setCallbacks(
            // Strong captures: the server holds the connection until close(),
            // which frees the bufferevent (dropping these) and finalizes the
            // events below; weak ones would slow every retain and release.
            read: { [self] _ in processInput() },
            write: { [self] _ in outputDrained() },
            event: { [self] _, what, _ in transportEvent(what) })
        // Input waiting while a request is handled stays bounded.
        bufferEvent.setWatermark(.read, low: 0, high: configuration.limits.maxHeaderBytes + 65_536)
        setReadTimeout(configuration.readTimeout)
        headDeadline = Self.monotonicNanoseconds() + Self.nanoseconds(configuration.headerTimeout)
        headerTimer = try? Event(base: base, fd: -1, flags: [.finalize]) { [self] _, _ in
            headerTimedOut()
        }
        kick = try? Event(base: base, fd: -1, flags: [.finalize]) { [self] _, _ in
            processInput()
        }
        try? headerTimer?.add(timeout: configuration.headerTimeout)
        try? bufferEvent.enable(.read)
    }

    // MARK: reading requests (on the loop)

    func processInput() {
        var dispatch: HTTPServerRequest?
        lock.withLock {
            dispatching = true
            do throws(HTTPParseError) {
                dispatch = try advance()
            } catch {
                fail(error)
            }
            if dispatch == nil { endDispatching() }
        }
        guard let request = dispatch else { return }
        defer { lock.withLock { endDispatching() } }
        if !configuration.allowedMethods.contains(request.method) {
            request.respond(.notImplemented, headers: HTTPHeaders([("Connection", "close")]), body: "method not implemented\n")
            return
        }
        if let box = server.handler(for: request) {
            box.handler(request)
        } else {
            request.respond(.notFound, body: "not found\n")
        }
    }

    /// Moves the state machine as far as the buffered input allows; a
    /// request whose body is complete is returned for dispatch.
    private func advance() throws(HTTPParseError) -> HTTPServerRequest? {
        let input = bufferEvent.input
        let limits = configuration.limits
        while true {
            switch state {
            case .readingHead:
                guard input.count > 0 else { return nil }
                let available = min(input.count, limits.maxHeaderBytes + 1)
                // Copied into an array kept from request to request (no allocation once grown).
                headBytes.removeAll(keepingCapacity: true)
                headBytes.append(contentsOf: repeatElement(0, count: available))
                let copied = headBytes.withUnsafeMutableBytes { (try? input.copyOut(into: $0)) ?? 0 }
                if copied < available { headBytes.removeLast(available - copied) }
                let bytes = headBytes
                guard let end = try HTTPSyntax.headerEnd(bytes, limit: limits.maxHeaderBytes) else {
                    if bytes.count > limits.maxHeaderBytes {
                        throw HTTPParseError(.headersTooLarge, "header section over \(limits.maxHeaderBytes) bytes")
                    }
                    return nil
                }
                try? input.drain(end)
                // The last request's object and header storage, when nobody else holds them.
                let recycled = takeSpare()
                var headers = HTTPHeaders()
                if let recycled {
                    swap(&headers, &recycled.headers)
                    headers.removeAll()
                }
                let head = try HTTPSyntax.requestHead(
                    bytes[0..<(end - 4)].drop { $0 == 0x0D || $0 == 0x0A }, limits: limits, headers: &headers)
                let request = try makeRequest(head, reusing: recycled)
                let framing = try HTTPSyntax.requestFraming(head, limits: limits)
                headDeadline = .max
                if head.version == .http11, head.headers.hasToken("Expect", "100-continue"), framing != .none {
                    try? bufferEvent.write("HTTP/1.1 100 Continue\r\n\r\n")
                }
                decoder = ChunkedDecoder()
                switch framing {
                case .none:
                    enterHandling(request)
                    return request
                case .length(let length):
                    setReadTimeout(configuration.readTimeout)
                    state = .readingBody(request, framing, remaining: length)
                default:
                    setReadTimeout(configuration.readTimeout)
                    state = .readingBody(request, .chunked, remaining: 0)
                }
            case .readingBody(let request, let framing, let remaining):
                if case .length = framing {
                    let moved = (try? input.move(upTo: remaining, into: request.body)) ?? 0
                    if moved == remaining {
                        enterHandling(request)
                        return request
                    }
                    state = .readingBody(request, framing, remaining: remaining - moved)
                    return nil
                }
                // Chunked: feed what is buffered to the decoder.
                while !decoder.isDone, input.count > 0 {
                    // Contiguous bytes (a chunk line may straddle two segments).
                    guard let piece = try? input.pullUp(min(input.count, 65_536)), piece.count > 0 else { break }
                    let used = try decoder.consume(piece, limits: limits) { bytes in try? request.body.add(bytes) }
                    try? input.drain(used)
                    // Nothing consumed: the decoder needs more than is buffered.
                    if used == 0 { break }
                }
                guard decoder.isDone else { return nil }
                request.trailers = decoder.trailers
                enterHandling(request)
                return request
            case .handling, .streaming, .closing, .closed:
                return nil
            case .lingering:
                try? input.drain(input.count)
                return nil
            }
        }
    }

    /// While the handler works (and while a reply streams) no read timeout
    /// applies: a slow handler or a quiet long-poll client is not an idle one.
    private func enterHandling(_ request: HTTPServerRequest) {
        state = .handling(request)
        setReadTimeout(nil)
    }

    private func makeRequest(_ head: HTTPRequestHead, reusing recycled: HTTPServerRequest?) throws(HTTPParseError) -> HTTPServerRequest {
        let hosts = head.headers.count(of: "Host")
        if head.version == .http11 {
            guard hosts == 1 else {
                throw HTTPParseError(.badRequest, hosts == 0 ? "HTTP/1.1 request without Host" : "repeated Host")
            }
        } else if hosts > 1 {
            throw HTTPParseError(.badRequest, "repeated Host")
        }
        let uri: HTTPURI
        do {
            if head.target == "*" && head.method == .options {
                uri = HTTPURI()
            } else {
                uri = try HTTPURI(head.target)
                guard head.target.hasPrefix("/") || uri.scheme != nil else {
                    throw HTTPParseError(.badRequest, "request target is neither a path nor an absolute URI")
                }
            }
        } catch let error as HTTPParseError {
            throw error
        } catch {
            throw HTTPParseError(.badRequest, "\(error)")
        }
        if let recycled {
            recycled.reuse(head: head, uri: uri)
            return recycled
        }
        return HTTPServerRequest(head: head, uri: uri, peer: peer, connection: self)
    }

    /// The last answered request, if the connection holds the only
    /// reference to it and to its (empty, callback-free) body.
    private func takeSpare() -> HTTPServerRequest? {
        defer { spare = nil }
        guard isKnownUniquelyReferenced(&spare), let request = spare,
            isKnownUniquelyReferenced(&request.body), request.body.count == 0, !request.body.hasCallbacks
        else { return nil }
        // Whatever another thread did with the request before dropping it
        // happens before it is reused.
        atomicMemoryFence(ordering: .acquiring)
        return request
    }

    // MARK: responding (any thread)

    private func isCurrent(_ request: HTTPServerRequest) -> Bool {
        switch state {
        case .handling(let current), .streaming(let current, _): current === request
        default: false
        }
    }

    /// Writes the status line and header section for `request` into
    /// `scratch` (reused from request to request).
    private func writeHead(_ request: HTTPServerRequest, _ status: HTTPStatus, _ headers: HTTPHeaders, bodyLength: Int?, chunked: Bool) {
        let keepAlive = wantsKeepAlive(request, headers) && (bodyLength != nil || chunked)
        closeAfterResponse = !keepAlive
        var additions = HTTPResponseHead.Additions()
        var hasDate = false, hasServer = false, hasLength = false
        for field in headers.fields {
            let name = field.name.utf8
            if name.count == 4, HTTPHeaders.same(field.name, "Date") { hasDate = true }
            else if name.count == 6, HTTPHeaders.same(field.name, "Server") { hasServer = true }
            else if name.count == 14, HTTPHeaders.same(field.name, "Content-Length") { hasLength = true }
        }
        if !hasDate { additions.date = dateCache.now }
        if let name = configuration.serverHeader, !hasServer { additions.server = name }
        let bodyless = status.code < 200 || status.code == 204 || status.code == 304
        if chunked {
            additions.chunked = true
        } else if let bodyLength, !bodyless, !hasLength {
            additions.contentLength = bodyLength
        }
        if !keepAlive {
            additions.connection = "close"
        } else if request.version == .http10 {
            additions.connection = "keep-alive"
        }
        HTTPResponseHead.write(into: &scratch, status: status, headers: headers, additions)
    }

    private func wantsKeepAlive(_ request: HTTPServerRequest, _ headers: HTTPHeaders) -> Bool {
        if headers.hasToken("Connection", "close") || request.headers.hasToken("Connection", "close") { return false }
        if request.version == .http10 { return request.headers.hasToken("Connection", "keep-alive") }
        return true
    }

    func respond(_ request: HTTPServerRequest, _ status: HTTPStatus, _ headers: HTTPHeaders, _ body: EventBuffer) {
        lock.withLock {
            guard case .handling(let current) = state, current === request else { return }
            writeHead(request, status, headers, bodyLength: body.count, chunked: false)
            // Head and body go out together in one gathered write (the
            // socket writes output added in a callback after it returns).
            try? bufferEvent.write(scratch)
            if request.method != .head && !(status.code < 200 || status.code == 204 || status.code == 304) {
                try? bufferEvent.write(buffer: body)
            }
            responseDone(request)
        }
    }

    /// The same with the body as bytes, copied once into the output.
    func respond(_ request: HTTPServerRequest, _ status: HTTPStatus, _ headers: HTTPHeaders, bytes body: some Collection<UInt8>) {
        lock.withLock {
            guard case .handling(let current) = state, current === request else { return }
            writeHead(request, status, headers, bodyLength: body.count, chunked: false)
            try? bufferEvent.write(scratch)
            if request.method != .head && !(status.code < 200 || status.code == 204 || status.code == 304) {
                try? bufferEvent.write(body)
            }
            responseDone(request)
        }
    }

    func startStream(_ request: HTTPServerRequest, _ status: HTTPStatus, _ headers: HTTPHeaders) {
        lock.withLock {
            guard case .handling(let current) = state, current === request else { return }
            let chunked = request.version == .http11 && request.method != .head
            writeHead(request, status, headers, bodyLength: nil, chunked: chunked)
            try? bufferEvent.write(scratch)
            state = .streaming(request, chunked: chunked)
        }
    }

    func sendChunk(_ request: HTTPServerRequest, _ bytes: [UInt8]) {
        lock.withLock {
            guard case .streaming(let current, let chunked) = state, current === request, !bytes.isEmpty else { return }
            if request.method == .head { return }
            if chunked {
                let chunk = EventBuffer()
                try? chunk.add(String(bytes.count, radix: 16) + "\r\n")
                try? chunk.add(bytes)
                try? chunk.add("\r\n")
                try? bufferEvent.write(buffer: chunk)
            } else {
                try? bufferEvent.write(bytes)
            }
        }
    }

    func endStream(_ request: HTTPServerRequest) {
        lock.withLock {
            guard case .streaming(let current, let chunked) = state, current === request else { return }
            if chunked { try? bufferEvent.write("0\r\n\r\n") }
            responseDone(request)
        }
    }

    /// After a complete response: close once written, or go on with the
    /// next (possibly already buffered, pipelined) request.
    private func responseDone(_ request: HTTPServerRequest) {
        requestsServed += 1
        spare = request
        if closeAfterResponse {
            state = .closing
            if bufferEvent.output.count == 0 { finishClosing() }
            return
        }
        state = .readingHead
        // Between requests the idle timeout applies; the next head must be
        // complete within idle + header time (the header timer checks).
        setReadTimeout(configuration.idleTimeout)
        headDeadline = Self.monotonicNanoseconds()
            + Self.nanoseconds(configuration.idleTimeout + configuration.headerTimeout)
        if bufferEvent.input.count > 0 { try? kick?.activate() }
    }

    // MARK: errors, closing

    /// A request that cannot be served: its status with Connection: close,
    /// then a lingering close.
    private func fail(_ error: HTTPParseError) {
        switch state {
        case .readingHead, .readingBody: break
        default: return
        }
        let body = "\(error.status.code) \(error.status.reason): \(error.reason)\n"
        var text = "HTTP/1.1 \(error.status.code) \(error.status.reason)\r\n"
        text += "Date: \(dateCache.now)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        try? bufferEvent.write(text + body)
        closeAfterResponse = true
        state = .closing
        try? bufferEvent.input.drain(bufferEvent.input.count)
    }

    private func outputDrained() {
        lock.withLock {
            // A callback from before the last bytes were added may arrive late: check.
            if case .closing = state, bufferEvent.output.count == 0 { finishClosing() }
        }
    }

    /// Everything written: stop sending, keep reading (and discarding) for a
    /// while so the client reads our response rather than a reset.
    private func finishClosing() {
        let fd = bufferEvent.fd
        // TLS closes with close_notify on free; only plain sockets linger.
        guard fd >= 0, bufferEvent is SocketBufferEvent else {
            close()
            return
        }
        state = .lingering
        try? headerTimer?.delete()
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
        try? bufferEvent.input.drain(bufferEvent.input.count)
        lingerTimer = try? Event(base: base, fd: -1, flags: [.finalize]) { [self] _, _ in close() }
        try? lingerTimer?.add(timeout: configuration.lingerTime)
    }

    private func transportEvent(_ what: BufferEvent.What) {
        if what.contains(.connected) && what.subtracting(.connected).isEmpty { return }
        close()
    }

    private func headerTimedOut() {
        lock.withLock {
            guard case .readingHead = state else {
                try? headerTimer?.add(timeout: configuration.headerTimeout)
                return
            }
            let now = Self.monotonicNanoseconds()
            if now < headDeadline {
                // A later request's deadline: wait for it (at most one header timeout at a time).
                let left = min(headDeadline - now, Self.nanoseconds(configuration.headerTimeout))
                try? headerTimer?.add(timeout: .nanoseconds(Int64(left)))
                return
            }
            // Mid-request: 408; between requests: close quietly.
            if bufferEvent.input.count > 0 {
                fail(HTTPParseError(.requestTimeout, "the request head did not arrive in time"))
            } else {
                close()
            }
        }
    }

    private func setReadTimeout(_ timeout: Duration?) {
        readTimeoutWanted = timeout
        if !dispatching { applyReadTimeout() }
    }

    private func endDispatching() {
        dispatching = false
        applyReadTimeout()
    }

    private func applyReadTimeout() {
        let timeout = readTimeoutWanted
        guard readTimeoutSet != timeout, !isClosedLocked else { return }
        readTimeoutSet = timeout
        try? bufferEvent.setTimeouts(read: timeout, write: configuration.writeTimeout)
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        UInt64(duration.components.seconds) * 1_000_000_000 + UInt64(duration.components.attoseconds / 1_000_000_000)
    }

    func close() {
        var unanswered: HTTPServerRequest? = nil
        let wasOpen = lock.withLock { () -> Bool in
            switch state {
            case .closed: return false
            case .handling(let request), .streaming(let request, _): unanswered = request
            default: break
            }
            state = .closed
            try? headerTimer?.finalize { _ in }
            try? lingerTimer?.finalize { _ in }
            try? kick?.finalize { _ in }
            headerTimer = nil
            lingerTimer = nil
            kick = nil
            spare = nil
            return true
        }
        guard wasOpen else { return }
        bufferEvent.free()
        server.connectionClosed(self)
        // Whoever still works on a request whose connection is gone (an
        // async handler's task) is told, outside every lock.
        unanswered?.connectionClosed()
    }
}
