import CEventShims
import COpenSSL
import CSSLShim
import EventBuffers
import EventCore
import Glibc

/// A TLS connection as a bufferevent (libevent's `bufferevent_openssl`), in
/// both of libevent's forms: over a socket, where OpenSSL reads and writes
/// the descriptor itself, and as a filter over any other bufferevent (a
/// pair, a rate-limited socket), where the ciphertext passes through that
/// bufferevent's buffers. Users read plaintext from ``input`` and write it
/// to ``output``; the handshake's end is reported as `.connected`, failures
/// as `.error` with ``lastError`` saying why in OpenSSL's words.
///
/// Threading as every bufferevent: in a shared base any thread may use it;
/// the `SSL` object is only touched with the bufferevent's lock held, so
/// never from two threads at once, and callbacks run on the loop without
/// the lock.
///
/// Differences from libevent 2.1, on purpose: freeing an open connection
/// sends close_notify (libevent never does, which also makes OpenSSL drop
/// the session from the server's cache); a handshake that has not finished
/// within the context's timeout fails; decrypted bytes OpenSSL still holds
/// when reading pauses (watermark, rate limit) are delivered as soon as
/// reading resumes, without waiting for the socket to become readable again.
public final class SSLBufferEvent: BufferEvent, @unchecked Sendable {
    // Confinement: every `var` below, and every use of `ssl`, is guarded by
    // the bufferevent's lock (shared with the underlying bufferevent in the
    // filter form). `deinit` frees `ssl` when no other reference is left.

    /// libevent's `BUFFEREVENT_SSL_*` states.
    public enum State: Sendable, Hashable {
        /// A client handshake is under way.
        case connecting
        /// A server handshake is under way.
        case accepting
        /// The handshake finished.
        case open
    }

    private enum Transport {
        case socket
        case filter(underlying: BufferEvent, incoming: OpaquePointer, outgoing: OpaquePointer)
    }

    private enum Want { case read, write }

    /// Ciphertext held in memory for the filter form, each way, before it
    /// pauses: about four full TLS records.
    private static let filterBacklog = 4 * 16_709

    public let context: SSLContext
    /// Frees the `SSL` when the last reference goes, however init ends.
    private let owner: SSLHandle
    private var ssl: OpaquePointer { owner.pointer }
    private let transport: Transport
    private let isServer: Bool

    // Socket form.
    private var socket: Int32 = -1
    private var readEvent: Event?
    private var writeEvent: Event?
    private var readArmed = false
    private var writeArmed = false
    private var readArmedTimeout: Duration?
    private var writeArmedTimeout: Duration?
    private var tcpConnecting = false
    private var finalizersLeft = 0

    // Both forms.
    private var kickEvent: Event?
    private var handshakeTimer: Event?
    private var handshaking = true
    private var handshakeWant: Want = .read
    /// SSL_read asked for writability, SSL_write for readability.
    private var readBlockedOnWrite = false
    private var writeBlockedOnRead = false
    /// SSL_write could not go on: the socket (or the filter's backlog) is full.
    private var writeBlockedOnWrite = false
    /// A failed SSL_write must be retried with the same length.
    private var retryWriteLength = 0
    /// A fatal error or close_notify: no more TLS IO.
    private var dead = false
    private var endOfStream = false
    /// The underlying bufferevent (filter form) saw EOF: once what it
    /// delivered is consumed, the ciphertext stream has ended.
    private var underlyingEnded = false
    /// The stream ended without close_notify (accepted as EOF by
    /// `allowDirtyShutdown`): no close_notify may follow.
    private var brokenStream = false
    private var closeNotifySent = false
    private var driving = false
    private var allowDirty: Bool
    private var lastErrorStorage: SSLError?

    // MARK: making one

