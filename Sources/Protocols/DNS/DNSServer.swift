import CEventShims
import EventBackends
import EventBuffers
import EventCore
import EventLocking
import Glibc

/// A DNS server port (libevent's `evdns_server_port`) over UDP and TCP on
/// one address: each request's questions go to the callback, which answers
/// (records, flags, rcode), or drops it. Replies compress names; a UDP reply
/// larger than the client's size (512, or its EDNS0 size) is cut to what
/// fits with TC set, so the client retries over TCP.
public final class DNSServer: @unchecked Sendable {
    // Confinement: `tcpConnections` and `closed` are guarded by `lock` (the
    // base's provider; a no-op lock in an owned base). The rest is set once.

    /// One request to answer.
    public final class Request: @unchecked Sendable {
        // Confinement: `answered` is guarded by the server's lock.
        public let message: DNSMessage
        public let peer: SocketAddress
        public let isTCP: Bool
        private let server: DNSServer
        private let reply: @Sendable ([UInt8]) -> Void
        private var answered = false

        init(message: DNSMessage, peer: SocketAddress, isTCP: Bool, server: DNSServer, reply: @escaping @Sendable ([UInt8]) -> Void) {
            self.message = message
            self.peer = peer
            self.isTCP = isTCP
            self.server = server
            self.reply = reply
        }

        public var questions: [DNSQuestion] { message.questions }

        /// Sends `answers` (and authority/additional records) with `responseCode`
        /// (libevent's `evdns_server_request_respond`). Once per request.
        public func respond(
            answers: [DNSRecord], authorities: [DNSRecord] = [], additionals: [DNSRecord] = [],
            responseCode: DNSResponseCode = .noError, authoritative: Bool = true, recursionAvailable: Bool = false
        ) throws(DNSError) {
            var response = DNSMessage()
            response.id = message.id
            response.isResponse = true
            response.opcode = message.opcode
            response.recursionDesired = message.recursionDesired
            response.recursionAvailable = recursionAvailable
            response.isAuthoritative = authoritative
            response.responseCode = responseCode
            response.questions = message.questions
            response.answers = answers
            response.authorities = authorities
            response.additionals = additionals
            if message.ednsUDPSize != nil { response.ednsUDPSize = 1232 }
            try send(response)
        }

        /// Sends a whole response message (its id is set from the request).
        public func send(_ response: DNSMessage) throws(DNSError) {
            guard server.lock.withLock({ () -> Bool in
                if answered { return false }
                answered = true
                return true
            }) else { return }
            var response = response
            response.id = message.id
            response.isResponse = true
            let limit = isTCP ? DNSMessage.maximumMessage : Int(max(512, message.ednsUDPSize ?? 512))
            reply(try response.serialized(limit: limit))
        }

        /// Answers nothing (libevent's `evdns_server_request_drop`).
        public func drop() {
            server.lock.withLock { answered = true }
        }
    }

    public typealias Callback = @Sendable (Request) -> Void

    public let base: EventBase
    let lock: any EventLock
    private let callback: Callback
    private let udpSocket: Int32
    private var udpEvent: Event?
    private var listener: ConnectionListener?
    private var tcpConnections: [ObjectIdentifier: SocketBufferEvent] = [:]
    private var closed = false
    /// The bound address (with the port the kernel chose for port 0).
    public let address: SocketAddress

    /// Listens on `address` over UDP, and over TCP on the same port unless
    /// `tcp` is false. With port 0 the kernel picks a UDP port; if TCP cannot
    /// have the same one (another socket holds it), another is picked.
    public init(base: EventBase, address: SocketAddress, tcp: Bool = true, callback: @escaping Callback) throws {
        self.base = base
        self.callback = callback
        lock = base.lockProvider.makeLock(.recursive)
        var attemptsLeft = address.port == 0 && tcp ? 16 : 1
        let reference = ServerReference()
        while true {
            let (fd, bound) = try Self.bindUDP(address)
            do {
                if tcp {
                    listener = try ConnectionListener(base: base, address: bound) { _, fd, peer in
                        if let server = reference.server { server.acceptTCP(fd, peer: peer) } else { Glibc.close(fd) }
                    }
                }
            } catch EventError.system(let error) where error.errno == EADDRINUSE && attemptsLeft > 1 {
                Glibc.close(fd)
                attemptsLeft -= 1
                continue
            } catch {
                Glibc.close(fd)
                throw error
            }
            udpSocket = fd
            self.address = bound
            break
        }
        reference.server = self
        do {
            let fd = udpSocket
            udpEvent = try Event(base: base, fd: fd, flags: [.read, .persist, .finalize]) { [weak self] _, _ in
                self?.readDatagrams()
            }
            try udpEvent?.add()
        } catch {
            listener?.free()
            Glibc.close(udpSocket)
            throw error
        }
    }

