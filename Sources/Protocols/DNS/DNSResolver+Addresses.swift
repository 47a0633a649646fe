import EventBackends
import EventBuffers
import EventCore
import Glibc

extension DNSResolver {
    /// Which address families an address lookup returns.
    public enum AddressFamily: Sendable, Hashable {
        case any
        case ipv4
        case ipv6
    }

    public typealias AddressCallback = @Sendable (Result<[SocketAddress], DNSLookupError>) -> Void

    /// Addresses to connect to for `host` and `service` (libevent's
    /// `evdns_getaddrinfo`): a numeric host without a query; otherwise the
    /// hosts file, then A and AAAA asked in parallel. `service` is a port
    /// number or a name from /etc/services (tcp). The order is the order to
    /// try them in: families alternate (RFC 8305), IPv6 first when this
    /// machine has an IPv6 route, IPv4 first otherwise.
    @discardableResult
    public func addresses(
        host: String, service: String, family: AddressFamily = .any, callback: @escaping AddressCallback
    ) -> DNSRequest {
        let handle = DNSRequest()
        let lookup = AddressLookup(resolver: self, callback: callback)
        guard let port = Self.port(of: service) else {
            lookup.deliver(.failure(.badName(.badName(service, "not a port number or a known service"))))
            return handle
        }
        if let numeric = try? SocketAddress(ip: host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host, port: port) {
            let wanted = family == .any || (family == .ipv6) == (numeric.family == .ipv6)
            lookup.deliver(wanted ? .success([numeric]) : .failure(.nameError(DNSName.root)))
            return handle
        }
        let types: [DNSRecordType] = switch family {
        case .any: [.a, .aaaa]
        case .ipv4: [.a]
        case .ipv6: [.aaaa]
        }
        lookup.expect(types.count)
        let requests = types.map { type in
            query(host, type: type) { result in lookup.record(type, result, port: port) }
        }
        handle.cancelAction = { for request in requests { request.cancel() } }
        return handle
    }

    static func port(of service: String) -> UInt16? {
        if let number = UInt16(service) { return number }
        guard let entry = getservbyname(service, "tcp") else { return nil }
        return UInt16(bigEndian: UInt16(truncatingIfNeeded: entry.pointee.s_port))
    }

    /// Whether a UDP socket can be connected to a global IPv6 address
    /// (no packet is sent): the test getaddrinfo's RFC 6724 sorting makes.
    static let hasIPv6Route: Bool = {
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard let address = try? SocketAddress(ipv6: "2001:4860:4860::8888", port: 53) else { return false }
        return address.withSockaddr { connect(fd, $0, $1) } == 0
    }()

    /// Collects the A and AAAA answers of one address lookup.
    final class AddressLookup: @unchecked Sendable {
        // Confinement: every `var` is guarded by the resolver's lock.
        private weak var resolver: DNSResolver?
        private let base: EventBase
        private var callback: AddressCallback?
        private var outstanding = 0
        private var ipv4: [SocketAddress] = []
        private var ipv6: [SocketAddress] = []
        private var failures: [DNSLookupError] = []
        private var delivery: Event?

        init(resolver: DNSResolver, callback: @escaping AddressCallback) {
            self.resolver = resolver
            base = resolver.base
            self.callback = callback
        }

        func expect(_ count: Int) { resolver?.lock.withLock { outstanding = count } }

        /// One family's answer (on the loop, from the query's callback).
        func record(_ type: DNSRecordType, _ result: Result<DNSAnswer, DNSLookupError>, port: UInt16) {
            guard let resolver else { return }
            let done = resolver.lock.withLock { () -> Bool in
                switch result {
                case .success(let answer):
                    for bytes in answer.addresses {
                        if bytes.count == 4, let address = try? SocketAddress(ipv4: bytes.map(String.init).joined(separator: "."), port: port) {
                            ipv4.append(address)
                        } else if bytes.count == 16, let address = try? SocketAddress(ipv6: DNSRecordData.ipv6Text(bytes), port: port) {
                            ipv6.append(address)
                        }
                    }
                case .failure(let error):
                    failures.append(error)
                }
                outstanding -= 1
                return outstanding == 0
            }
            guard done else { return }
            let (first, second) = DNSResolver.hasIPv6Route ? (ipv6, ipv4) : (ipv4, ipv6)
            var ordered: [SocketAddress] = []
            for index in 0..<max(first.count, second.count) {
                if index < first.count { ordered.append(first[index]) }
                if index < second.count { ordered.append(second[index]) }
            }
            if !ordered.isEmpty {
                finish(.success(ordered))
            } else {
                // Prefer the most telling failure: cancelled, then NXDOMAIN, then the rest.
                let error = failures.first { $0 == .cancelled } ?? failures.first { if case .nameError = $0 { true } else { false } }
                    ?? failures.first ?? .nameError(DNSName.root)
                finish(.failure(error))
            }
        }

        /// Delivers on the loop, once (for numeric hosts and bad input, which end at once).
        func deliver(_ result: Result<[SocketAddress], DNSLookupError>) {
            delivery = try? Event(base: base, fd: -1, flags: [.finalize]) { [self] event, _ in
                finish(result)
                try? event.finalize { _ in }
            }
            try? delivery?.activate()
        }

        private func finish(_ result: Result<[SocketAddress], DNSLookupError>) {
            let callback = resolver?.lock.withLock { () -> AddressCallback? in
                let callback = self.callback
                self.callback = nil
                delivery = nil
                return callback
            } ?? { () -> AddressCallback? in
                let callback = self.callback
                self.callback = nil
                return callback
            }()
            callback?(result)
        }
    }
}

extension SocketBufferEvent {
    /// Resolves `hostname` with `resolver` and connects to the first address
    /// (libevent's `bufferevent_socket_connect_hostname`). A failed lookup is
    /// reported to the event callback as `.error` (errno ENOENT for a name
    /// that does not exist, EAGAIN for a lookup that failed otherwise);
    /// `resolved` hears the lookup's own result.
    @discardableResult
    public func connect(
        hostname: String, port: UInt16, resolver: DNSResolver, family: DNSResolver.AddressFamily = .any,
        resolved: (@Sendable (Result<SocketAddress, DNSLookupError>) -> Void)? = nil
    ) -> DNSRequest {
        resolver.addresses(host: hostname, service: String(port), family: family) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let addresses):
                guard let address = addresses.first else { return }
                resolved?(.success(address))
                do {
                    try self.connect(to: address)
                } catch {
                    self.reportConnectFailure(errno: ECONNREFUSED)
                }
            case .failure(let error):
                resolved?(.failure(error))
                if case .nameError = error {
                    self.reportConnectFailure(errno: ENOENT)
                } else {
                    self.reportConnectFailure(errno: EAGAIN)
                }
            }
        }
    }
}
