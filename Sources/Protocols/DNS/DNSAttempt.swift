import EventBackends
import EventBuffers
import EventCore
import Glibc

extension DNSResolver {
    static func monotonicNow() -> Duration {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
    }

    /// One query sent to one nameserver: over UDP from a fresh socket
    /// (a random source port, connected so only that nameserver's address
    /// and port are heard), or over TCP with length-prefixed messages.
    /// Guarded by the resolver's lock; its events call back into the resolver.
    final class Attempt: @unchecked Sendable {
        // Confinement: every `var` is guarded by the resolver's lock.
        weak var resolver: DNSResolver?
        weak var request: Request?
        let serverIndex: Int
        let address: SocketAddress
        let id: UInt16
        /// The question exactly as sent (case included).
        let question: DNSQuestion
        let query: [UInt8]
        /// For probes: any reply means alive.
        var onProbeResult: ((Bool) -> Void)?
        private var fd: Int32 = -1
        private var readEvent: Event?
        private var timer: Event?
        private var tcp: SocketBufferEvent?
        private var closed = false

        init(resolver: DNSResolver, request: Request?, serverIndex: Int, address: SocketAddress, id: UInt16,
             question: DNSQuestion, query: [UInt8]) {
            self.resolver = resolver
            self.request = request
            self.serverIndex = serverIndex
            self.address = address
            self.id = id
            self.question = question
            self.query = query
        }

        /// Sends over UDP; an errno if that could not even start.
        func startUDP() -> Int32? {
            guard let resolver else { return EINVAL }
            let socket = Glibc.socket(
                address.domain, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard socket >= 0 else { return errno }
            fd = socket
            guard address.withSockaddr({ Glibc.connect(socket, $0, $1) }) == 0 else { return errno }
            let sent = query.withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent == query.count else { return sent < 0 ? errno : EMSGSIZE }
            do {
                readEvent = try Event(base: resolver.base, fd: socket, flags: [.read, .persist, .finalize]) { [weak self] _, _ in
                    self?.readUDP()
                }
                try readEvent?.add()
                try armTimer()
            } catch {
                return EIO
            }
            return nil
        }

        /// Sends over TCP (a truncated UDP answer, or TCP forced).
        func startTCP() -> Int32? {
            guard let resolver else { return EINVAL }
            do {
                let connection = try SocketBufferEvent(base: resolver.base, options: [.closeOnFree])
                tcp = connection
                connection.setCallbacks(
                    read: { [weak self] bev in
                        let input = bev.input
                        guard input.count >= 2, let prefix = try? input.copyOut(count: 2) else { return }
                        let length = Int(prefix[0]) << 8 | Int(prefix[1])
                        guard input.count >= 2 + length else { return }
                        try? input.drain(2)
                        let message = (try? input.remove(upTo: length)) ?? []
                        self?.received(message, overTCP: true)
                    },
                    write: nil,
                    event: { [weak self] _, what, error in
                        if what.contains(.connected) { return }
                        self?.failed(error != 0 ? error : ECONNRESET)
                    })
                try connection.enable(.read)
                try connection.connect(to: address)
                try connection.write([UInt8(query.count >> 8), UInt8(query.count & 0xFF)] + query)
                try armTimer()
            } catch {
                return ECONNREFUSED
            }
            return nil
        }

        private func armTimer() throws {
            guard let resolver else { return }
            if timer == nil {
                timer = try Event(base: resolver.base, fd: -1, flags: [.finalize]) { [weak self] _, _ in
                    self?.timedOut()
                }
            }
            try timer?.add(timeout: resolver.configuration.timeout)
        }

        private func readUDP() {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 {
                    // ECONNREFUSED: an ICMP port unreachable from the nameserver.
                    if errno == ECONNREFUSED { failed(ECONNREFUSED) }
                    return
                }
                received(Array(buffer[0..<n]), overTCP: false)
                if closed { return }
            }
        }

        /// A reply: dropped unless it is the answer to this question, byte
        /// for byte; then handed to the resolver.
        private func received(_ bytes: [UInt8], overTCP: Bool) {
            guard let resolver else { return }
            resolver.lock.withLock {
                guard !closed else { return }
                guard let message = try? DNSMessage.parse(bytes), message.isResponse, message.id == id else { return }
                // A reply to another question (or a spoofed echo with the
                // wrong case) is dropped; the real answer may still come.
                guard message.questions.count == 1, message.questions[0].type == question.type,
                    message.questions[0].name.isIdentical(to: question.name)
                else { return }
                if let onProbeResult {
                    close()
                    onProbeResult(true)
                    return
                }
                if message.isTruncated && !overTCP {
                    resolver.attemptEnded(self, .truncated)
                } else {
                    resolver.attemptEnded(self, .answer(message))
                }
            }
        }

        private func timedOut() { endWithoutAnswer(.timedOut) }

        private func failed(_ error: Int32) { endWithoutAnswer(.failed(error)) }

        /// No answer: a probe learns the nameserver is still down; a query moves on.
        private func endWithoutAnswer(_ outcome: Outcome) {
            guard let resolver else { return }
            resolver.lock.withLock {
                guard !closed else { return }
                if let onProbeResult {
                    close()
                    onProbeResult(false)
                    return
                }
                resolver.attemptEnded(self, outcome)
            }
        }

        /// Closes the UDP socket only (before retrying over TCP).
        func closeSocket() {
            let socket = fd
            fd = -1
            if let readEvent {
                try? readEvent.finalize { _ in if socket >= 0 { Glibc.close(socket) } }
            } else if socket >= 0 {
                Glibc.close(socket)
            }
            readEvent = nil
        }

        func close() {
            guard !closed else { return }
            closed = true
            closeSocket()
            try? timer?.finalize { _ in }
            timer = nil
            tcp?.free()
            tcp = nil
        }
    }
}