    /// A TLS bufferevent over a socket (libevent's
    /// `bufferevent_openssl_socket_new`): on a connected `fd`, or on none
    /// (-1) until ``connect(to:)``. The role comes from the context. A
    /// client that verifies its peer needs `serverName`: the host name
    /// sent as SNI and checked against the certificate, or an IP address
    /// checked against its IP SANs. `session` offers a previous session to resume.
    public init(
        base: EventBase, socket fd: Int32 = -1, context: SSLContext, serverName: String? = nil,
        session: SSLSession? = nil, options: Options = []
    ) throws {
        self.context = context
        isServer = context.configuration.role == .server
        allowDirty = context.configuration.allowDirtyShutdown
        owner = SSLHandle(try Self.makeSSL(context, serverName: serverName, session: session))
        transport = .socket
        socket = fd
        try super.init(base: base, options: options)
        if fd >= 0 {
            guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) >= 0 else {
                throw EventError.badFileDescriptor(fd: fd, call: "SSLBufferEvent.init")
            }
            try attachSocket(fd)
            try makeSocketEvents()
        }
        try makeCommonEvents()
        if fd >= 0 { try start() }
    }

    /// A TLS filter over `underlying` (libevent's
    /// `bufferevent_openssl_filter_new`): ciphertext goes through its
    /// buffers, which may be a pair, a rate-limited socket, another filter.
    /// Takes over its callbacks; with `.closeOnFree`, freeing this one frees it.
    public init(
        filtering underlying: BufferEvent, context: SSLContext, serverName: String? = nil,
        session: SSLSession? = nil, options: Options = []
    ) throws {
        self.context = context
        isServer = context.configuration.role == .server
        allowDirty = context.configuration.allowDirtyShutdown
        let made = SSLHandle(try Self.makeSSL(context, serverName: serverName, session: session))
        owner = made
        guard let incoming = BIO_new(BIO_s_mem()) else { throw SSLError.configuration("BIO_new") }
        guard let outgoing = BIO_new(BIO_s_mem()) else {
            BIO_free(incoming)
            throw SSLError.configuration("BIO_new")
        }
        // An empty incoming buffer means "wait for more", not end of stream.
        _ = se_bio_set_mem_eof_return(incoming, -1)
        // The SSL owns both BIOs from here on.
        SSL_set_bio(made.pointer, incoming, outgoing)
        transport = .filter(underlying: underlying, incoming: incoming, outgoing: outgoing)
        try super.init(base: underlying.base, options: options, sharingLockOf: underlying)
        try makeCommonEvents()
        underlying.setCallbacks(
            read: { [weak self] _ in self?.underlyingReadable() },
            write: { [weak self] _ in self?.underlyingWritable() },
            event: { [weak self] _, what, error in self?.underlyingEvent(what, error) })
        try start()
    }

    private static func makeSSL(_ context: SSLContext, serverName: String?, session: SSLSession?) throws(SSLError) -> OpaquePointer {
        ERR_clear_error()
        guard let ssl = SSL_new(context.handle) else { throw .configuration("SSL_new") }
        do throws(SSLError) {
            if context.configuration.role == .server {
                SSL_set_accept_state(ssl)
            } else {
                SSL_set_connect_state(ssl)
                try configureClient(ssl, context, serverName: serverName)
                if let session, SSL_set_session(ssl, session.handle) != 1 { throw .configuration("SSL_set_session") }
            }
        } catch {
            SSL_free(ssl)
            throw error
        }
        return ssl
    }

    private static func configureClient(_ ssl: OpaquePointer, _ context: SSLContext, serverName: String?) throws(SSLError) {
        let verifying = context.configuration.peerVerification != .none
        if let serverName {
            guard !serverName.isEmpty, !serverName.utf8.contains(0) else {
                throw SSLError(kind: .configuration, reason: "server name \(serverName.debugDescription) is not a host name or address")
            }
            if isIPAddress(serverName) {
                // RFC 6066: no SNI for addresses; the certificate must carry it as an IP SAN.
                if verifying, X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName) != 1 {
                    throw .configuration("IP address \(serverName)")
                }
            } else {
                guard se_ssl_set_host_name(ssl, serverName) == 1 else { throw .configuration("SNI \(serverName)") }
                if verifying {
                    SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                    guard SSL_set1_host(ssl, serverName) == 1 else { throw .configuration("host name \(serverName)") }
                }
            }
        } else if verifying {
            throw SSLError(
                kind: .configuration,
                reason: "a client that verifies the server needs its name or IP address (serverName)")
        }
        let wire = context.alpnWire
        if !wire.isEmpty {
            // SSL_set_alpn_protos returns 0 on success.
            guard wire.withUnsafeBufferPointer({ SSL_set_alpn_protos(ssl, $0.baseAddress, UInt32($0.count)) }) == 0 else {
                throw .configuration("ALPN protocols")
            }
        }
    }

    private static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// OpenSSL reads and writes `fd` itself, through a BIO that never raises SIGPIPE.
    private func attachSocket(_ fd: Int32) throws(SSLError) {
        guard let bio = se_bio_new_socket(fd) else { throw .configuration("socket BIO") }
        // One BIO both ways: SSL_set_bio takes the one reference.
        SSL_set_bio(ssl, bio, bio)
    }

    private func makeSocketEvents() throws {
        let fd = socket
        readEvent = try Event(base: base, fd: fd, flags: [.read, .persist, .finalize]) { [self] _, what in
            socketReady(readable: true, what)
        }
        writeEvent = try Event(base: base, fd: fd, flags: [.write, .persist, .finalize]) { [self] _, what in
            socketReady(readable: false, what)
        }
    }

    private func makeCommonEvents() throws {
        kickEvent = try Event(base: base, fd: -1, flags: [.finalize]) { [weak self] _, _ in
            guard let self else { return }
            lock.withLock { drive() }
            deliverCallbacksOrDefer(onLoop: true)
        }
        handshakeTimer = try Event(base: base, fd: -1, flags: [.finalize]) { [weak self] _, _ in
            self?.handshakeTimedOut()
        }
    }

    /// Starts the handshake clock and the handshake itself (from the loop).
    private func start() throws {
        try lock.withLock { () throws in
            try handshakeTimer?.add(timeout: context.configuration.handshakeTimeout)
            if case .filter(let underlying, _, _) = transport {
                try underlying.enable(.both)
            }
            try kickEvent?.activate()
        }
    }

    // MARK: public API

    /// Connects the socket to `address` (libevent's
    /// `bufferevent_socket_connect` on a TLS bufferevent), then runs the
    /// handshake; `.connected` is reported once both are done.
    public func connect(to address: SocketAddress) throws {
        guard case .socket = transport else {
            throw SSLError(kind: .configuration, reason: "connect(to:) is for the socket form; connect the underlying bufferevent")
        }
        try lock.withLock { () throws in
            guard !isFreed else { throw EventError.eventFinalized(call: "SSLBufferEvent.connect") }
            guard socket < 0 else {
                throw SSLError(kind: .configuration, reason: "the bufferevent already has a socket")
            }
            let fd = Glibc.socket(
                address.domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { throw EventError.system(.last("socket")) }
            socket = fd
            try attachSocket(fd)
            try makeSocketEvents()
            let rc = address.withSockaddr { Glibc.connect(fd, $0, $1) }
            let error = errno
            if rc != 0 {
                if error == EINPROGRESS || error == EINTR {
                    tcpConnecting = true
                } else {
                    fail(SSLError(kind: .system, reason: "connect: \(String(cString: strerror(error)))"), what: [.error], errno: error)
                }
            }
            if !dead { try handshakeTimer?.add(timeout: context.configuration.handshakeTimeout) }
            updateWatches()
            if !tcpConnecting && !dead { try kickEvent?.activate() }
        }
        scheduleDelivery()
    }

    /// Where the handshake stands.
    public var state: State { lock.withLock { handshaking ? (isServer ? .accepting : .connecting) : .open } }

    /// Why the connection failed, in OpenSSL's words (libevent's
    /// `bufferevent_get_openssl_error`); nil while nothing failed.
    public var lastError: SSLError? { lock.withLock { lastErrorStorage } }

    /// Whether a peer that closes without close_notify is an ordinary EOF
    /// rather than an error (libevent's `bufferevent_openssl_set_allow_dirty_shutdown`).
    public var allowDirtyShutdown: Bool {
        get { lock.withLock { allowDirty } }
        set { lock.withLock { allowDirty = newValue } }
    }

    /// The protocol ALPN settled on, if any.
    public var applicationProtocol: String? {
        lock.withLock {
            var data: UnsafePointer<UInt8>?
            var length: UInt32 = 0
            SSL_get0_alpn_selected(ssl, &data, &length)
            guard let data, length > 0 else { return nil }
            return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
        }
    }

    /// "TLSv1.2" or "TLSv1.3" once open.
    public var protocolVersion: String { lock.withLock { String(cString: SSL_get_version(ssl)) } }

    /// The cipher suite in use, once open.
    public var cipherName: String? {
        lock.withLock { SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } }
    }

    /// Servers: the name the client asked for (SNI).
    public var requestedServerName: String? {
        lock.withLock { SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) } }
    }

    /// The peer certificate's subject, one line ("/CN=…"), if it sent one.
    public var peerCertificateSubject: String? {
        lock.withLock {
            guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
            defer { X509_free(certificate) }
            guard let line = X509_NAME_oneline(X509_get_subject_name(certificate), nil, 0) else { return nil }
            defer { CRYPTO_free(line, #fileID, #line) }
            return String(cString: line)
        }
    }

    /// The session, to offer again on a later connection (clients). With
    /// TLS 1.3 the server sends it after the handshake: read some data first.
    public var session: SSLSession? {
        lock.withLock { SSL_get1_session(ssl).map { SSLSession(adopting: $0) } }
    }

    /// Whether the handshake resumed an earlier session.
    public var isSessionReused: Bool { lock.withLock { SSL_session_reused(ssl) == 1 } }

    public override var fd: Int32 {
        lock.withLock {
            if case .filter(let underlying, _, _) = transport { return underlying.fd }
            return socket
        }
    }

    // MARK: transport hooks (the lock is held)

    public override func transportUpdate() throws(EventError) {
        if driving { return }
        updateWatches()
        kickIfDataIsWaiting()
        kickIfOutputIsWaiting()
    }

    public override func transportOutputAdded() {
        guard !handshaking, !dead, !driving, !writeBlockedOnWrite, !writeBlockedOnRead else { return }
        try? kickEvent?.activate()
    }

    public override func transportInputDrained() {
        kickIfDataIsWaiting()
    }

    public override func transportFlush(_ directions: Direction, mode: FlushMode) {
        guard directions.contains(.write), !driving else { return }
        try? kickEvent?.activate()
    }

    public override func transportFree() {
        sendCloseNotify()
        try? handshakeTimer?.finalize { _ in }
        try? kickEvent?.finalize { _ in }
        handshakeTimer = nil
        kickEvent = nil
        switch transport {
        case .filter(let underlying, _, _):
            if options.contains(.closeOnFree) {
                // Whatever the underlying bufferevent still holds (the
                // close_notify) is pushed to its descriptor before it goes.
                let fd = underlying.fd
                if fd >= 0 {
                    underlying.output.unfreeze(end: false)
                    _ = try? underlying.output.write(to: fd)
                    underlying.output.freeze(end: false)
                }
                underlying.free()
            } else {
                underlying.setCallbacks(read: nil, write: nil, event: nil)
            }
        case .socket:
            freeSocket()
        }
    }

    private func freeSocket() {
        readArmed = false
        writeArmed = false
        let events = [readEvent, writeEvent].compactMap { $0 }
        readEvent = nil
        writeEvent = nil
        let fd = socket
        guard options.contains(.closeOnFree), fd >= 0 else {
            for event in events { try? event.finalize { _ in } }
            return
        }
        guard !events.isEmpty else {
            Glibc.close(fd)
            return
        }
        // Close once neither event can fire, as SocketBufferEvent does.
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

    /// One close_notify, best effort, on an open connection.
    private func sendCloseNotify() {
        guard !handshaking, !dead, !brokenStream, !closeNotifySent else { return }
        closeNotifySent = true
        if case .socket = transport, socket < 0 { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
        flushOutgoing()
    }

    /// Writing is enabled and free again (a rate-limit refill, `enable`
    /// after `disable`) with plaintext waiting and nothing blocking it.
    private func kickIfOutputIsWaiting() {
        guard !handshaking, !dead, !driving, writingWanted, !writeBlockedOnWrite, !writeBlockedOnRead,
            output.count > 0
        else { return }
        try? kickEvent?.activate()
    }

    /// Reading is wanted and bytes are already here: decrypted or
    /// undecrypted ones OpenSSL holds, or ciphertext waiting in the
    /// underlying bufferevent. The socket will not say so again.
    private func kickIfDataIsWaiting() {
        guard !handshaking, !dead, !endOfStream, readingWanted, !driving else { return }
        var waiting = SSL_has_pending(ssl) == 1
        if case .filter(let underlying, let incoming, _) = transport {
            waiting = waiting || se_bio_pending(incoming) > 0 || !underlying.input.isEmpty
        }
        if waiting { try? kickEvent?.activate() }
    }

    // MARK: the TLS state machine (the lock is held)

    private func drive() {
        guard !isFreed, !dead, !tcpConnecting, !driving else { return }
        if case .socket = transport, socket < 0 { return }
        driving = true
        defer { driving = false }
        _ = feedIncoming()
        while handshaking && !dead {
            ERR_clear_error()
            errno = 0
            let rc = SSL_do_handshake(ssl)
            flushOutgoing()
            if rc == 1 {
                handshaking = false
                try? handshakeTimer?.delete()
                report(.connected)
                break
            }
            let error = SSL_get_error(ssl, rc)
            switch error {
            case SSL_ERROR_WANT_READ:
                handshakeWant = .read
                // More ciphertext may be waiting in the underlying input.
                if feedIncoming() { continue }
            case SSL_ERROR_WANT_WRITE:
                handshakeWant = .write
            default:
                failFromOpenSSL(error, rc, what: [.error])
            }
            break
        }
        if !handshaking && !dead {
            pumpWrite()
            pumpRead()
            flushOutgoing()
        }
        updateWatches()
    }

    /// Plaintext from the output into SSL_write, in bounded chunks (file
    /// segments are mapped and encrypted piece by piece).
    private func pumpWrite() {
        guard enabledDirections.contains(.write) else { return }
        writeBlockedOnRead = false
        writeBlockedOnWrite = false
        output.unfreeze(end: false)
        defer { output.freeze(end: false) }
        var written = 0
        while !dead && output.count > 0 {
            if case .filter(let underlying, _, _) = transport, underlying.output.count >= Self.filterBacklog {
                writeBlockedOnWrite = true
                break
            }
            var length = retryWriteLength
            if length == 0 {
                let allowance = writeAllowance
                guard allowance > 0 else {
                    holdForRateLimit(.write)
                    break
                }
                length = min(allowance, 16_384)
            }
            guard let piece = try? output.peek(length: length).first, let start = piece.baseAddress else { break }
            if retryWriteLength == 0 { length = min(length, piece.count) }
            ERR_clear_error()
            errno = 0
            let rc = SSL_write(ssl, start, Int32(length))
            if rc > 0 {
                retryWriteLength = 0
                try? output.drain(Int(rc))
                written += Int(rc)
                flushOutgoing()
                continue
            }
            let error = SSL_get_error(ssl, rc)
            switch error {
            case SSL_ERROR_WANT_WRITE:
                retryWriteLength = length
                writeBlockedOnWrite = true
            case SSL_ERROR_WANT_READ:
                retryWriteLength = length
                writeBlockedOnRead = true
            default:
                failFromOpenSSL(error, rc, what: [.writing, .error])
            }
            break
        }
        if written > 0 { didWrite(written) }
    }

    /// SSL_read straight into reserved space at the end of the input, until
    /// OpenSSL has nothing more or reading is held back.
    private func pumpRead() {
        readBlockedOnWrite = false
        guard !endOfStream else { return }
        input.unfreeze(end: true)
        defer { input.freeze(end: true) }
        while readingWanted && !dead {
            let allowance = readAllowance
            guard allowance > 0 else {
                if readRoom == 0 { holdForRateLimit(.read) }
                break
            }
            let wanted = min(allowance, 16_384)
            guard let pieces = try? input.reserve(wanted), let piece = pieces.first, let start = piece.baseAddress else { break }
            ERR_clear_error()
            errno = 0
            let rc = SSL_read(ssl, start, Int32(min(wanted, piece.count)))
            if rc > 0 {
                try? input.commit(Int(rc))
                didRead(Int(rc))
                continue
            }
            try? input.commit(0)
            let error = SSL_get_error(ssl, rc)
            switch error {
            case SSL_ERROR_WANT_READ:
                // Filter form: more ciphertext may be waiting underneath.
                if feedIncoming() { continue }
            case SSL_ERROR_WANT_WRITE:
                readBlockedOnWrite = true
            case SSL_ERROR_ZERO_RETURN:
                // close_notify: a clean end of the stream.
                endOfStream = true
                report([.reading, .endOfFile], disabling: .read)
            default:
                handleReadFailure(error, rc)
            }
            break
        }
    }

    /// SSL_read failed: a peer that vanished without close_notify is EOF
    /// when dirty shutdowns are allowed, an error otherwise.
    private func handleReadFailure(_ error: Int32, _ rc: Int32) {
        let systemErrno = errno
        let (codes, reasons) = SSLError.drainQueue()
        let truncated = (error == SSL_ERROR_SYSCALL && codes.isEmpty && (rc == 0 || systemErrno == 0))
            || (error == SSL_ERROR_SSL && codes.contains { se_err_is_unexpected_eof(UInt($0)) != 0 })
        if truncated {
            if allowDirty {
                endOfStream = true
                brokenStream = true
                report([.reading, .endOfFile], disabling: .read)
            } else {
                fail(
                    SSLError(kind: .protocol, reason: "the peer closed the connection without close_notify (truncated stream)", codes: codes),
                    what: [.reading, .error], errno: 0)
            }
            return
        }
        fail(classify(error, codes: codes, reasons: reasons, errno: systemErrno), what: [.reading, .error],
             errno: error == SSL_ERROR_SYSCALL ? systemErrno : 0)
    }

    private func failFromOpenSSL(_ error: Int32, _ rc: Int32, what: What) {
        let systemErrno = errno
        let (codes, reasons) = SSLError.drainQueue()
        fail(classify(error, codes: codes, reasons: reasons, errno: systemErrno), what: what,
             errno: error == SSL_ERROR_SYSCALL ? systemErrno : 0)
    }

    private func classify(_ error: Int32, codes: [UInt], reasons: [String], errno systemErrno: Int32) -> SSLError {
        if error == SSL_ERROR_SYSCALL && codes.isEmpty {
            if systemErrno != 0 {
                return SSLError(kind: .system, reason: String(cString: strerror(systemErrno)))
            }
            return SSLError(
                kind: handshaking ? .handshake : .protocol,
                reason: handshaking ? "the peer closed the connection during the handshake" : "the peer closed the connection")
        }
        let verify = SSL_get_verify_result(ssl)
        var text = reasons.isEmpty ? "TLS error \(error)" : reasons.joined(separator: "; ")
        if handshaking && verify != X509_V_OK {
            text += ": " + String(cString: X509_verify_cert_error_string(verify))
            return SSLError(kind: .verification, reason: text, codes: codes, verifyResult: verify)
        }
        if codes.contains(where: { se_err_is_wrong_version(UInt($0)) != 0 }) {
            text += " (the peer is not speaking TLS)"
        }
        return SSLError(kind: handshaking ? .handshake : .protocol, reason: text, codes: codes)
    }

    /// Ends the connection's TLS life with `error`, reported once.
    private func fail(_ error: SSLError, what: What, errno: Int32) {
        guard !dead else { return }
        dead = true
        tcpConnecting = false
        lastErrorStorage = error
        try? handshakeTimer?.delete()
        report(what.union(.error), errno: errno, disabling: .both)
        updateWatches()
    }

    private func handshakeTimedOut() {
        lock.withLock {
            guard handshaking, !dead, !isFreed else { return }
            let seconds = Double(context.configuration.handshakeTimeout.components.seconds)
                + Double(context.configuration.handshakeTimeout.components.attoseconds) / 1e18
            fail(SSLError(kind: .handshakeTimeout, reason: "the TLS handshake did not finish within \(seconds) s"),
                 what: [.error, .timeout], errno: ETIMEDOUT)
        }
        deliverCallbacksOrDefer(onLoop: true)
    }

    // MARK: watching the transport (the lock is held)

    private var wantsReadability: Bool {
        guard !dead, !isFreed else { return false }
        if handshaking { return handshakeWant == .read }
        return (readingWanted && !endOfStream) || writeBlockedOnRead
    }

    private var wantsWritability: Bool {
        guard !dead, !isFreed else { return false }
        if handshaking { return handshakeWant == .write }
        return (writeBlockedOnWrite && enabledDirections.contains(.write)) || readBlockedOnWrite
    }

    private func updateWatches() {
        switch transport {
        case .socket:
            guard socket >= 0, let readEvent, let writeEvent else { return }
            let restart = timeoutsToRestart
            timeoutsToRestart = []
            let wantRead = !tcpConnecting && wantsReadability
            let readLimit = handshaking || !readingWanted ? nil : readTimeout
            if wantRead {
                if !readArmed || restart.contains(.read) || readArmedTimeout != readLimit {
                    try? arm(readEvent, timeout: readLimit, had: readArmed ? readArmedTimeout : nil)
                    readArmed = true
                    readArmedTimeout = readLimit
                }
            } else if readArmed {
                try? readEvent.delete()
                readArmed = false
            }
            let wantWrite = tcpConnecting || (!dead && wantsWritability)
            let writeLimit = tcpConnecting || writeBlockedOnWrite ? writeTimeout : nil
            if wantWrite {
                if !writeArmed || restart.contains(.write) || writeArmedTimeout != writeLimit {
                    try? arm(writeEvent, timeout: writeLimit, had: writeArmed ? writeArmedTimeout : nil)
                    writeArmed = true
                    writeArmedTimeout = writeLimit
                }
            } else if writeArmed {
                try? writeEvent.delete()
                writeArmed = false
            }
        case .filter(let underlying, _, _):
            let wantRead = wantsReadability
            let reading = underlying.enabledDirections.contains(.read)
            if wantRead && !reading {
                try? underlying.enable(.read)
            } else if !wantRead && reading {
                try? underlying.disable(.read)
            }
        }
    }

    private func arm(_ event: Event, timeout: Duration?, had previous: Duration?) throws(EventError) {
        try event.add(timeout: timeout)
        if timeout == nil && previous != nil { try event.removeTimer() }
    }

    // MARK: the filter's ciphertext (the lock is held)

    /// Moves ciphertext from the underlying input into OpenSSL, up to the
    /// backlog; whether anything moved. Once the underlying stream has
    /// ended and all of it is in, an empty BIO reads as end of stream.
    private func feedIncoming() -> Bool {
        guard case .filter(let underlying, let incoming, _) = transport else { return false }
        var moved = false
        while se_bio_pending(incoming) < Self.filterBacklog, !underlying.input.isEmpty {
            guard let piece = try? underlying.input.peek(length: 16_384).first, let start = piece.baseAddress,
                piece.count > 0
            else { break }
            let n = BIO_write(incoming, start, Int32(piece.count))
            guard n > 0 else { break }
            try? underlying.input.drain(Int(n))
            moved = true
        }
        if underlyingEnded && underlying.input.isEmpty { _ = se_bio_set_mem_eof_return(incoming, 0) }
        return moved
    }

    /// Moves ciphertext OpenSSL produced into the underlying output.
    private func flushOutgoing() {
        guard case .filter(let underlying, _, let outgoing) = transport else { return }
        while true {
            let pending = se_bio_pending(outgoing)
            guard pending > 0, let piece = try? underlying.output.reserve(pending).first, let start = piece.baseAddress else { return }
            let n = BIO_read(outgoing, start, Int32(min(pending, piece.count)))
            try? underlying.output.commit(max(0, Int(n)))
            if n <= 0 { return }
        }
    }

    // MARK: the loop's side

    private func socketReady(readable: Bool, _ what: Event.Flags) {
        lock.withLock {
            defer { updateWatches() }
            if tcpConnecting && !readable {
                finishConnect(what)
                return
            }
            if what.contains(.timeout) {
                if readable {
                    report([.reading, .timeout], disabling: .read)
                } else {
                    report([.writing, .timeout], disabling: .write)
                }
                return
            }
            drive()
        }
        deliverCallbacksOrDefer(onLoop: true)
    }

    private func finishConnect(_ what: Event.Flags) {
        tcpConnecting = false
        if what.contains(.timeout) {
            fail(SSLError(kind: .system, reason: "connect timed out"), what: [.writing, .timeout], errno: ETIMEDOUT)
            return
        }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(socket, SOL_SOCKET, SO_ERROR, &error, &length) < 0 { error = errno }
        if error != 0 {
            fail(SSLError(kind: .system, reason: "connect: \(String(cString: strerror(error)))"), what: [.error], errno: error)
            return
        }
        drive()
    }

    private func underlyingReadable() {
        lock.withLock { drive() }
        deliverCallbacksOrDefer(onLoop: true)
    }

    private func underlyingWritable() {
        lock.withLock { drive() }
        deliverCallbacksOrDefer(onLoop: true)
    }

    private func underlyingEvent(_ what: BufferEvent.What, _ error: Int32) {
        lock.withLock {
            guard case .filter = transport else { return }
            if what.contains(.endOfFile) {
                // What is left is the whole stream; reading (now or once it
                // resumes) meets its end after the last byte, and checks
                // for close_notify then.
                underlyingEnded = true
                drive()
                if handshaking && !dead {
                    fail(SSLError(kind: .handshake, reason: "the peer closed the connection during the handshake"),
                         what: [.reading, .error], errno: 0)
                }
            } else if what.contains(.error) || what.contains(.timeout) {
                let reason = error != 0 ? String(cString: strerror(error)) : "\(what)"
                fail(SSLError(kind: .system, reason: "underlying bufferevent: \(reason)"),
                     what: what.subtracting(.connected), errno: error)
            }
        }
        deliverCallbacksOrDefer(onLoop: true)
    }
}

/// Owns one `SSL` object and frees it with the last reference.
private final class SSLHandle: @unchecked Sendable {
    // The pointer is immutable; what it points to is guarded by the owning
    // bufferevent's lock.
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { SSL_free(pointer) }
}
