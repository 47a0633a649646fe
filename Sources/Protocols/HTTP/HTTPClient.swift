import EventBackends
import EventBuffers
import EventCore
import EventDNS
import EventLocking
import EventSSL
import Glibc

/// A response as the client received it.
public struct HTTPClientResponse: Sendable, Hashable {
    public let status: HTTPStatus
    public let version: HTTPVersion
    public let headers: HTTPHeaders
    /// The whole body (empty when it was streamed to `onChunk`).
    public let body: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
}

public enum HTTPClientError: Error, Sendable, Hashable, CustomStringConvertible {
    case resolution(DNSLookupError)
    case connect(Int32)
    case timeout
    case cancelled
    case closed
    /// The server's response broke HTTP/1.1 framing.
    case badResponse(String)
    case tls(String)
    /// The request itself could not be sent (a target or field with CR, LF or NUL).
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .resolution(let error): "cannot resolve: \(error)"
        case .connect(let error): "cannot connect: \(String(cString: strerror(error)))"
        case .timeout: "timed out"
        case .cancelled: "cancelled"
        case .closed: "the connection closed before the response was complete"
        case .badResponse(let why): "bad response: \(why)"
        case .tls(let why): "TLS: \(why)"
        case .invalidRequest(let why): "invalid request: \(why)"
        }
    }
}

/// A request in flight; `cancel()` ends it with `.cancelled`.
public final class HTTPClientRequest: @unchecked Sendable {
    // Confinement: every `var` is guarded by the connection's lock.
    let method: HTTPMethod
    let target: String
    let headers: HTTPHeaders
    let body: [UInt8]
    let onChunk: (@Sendable ([UInt8]) -> Void)?
    var completion: (@Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void)?
    weak var connection: HTTPClientConnection?
    var attempts = 0

    init(method: HTTPMethod, target: String, headers: HTTPHeaders, body: [UInt8], onChunk: (@Sendable ([UInt8]) -> Void)?,
         completion: @escaping @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.onChunk = onChunk
        self.completion = completion
    }

    public func cancel() { connection?.cancel(self) }
}

/// A client connection to one host and port (libevent's
/// `evhttp_connection`): requests are queued and sent one at a time on a
/// kept-alive connection, reconnecting when the server closes; host names
/// are resolved with EventDNS; HTTPS verifies the server by name.
public final class HTTPClientConnection: @unchecked Sendable {
    // Confinement: every `var` is guarded by `lock` (the base's provider).
    public struct Configuration: Sendable {
        /// Each request's whole exchange (connect, send, receive).
        public var timeout: Duration = .seconds(30)
        /// Connection failures retried (idempotent methods, or before anything was sent).
        public var retries = 2
        /// First wait before a retry, doubling.
        public var retryBackoff: Duration = .milliseconds(100)
        public var limits = HTTPLimits()
        public init() {}
    }

    public let base: EventBase
    public let host: String
    public let port: UInt16
    public let configuration: Configuration
    private let resolver: DNSResolver?
    private let tls: SSLContext?
    let lock: any EventLock
    private var queue: [HTTPClientRequest] = []
    private var current: HTTPClientRequest?
    private var bufferEvent: BufferEvent?
    private var connected = false
    private var connecting = false
    private var timer: Event?
    private var retryTimer: Event?
    private var parse = ResponseState()
    private var isFreed = false
    private var onClose: (@Sendable () -> Void)?
    /// Counts connect attempts: a lookup answering for an earlier one is ignored.
    private var connectGeneration = 0
    private var lookup: DNSRequest?

    /// Response parsing state for the request in flight.
    struct ResponseState {
        var head: (status: HTTPStatus, version: HTTPVersion, headers: HTTPHeaders)?
        var framing: HTTPBodyFraming = .none
        var remaining = 0
        var decoder = ChunkedDecoder()
        var body: [UInt8] = []
        var receivedAny = false
        /// A whole-body response grew over the limit: it fails, it is not cut.
        var tooLarge = false
    }

    public init(
        base: EventBase, host: String, port: UInt16, resolver: DNSResolver? = nil, tls: SSLContext? = nil,
        configuration: Configuration = Configuration()
    ) {
        self.base = base
        self.host = host
        self.port = port
        self.resolver = resolver
        self.tls = tls
        self.configuration = configuration
        lock = base.lockProvider.makeLock(.recursive)
    }

    /// Called when the connection closes (libevent's `evhttp_connection_set_closecb`).
    public func setCloseCallback(_ callback: (@Sendable () -> Void)?) { lock.withLock { onClose = callback } }

