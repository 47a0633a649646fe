import EventBackends
import EventBuffers
import EventCore
import EventLocking
import Glibc

/// One request as a handler sees it (libevent's `evhttp_request` on the
/// server side). Answer it once: `respond`, or `startStream` / `sendChunk` /
/// `endStream`, or `respond(file:)`; from the loop or (in a shared base)
/// from any thread, now or later.
public final class HTTPServerRequest: @unchecked Sendable {
    // The stored properties are set before the handler sees the request;
    // `body` is an EventBuffer with its own lock; the rest is immutable.
    public let method: HTTPMethod
    public let uri: HTTPURI
    /// The request target as sent.
    public let target: String
    public let version: HTTPVersion
    public let headers: HTTPHeaders
    /// Trailer fields of a chunked body.
    public internal(set) var trailers = HTTPHeaders()
    public let body = EventBuffer()
    public let peer: SocketAddress
    weak var connection: HTTPServerConnection?

    init(head: HTTPRequestHead, uri: HTTPURI, peer: SocketAddress, connection: HTTPServerConnection) {
        method = head.method
        self.uri = uri
        target = head.target
        version = head.version
        headers = head.headers
        self.peer = peer
        self.connection = connection
    }

    /// The whole response (libevent's `evhttp_send_reply`). Content-Length,
    /// Date and Connection are added unless `headers` has them.
    public func respond(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), body: some Collection<UInt8>) {
        let buffer = EventBuffer()
        try? buffer.add(body)
        connection?.respond(self, status, headers, buffer)
    }

    public func respond(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), body: String = "") {
        respond(status, headers: headers, body: Array(body.utf8))
    }

    /// The response with a buffer as its body (moved, not copied).
    public func respond(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), buffer: EventBuffer) {
        connection?.respond(self, status, headers, buffer)
    }

    /// A file range as the body, sent with sendfile(2) on plain sockets.
    public func respond(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), file: FileSegment) {
        let buffer = EventBuffer()
        do {
            try buffer.add(file: file)
        } catch {
            connection?.respond(self, .internalServerError, HTTPHeaders(), EventBuffer())
            return
        }
        connection?.respond(self, status, headers, buffer)
    }

    /// Starts a streamed response: chunked on HTTP/1.1, until close on 1.0
    /// (libevent's `evhttp_send_reply_start`).
    public func startStream(_ status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders()) {
        connection?.startStream(self, status, headers)
    }

    /// One chunk (libevent's `evhttp_send_reply_chunk`); empty chunks are skipped.
    public func sendChunk(_ bytes: some Collection<UInt8>) {
        connection?.sendChunk(self, Array(bytes))
    }

    public func sendChunk(_ text: String) { sendChunk(Array(text.utf8)) }

    /// Ends a streamed response (libevent's `evhttp_send_reply_end`).
    public func endStream() { connection?.endStream(self) }

    /// Whether the connection this request came on is gone.
    public var isConnectionClosed: Bool { connection?.isClosed ?? true }
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

    init(server: HTTPServer, bufferEvent: BufferEvent, peer: SocketAddress) {
        self.server = server
        self.bufferEvent = bufferEvent
        self.peer = peer
        lock = server.base.lockProvider.makeLock(.recursive)
    }

    var isClosed: Bool { lock.withLock { if case .closed = state { true } else { false } } }

    func start() {
        let configuration = server.configuration
        bufferEvent.setCallbacks(
            read: { [weak self] _ in self?.processInput() },
            write: { [weak self] _ in self?.outputDrained() },
            event: { [weak self] _, what, _ in self?.transportEvent(what) })
        // Input waiting while a request is handled stays bounded.
        bufferEvent.setWatermark(.read, low: 0, high: configuration.limits.maxHeaderBytes + 65_536)
        setReadTimeout(configuration.readTimeout)
        headDeadline = Self.monotonicNanoseconds() + Self.nanoseconds(configuration.headerTimeout)
        headerTimer = try? Event(base: server.base, fd: -1, flags: [.finalize]) { [weak self] _, _ in
            self?.headerTimedOut()
        }
        kick = try? Event(base: server.base, fd: -1, flags: [.finalize]) { [weak self] _, _ in
            self?.processInput()
        }
        try? headerTimer?.add(timeout: configuration.headerTimeout)
        try? bufferEvent.enable(.read)
    }

    // MARK: reading requests (on the loop)

    func processInput() {
        var dispatch: HTTPServerRequest?
        lock.withLock {
            do throws(HTTPParseError) {
                dispatch = try advance()
            } catch {
                fail(error)
            }
        }
        guard let request = dispatch else { return }
        if !server.configuration.allowedMethods.contains(request.method) {
            request.respond(.notImplemented, headers: HTTPHeaders([("Connection", "close")]), body: "method not implemented\n")
            return
        }
        if let handler = server.handler(for: request) {
            handler(request)
        } else {
            request.respond(.notFound, body: "not found\n")
        }
    }

    /// Moves the state machine as far as the buffered input allows; a
    /// request whose body is complete is returned for dispatch.
    private func advance() throws(HTTPParseError) -> HTTPServerRequest? {
        let input = bufferEvent.input
        let limits = server.configuration.limits
        while true {
            switch state {
            case .readingHead:
                guard input.count > 0 else { return nil }
                let available = min(input.count, limits.maxHeaderBytes + 1)
                let bytes = (try? input.copyOut(count: available)) ?? []
                guard let end = try HTTPSyntax.headerEnd(bytes, limit: limits.maxHeaderBytes) else {
                    if bytes.count > limits.maxHeaderBytes {
                        throw HTTPParseError(.headersTooLarge, "header section over \(limits.maxHeaderBytes) bytes")
                    }
                    return nil
                }
                try? input.drain(end)
                let head = try HTTPSyntax.requestHead(bytes[0..<(end - 4)].drop { $0 == 0x0D || $0 == 0x0A }, limits: limits)
                let request = try makeRequest(head)
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
                    setReadTimeout(server.configuration.readTimeout)
                    state = .readingBody(request, framing, remaining: length)
                default:
                    setReadTimeout(server.configuration.readTimeout)
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

    private func makeRequest(_ head: HTTPRequestHead) throws(HTTPParseError) -> HTTPServerRequest {
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
        return HTTPServerRequest(head: head, uri: uri, peer: peer, connection: self)
    }

    // MARK: responding (any thread)

    private func isCurrent(_ request: HTTPServerRequest) -> Bool {
        switch state {
        case .handling(let current), .streaming(let current, _): current === request
        default: false
        }
    }

    /// The status line and header section for `request`.
    private func head(_ request: HTTPServerRequest, _ status: HTTPStatus, _ headers: HTTPHeaders, bodyLength: Int?, chunked: Bool) -> String {
        var headers = headers
        let keepAlive = wantsKeepAlive(request, headers) && (bodyLength != nil || chunked)
        closeAfterResponse = !keepAlive
        if !headers.contains("Date") { headers.add("Date", server.dateCache.now) }
        if let name = server.configuration.serverHeader, !headers.contains("Server") { headers.add("Server", name) }
        let bodyless = status.code < 200 || status.code == 204 || status.code == 304
        if chunked {
            headers.set("Transfer-Encoding", "chunked")
        } else if let bodyLength, !bodyless, !headers.contains("Content-Length") {
            headers.add("Content-Length", String(bodyLength))
        }
        if !keepAlive {
            headers.set("Connection", "close")
        } else if request.version == .http10 {
            headers.set("Connection", "keep-alive")
        }
        // Never emit a field that could split the response (CR, LF, NUL in a
        // value, a name that is not a token), as libevent's evhttp_add_header refuses them.
        headers.removeInvalidFields()
        var text = "HTTP/1.1 "
        text.reserveCapacity(160)
        text += String(status.code)
        text += " "
        text += status.reason
        text += "\r\n"
        for (name, value) in headers.fields {
            text += name
            text += ": "
            text += value
            text += "\r\n"
        }
        text += "\r\n"
        return text
    }

    private func wantsKeepAlive(_ request: HTTPServerRequest, _ headers: HTTPHeaders) -> Bool {
        if headers.hasToken("Connection", "close") || request.headers.hasToken("Connection", "close") { return false }
        if request.version == .http10 { return request.headers.hasToken("Connection", "keep-alive") }
        return true
    }

    func respond(_ request: HTTPServerRequest, _ status: HTTPStatus, _ headers: HTTPHeaders, _ body: EventBuffer) {
        lock.withLock {
            guard case .handling(let current) = state, current === request else { return }
            let text = head(request, status, headers, bodyLength: body.count, chunked: false)
            // Head and body reach the output together: one gathered write.
            let response = EventBuffer()
            try? response.add(text)
            if request.method != .head && !(status.code < 200 || status.code == 204 || status.code == 304) {
                try? response.add(buffer: body)
            }
            try? bufferEvent.write(buffer: response)
            responseDone()
        }
    }

    func startStream(_ request: HTTPServerRequest, _ status: HTTPStatus, _ headers: HTTPHeaders) {
        lock.withLock {
            guard case .handling(let current) = state, current === request else { return }
            let chunked = request.version == .http11 && request.method != .head
            let text = head(request, status, headers, bodyLength: nil, chunked: chunked)
            try? bufferEvent.write(text)
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
            responseDone()
        }
    }

    /// After a complete response: close once written, or go on with the
    /// next (possibly already buffered, pipelined) request.
    private func responseDone() {
        requestsServed += 1
        if closeAfterResponse {
            state = .closing
            if bufferEvent.output.count == 0 { finishClosing() }
            return
        }
        state = .readingHead
        // Between requests the idle timeout applies; the next head must be
        // complete within idle + header time (the header timer checks).
        setReadTimeout(server.configuration.idleTimeout)
        headDeadline = Self.monotonicNanoseconds()
            + Self.nanoseconds(server.configuration.idleTimeout + server.configuration.headerTimeout)
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
        text += "Date: \(server.dateCache.now)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
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
        lingerTimer = try? Event(base: server.base, fd: -1, flags: [.finalize]) { [weak self] _, _ in self?.close() }
        try? lingerTimer?.add(timeout: server.configuration.lingerTime)
    }

    private func transportEvent(_ what: BufferEvent.What) {
        if what.contains(.connected) && what.subtracting(.connected).isEmpty { return }
        close()
    }

    private func headerTimedOut() {
        lock.withLock {
            guard case .readingHead = state else {
                try? headerTimer?.add(timeout: server.configuration.headerTimeout)
                return
            }
            let now = Self.monotonicNanoseconds()
            if now < headDeadline {
                // A later request's deadline: wait for it (at most one header timeout at a time).
                let left = min(headDeadline - now, Self.nanoseconds(server.configuration.headerTimeout))
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
        guard readTimeoutSet != timeout else { return }
        readTimeoutSet = timeout
        try? bufferEvent.setTimeouts(read: timeout, write: server.configuration.writeTimeout)
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
        let wasOpen = lock.withLock { () -> Bool in
            if case .closed = state { return false }
            state = .closed
            try? headerTimer?.finalize { _ in }
            try? lingerTimer?.finalize { _ in }
            try? kick?.finalize { _ in }
            headerTimer = nil
            lingerTimer = nil
            kick = nil
            return true
        }
        guard wasOpen else { return }
        bufferEvent.free()
        server.connectionClosed(self)
    }
}