    private static func bindUDP(_ address: SocketAddress) throws -> (Int32, SocketAddress) {
        let fd = Glibc.socket(address.domain, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw EventError.system(.last("socket")) }
        if address.withSockaddr({ bind(fd, $0, $1) }) < 0 {
            let error = SystemCallError.last("bind", fd: fd)
            Glibc.close(fd)
            throw EventError.system(error)
        }
        do {
            return (fd, try SocketAddress.local(of: fd))
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Stops listening and closes every connection; requests not answered yet are dropped.
    public func free() {
        let connections = lock.withLock { () -> [SocketBufferEvent] in
            guard !closed else { return [] }
            closed = true
            let all = Array(tcpConnections.values)
            tcpConnections = [:]
            return all
        }
        for connection in connections { connection.free() }
        listener?.free()
        let fd = udpSocket
        try? udpEvent?.finalize { _ in Glibc.close(fd) }
    }

    // MARK: UDP

    private func readDatagrams() {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        // At most a batch per wake-up, so one flood cannot starve the loop.
        for _ in 0..<64 {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                    buffer.withUnsafeMutableBytes { recvfrom(udpSocket, $0.baseAddress, $0.count, 0, address, &length) }
                }
            }
            if n < 0 { return }
            let peer = withUnsafeBytes(of: storage) { SocketAddress(raw: $0.baseAddress!, length: Int(length)) }
            let bytes = Array(buffer[0..<n])
            let fd = udpSocket
            handle(bytes, peer: peer, isTCP: false) { reply in
                _ = reply.withUnsafeBytes { data in
                    peer.withSockaddr { sendto(fd, data.baseAddress, data.count, Int32(MSG_NOSIGNAL), $0, $1) }
                }
            }
        }
    }

    /// Parses a query and hands it to the callback; a query that does not
    /// parse gets FORMERR when its header can be read, else nothing.
    private func handle(_ bytes: [UInt8], peer: SocketAddress, isTCP: Bool, reply: @escaping @Sendable ([UInt8]) -> Void) {
        if lock.withLock({ closed }) { return }
        let message: DNSMessage
        do {
            message = try DNSMessage.parse(bytes)
        } catch {
            guard bytes.count >= 12, bytes[2] & 0x80 == 0 else { return }
            var formatError = DNSMessage()
            formatError.id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
            formatError.isResponse = true
            formatError.responseCode = .formatError
            if let reply_ = try? formatError.serialized() { reply(reply_) }
            return
        }
        // Responses sent to a server port are ignored.
        guard !message.isResponse else { return }
        callback(Request(message: message, peer: peer, isTCP: isTCP, server: self, reply: reply))
    }

    // MARK: TCP

    private func acceptTCP(_ fd: Int32, peer: SocketAddress) {
        guard let connection = try? SocketBufferEvent(base: base, fd: fd, options: [.closeOnFree]) else {
            Glibc.close(fd)
            return
        }
        let key = ObjectIdentifier(connection)
        let accepted = lock.withLock { () -> Bool in
            guard !closed else { return false }
            tcpConnections[key] = connection
            return true
        }
        guard accepted else {
            connection.free()
            return
        }
        connection.setCallbacks(
            read: { [weak self] connection in self?.readTCP(connection, peer: peer) },
            write: nil,
            event: { [weak self] connection, what, _ in
                if what.contains(.endOfFile) || what.contains(.error) || what.contains(.timeout) {
                    self?.lock.withLock { _ = self?.tcpConnections.removeValue(forKey: ObjectIdentifier(connection)) }
                    connection.free()
                }
            })
        // A client that connects and says nothing is closed after 10 s.
        try? connection.setTimeouts(read: .seconds(10), write: .seconds(10))
        try? connection.enable(.read)
    }

    /// Reads length-prefixed messages (RFC 1035 4.2.2).
    private func readTCP(_ connection: BufferEvent, peer: SocketAddress) {
        while true {
            let input = connection.input
            guard input.count >= 2, let prefix = try? input.copyOut(count: 2) else { return }
            let length = Int(prefix[0]) << 8 | Int(prefix[1])
            guard input.count >= 2 + length else { return }
            try? input.drain(2)
            let bytes = (try? input.remove(upTo: length)) ?? []
            handle(bytes, peer: peer, isTCP: true) { [weak connection] reply in
                guard let connection else { return }
                try? connection.write([UInt8(reply.count >> 8), UInt8(reply.count & 0xFF)] + reply)
            }
        }
    }
}

/// Lets the listener's callback reach the server without keeping it alive.
private final class ServerReference: @unchecked Sendable {
    // Set once, at the end of DNSServer.init; a connection accepted before
    // that (another thread running the loop) is closed.
    weak var server: DNSServer?
}