    /// Sends a request; `completion` runs on the loop once, with the whole
    /// response, or an error. With `onChunk`, body bytes are handed over as
    /// they arrive and the response's `body` stays empty.
    @discardableResult
    public func request(
        _ method: HTTPMethod, _ target: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [],
        onChunk: (@Sendable ([UInt8]) -> Void)? = nil,
        completion: @escaping @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void
    ) -> HTTPClientRequest {
        let request = HTTPClientRequest(method: method, target: target, headers: headers, body: body, onChunk: onChunk, completion: completion)
        request.connection = self
        // A target or field that could split the request is refused, never sent.
        if target.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) || !method.rawValue.utf8.allSatisfy(HTTPSyntax.isToken)
            || !headers.fields.allSatisfy({ HTTPHeaders.isValidField(name: $0.name, value: $0.value) })
        {
            lock.withLock { finish(request, .failure(.invalidRequest("CR, LF, NUL, space or a non-token in the request line or a field"))) }
            return request
        }
        lock.withLock {
            guard !isFreed else {
                finish(request, .failure(.closed))
                return
            }
            queue.append(request)
            pump()
        }
        return request
    }

    /// Closes the connection; queued and in-flight requests end with `.cancelled`.
    public func free() {
        lock.withLock {
            isFreed = true
            let all = (current.map { [$0] } ?? []) + queue
            queue = []
            current = nil
            for request in all { finish(request, .failure(.cancelled)) }
            dropTransport(notify: false)
            try? retryTimer?.finalize { _ in }
            retryTimer = nil
        }
    }

    func cancel(_ request: HTTPClientRequest) {
        lock.withLock {
            if current === request {
                current = nil
                // The response may be half read: this connection cannot be reused.
                dropTransport(notify: true)
                finish(request, .failure(.cancelled))
                pump()
            } else if let index = queue.firstIndex(where: { $0 === request }) {
                queue.remove(at: index)
                finish(request, .failure(.cancelled))
            }
        }
    }

    // MARK: the state machine (the lock is held)

    private func pump() {
        guard current == nil, !queue.isEmpty, !isFreed else { return }
        let request = queue.removeFirst()
        current = request
        request.attempts += 1
        parse = ResponseState()
        armTimer()
        if connected, let bufferEvent {
            send(request, on: bufferEvent)
        } else if !connecting {
            connect()
        }
    }

    private func armTimer() {
        if timer == nil {
            timer = try? Event(base: base, fd: -1, flags: [.finalize]) { [weak self] _, _ in
                guard let self else { return }
                self.lock.withLock {
                    guard let request = self.current else { return }
                    self.current = nil
                    self.dropTransport(notify: true)
                    self.finish(request, .failure(.timeout))
                    self.pump()
                }
            }
        }
        try? timer?.add(timeout: configuration.timeout)
    }

    private func connect() {
        connecting = true
        connectGeneration += 1
        if let address = try? SocketAddress(ip: host, port: port) {
            open(address)
            return
        }
        guard let resolver else {
            failCurrent(.resolution(.noNameservers), retry: false)
            return
        }
        let generation = connectGeneration
        lookup = resolver.addresses(host: host, service: String(port)) { [weak self] result in
            guard let self else { return }
            self.lock.withLock {
                // An answer for an attempt given up (timeout, cancel, free) is ignored.
                guard generation == self.connectGeneration, self.connecting, !self.isFreed, self.bufferEvent == nil else { return }
                self.lookup = nil
                switch result {
                case .success(let addresses):
                    guard let first = addresses.first else {
                        self.failCurrent(.resolution(.nameError(.root)), retry: false)
                        return
                    }
                    self.open(first)
                case .failure(let error):
                    self.failCurrent(.resolution(error), retry: false)
                }
            }
        }
    }

    private func open(_ address: SocketAddress) {
        do {
            // Callbacks before connecting: with the loop on another thread,
            // `.connected` may be delivered before `connect` returns.
            let bufferEvent: BufferEvent = try tls.map {
                try SSLBufferEvent(base: base, context: $0, serverName: host, options: [.closeOnFree])
            } ?? SocketBufferEvent(base: base, options: [.closeOnFree])
            bufferEvent.setCallbacks(
                read: { [weak self] bev in self?.readable(bev) },
                write: nil,
                event: { [weak self] bev, what, error in self?.transportEvent(bev, what, error) })
            self.bufferEvent = bufferEvent
            try bufferEvent.enable(.read)
            if let secure = bufferEvent as? SSLBufferEvent {
                try secure.connect(to: address)
            } else if let plain = bufferEvent as? SocketBufferEvent {
                try plain.connect(to: address)
            }
        } catch {
            bufferEvent?.free()
            bufferEvent = nil
            connecting = false
            failCurrent(.connect(ECONNREFUSED), retry: true)
        }
    }

    private func transportEvent(_ bev: BufferEvent, _ what: BufferEvent.What, _ error: Int32) {
        lock.withLock {
            guard bev === bufferEvent else { return }
            if what.contains(.connected) {
                connecting = false
                connected = true
                if let current { send(current, on: bev) }
                return
            }
            let wasConnected = connected
            if what.contains(.endOfFile), case .untilClose = parse.framing, parse.head != nil, !parse.tooLarge {
                completeCurrent()
                dropTransport(notify: true)
                pump()
                return
            }
            dropTransport(notify: true)
            guard current != nil else { return }
            if let tlsError = (bev as? SSLBufferEvent)?.lastError {
                failCurrent(.tls(tlsError.reason), retry: false)
            } else if !wasConnected {
                failCurrent(.connect(error != 0 ? error : ECONNREFUSED), retry: true)
            } else {
                // A kept-alive connection the server closed before answering:
                // retried only when repeating the request is harmless.
                let idempotent = [HTTPMethod.get, .head, .put, .delete, .options, .trace].contains(current?.method ?? .post)
                failCurrent(.closed, retry: !parse.receivedAny && idempotent)
            }
        }
    }

    private func send(_ request: HTTPClientRequest, on bev: BufferEvent) {
        var headers = request.headers
        if !headers.contains("Host") { headers.add("Host", host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)") }
        if !request.body.isEmpty || request.method == .post || request.method == .put {
            headers.set("Content-Length", String(request.body.count))
        }
        var text = "\(request.method) \(request.target) HTTP/1.1\r\n"
        for (name, value) in headers.fields { text += "\(name): \(value)\r\n" }
        try? bev.write(text + "\r\n")
        if !request.body.isEmpty { try? bev.write(request.body) }
    }

    private func readable(_ bev: BufferEvent) {
        lock.withLock {
            guard bev === bufferEvent, let request = current else { return }
            do throws(HTTPParseError) {
                let complete = try advance(request, bev.input)
                if parse.tooLarge {
                    throw HTTPParseError(.payloadTooLarge, "response body over \(configuration.limits.maxBodyBytes) bytes")
                }
                if complete {
                    completeCurrent()
                    pump()
                }
            } catch {
                current = nil
                dropTransport(notify: true)
                finish(request, .failure(.badResponse(error.reason)))
                pump()
            }
        }
    }

    /// Parses what is buffered; true once the response is complete.
    private func advance(_ request: HTTPClientRequest, _ input: EventBuffer) throws(HTTPParseError) -> Bool {
        let limits = configuration.limits
        if input.count > 0 { parse.receivedAny = true }
        while parse.head == nil {
            let bytes = (try? input.copyOut(count: min(input.count, limits.maxHeaderBytes + 1))) ?? []
            guard let end = try HTTPSyntax.headerEnd(bytes, limit: limits.maxHeaderBytes) else { return false }
            try? input.drain(end)
            let lines = HTTPSyntax.lines(bytes[0..<(end - 4)].drop { $0 == 0x0D || $0 == 0x0A })
            guard let statusLine = lines.first else { throw HTTPParseError(.badRequest, "empty response") }
            let parts = statusLine.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[1].count == 3, let code = Int(String(decoding: parts[1], as: UTF8.self)) else {
                throw HTTPParseError(.badRequest, "malformed status line")
            }
            let version = try HTTPSyntax.version(parts[0])
            var headers = HTTPHeaders()
            try HTTPSyntax.parseFields(lines.dropFirst(), into: &headers, limits: limits)
            let reason = parts.count > 2 ? String(decoding: parts[2], as: UTF8.self) : ""
            if code >= 100 && code < 200 { continue }  // 100 Continue and friends: the real response follows.
            parse.head = (HTTPStatus(code, reason), version, headers)
            parse.framing = try Self.responseFraming(code: code, method: request.method, headers: headers, limits: limits)
            if case .length(let length) = parse.framing {
                guard request.onChunk != nil || length <= limits.maxBodyBytes else {
                    throw HTTPParseError(.payloadTooLarge, "response body of \(length) bytes is over the limit")
                }
                parse.remaining = length
            }
        }
        switch parse.framing {
        case .none:
            return true
        case .length:
            let n = min(parse.remaining, input.count)
            if n > 0 {
                let bytes = (try? input.remove(upTo: n)) ?? []
                deliver(request, bytes)
                parse.remaining -= n
            }
            return parse.remaining == 0
        case .chunked:
            while !parse.decoder.isDone, input.count > 0 {
                guard let piece = try? input.pullUp(min(input.count, 65_536)), piece.count > 0 else { break }
                var chunk: [UInt8] = []
                let used = try parse.decoder.consume(piece, limits: limits) { chunk += $0 }
                try? input.drain(used)
                if !chunk.isEmpty { deliver(request, chunk) }
                if used == 0 { break }
            }
            return parse.decoder.isDone
        case .untilClose:
            let bytes = (try? input.remove(upTo: input.count)) ?? []
            if !bytes.isEmpty { deliver(request, bytes) }
            return false
        }
    }

    private func deliver(_ request: HTTPClientRequest, _ bytes: [UInt8]) {
        if let onChunk = request.onChunk {
            onChunk(bytes)
        } else {
            parse.body += bytes
            if parse.body.count > configuration.limits.maxBodyBytes { parse.tooLarge = true }
        }
    }

    static func responseFraming(code: Int, method: HTTPMethod, headers: HTTPHeaders, limits: HTTPLimits) throws(HTTPParseError) -> HTTPBodyFraming {
        if method == .head || code == 204 || code == 304 { return .none }
        let encodings = headers.values("Transfer-Encoding")
        if !encodings.isEmpty {
            let codings = encodings.flatMap { $0.split(separator: ",") }.map { $0.trimmingOWS() }
            guard let last = codings.last, HTTPHeaders.same(last, "chunked") else { return .untilClose }
            return .chunked
        }
        let lengths = headers.values("Content-Length")
        if lengths.isEmpty { return .untilClose }
        var length: Int?
        for value in lengths {
            for item in value.split(separator: ",") {
                guard let parsed = HTTPSyntax.parseDecimal(item.trimmingOWS()), length == nil || length == parsed else {
                    throw HTTPParseError(.badRequest, "invalid or differing Content-Length")
                }
                length = parsed
            }
        }
        return .length(length ?? 0)
    }

    private func completeCurrent() {
        guard let request = current, let head = parse.head else { return }
        current = nil
        try? timer?.delete()
        let keepAlive = head.version == .http11 && !head.headers.hasToken("Connection", "close")
        if !keepAlive { dropTransport(notify: true) }
        finish(request, .success(HTTPClientResponse(status: head.status, version: head.version, headers: head.headers, body: parse.body)))
    }

    /// The request in flight failed: retry with back-off when allowed and
    /// attempts remain, else report.
    private func failCurrent(_ error: HTTPClientError, retry: Bool) {
        guard let request = current else { return }
        current = nil
        try? timer?.delete()
        if retry && request.attempts <= configuration.retries && !isFreed {
            queue.insert(request, at: 0)
            let delay = configuration.retryBackoff * (1 << min(request.attempts - 1, 10))
            if retryTimer == nil {
                retryTimer = try? Event(base: base, fd: -1, flags: [.finalize]) { [weak self] _, _ in
                    guard let self else { return }
                    self.lock.withLock { self.pump() }
                }
            }
            try? retryTimer?.add(timeout: delay)
            return
        }
        finish(request, .failure(error))
        pump()
    }

    private func dropTransport(notify: Bool) {
        lookup?.cancel()
        lookup = nil
        connectGeneration += 1
        let hadConnection = bufferEvent != nil
        bufferEvent?.free()
        bufferEvent = nil
        connected = false
        connecting = false
        if notify && hadConnection, let onClose {
            try? Self.later(base) { onClose() }
        }
    }

    /// Delivers a completion on the loop, without the lock.
    private func finish(_ request: HTTPClientRequest, _ result: Result<HTTPClientResponse, HTTPClientError>) {
        guard let completion = request.completion else { return }
        request.completion = nil
        try? Self.later(base) { completion(result) }
    }

    /// Runs `body` from the loop, once.
    static func later(_ base: EventBase, _ body: @escaping @Sendable () -> Void) throws {
        let event = try Event(base: base, fd: -1, flags: [.finalize]) { event, _ in
            body()
            try? event.finalize { _ in }
        }
        try event.activate()
    }
}
