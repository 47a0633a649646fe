// Helpers for the DNS tests: dnsmasq on 127.0.0.1 at a high port, owned
// bases with a loop runner, a resolver pointed at given nameservers, and a
// misbehaving nameserver of our own.
import EventBuffers
import EventCore
import EventDNS
import EventLocking
import EventTestSupport
import Foundation
import Glibc
import Testing

/// Confined to the thread running a test's owned base.
final class DNSVar<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

enum DNSKit {
    static func ownedBase() throws -> EventBase {
        try ownedEpollBase()
    }

    @discardableResult
    static func run(_ base: EventBase, timeout: Duration = .seconds(5), until done: @escaping @Sendable () -> Bool) throws -> Bool {
        try runLoop(base, timeout: timeout, until: done)
    }

    static func address(_ port: UInt16) -> SocketAddress { try! SocketAddress(ipv4: "127.0.0.1", port: port) }

    /// A free UDP+TCP port on 127.0.0.1 (bound once, then closed).
    static func freePort() throws -> UInt16 {
        for _ in 0..<20 {
            let port = UInt16.random(in: 20_000...60_000)
            let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer {
                close(udp)
                close(tcp)
            }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(udp, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                        && bind(tcp, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            if ok { return port }
        }
        throw ShellError(command: "freePort", status: 1, output: "no free port")
    }

    /// A resolver on `base` for the given nameservers (no hosts file, short timeouts).
    static func resolver(
        _ base: EventBase, _ ports: [UInt16], _ change: (inout DNSResolver.Configuration) -> Void = { _ in }
    ) throws -> DNSResolver {
        var configuration = DNSResolver.Configuration(nameservers: ports.map(address))
        configuration.hostsFile = nil
        configuration.timeout = .milliseconds(400)
        configuration.attempts = 2
        change(&configuration)
        return try DNSResolver(base: base, configuration: configuration)
    }

    /// Runs one lookup to its end.
    static func lookup(
        _ resolver: DNSResolver, _ name: String, _ type: DNSRecordType, timeout: Duration = .seconds(10)
    ) throws -> Result<DNSAnswer, DNSLookupError>? {
        let result = DNSVar<Result<DNSAnswer, DNSLookupError>?>(nil)
        resolver.query(name, type: type) { result.value = $0 }
        try run(resolver.base, timeout: timeout) { result.value != nil }
        return result.value
    }

    static func ipv4(_ text: String) -> [UInt8] { text.split(separator: ".").map { UInt8($0)! } }
}

/// dnsmasq serving a small zone for example.test on 127.0.0.1.
final class Dnsmasq: @unchecked Sendable {
    // Immutable after init; `Child` guards its own state.
    let port: UInt16
    private let child: Child
    private let hostsPath: String

    init() throws {
        port = try DNSKit.freePort()
        hostsPath = NSTemporaryDirectory() + "swiftevent-dnsmasq-\(getpid())-\(port)"
        try """
            192.0.2.10 web.example.test
            2001:db8::10 web.example.test
            192.0.2.20 other.example.test
            """.write(toFile: hostsPath, atomically: true, encoding: .utf8)
        child = try Child(
            "/usr/sbin/dnsmasq",
            [
                "--keep-in-foreground", "--no-daemon", "--user=root", "--port=\(port)", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--addn-hosts=\(hostsPath)",
                "--cname=alias.example.test,web.example.test", "--cname=alias2.example.test,alias.example.test",
                "--mx-host=example.test,mail.example.test,10", "--srv-host=_sip._tcp.example.test,sip.example.test,5060,1,2",
                "--txt-record=example.test,hello world", "--local=/example.test/", "--local=/nowhere.test/",
                "--local-ttl=60", "--log-facility=-",
            ])
        guard child.waitFor("read \(hostsPath)") else {
            child.kill()
            throw ShellError(command: "dnsmasq", status: 1, output: child.output)
        }
    }

    deinit {
        child.kill()
        unlink(hostsPath)
    }
}

/// A nameserver of our own that answers through `behave`, which sees each
/// query and returns the datagrams to send back (possibly several, possibly none).
final class Misbehaving: @unchecked Sendable {
    // Confined to the loop thread of `base` (owned).
    let port: UInt16
    let fd: Int32
    private var event: Event?
    var queries: [DNSMessage] = []

    init(base: EventBase, behave: @escaping @Sendable (DNSMessage, Int) -> [[UInt8]]) throws {
        let socketFD = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        fd = socketFD
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(socketFD, pointer, length) == 0 ? getsockname(socketFD, pointer, &length) : -1
            }
        }
        port = UInt16(bigEndian: address.sin_port)
        let fd = socketFD
        event = try Event(base: base, fd: fd, flags: [.read, .persist]) { [unowned self] _, _ in
            var buffer = [UInt8](repeating: 0, count: 4096)
            var peer = sockaddr_storage()
            var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &peer) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                    buffer.withUnsafeMutableBytes { recvfrom(fd, $0.baseAddress, $0.count, 0, address, &peerLength) }
                }
            }
            guard n > 0, let query = try? DNSMessage.parse(Array(buffer[0..<n])) else { return }
            queries.append(query)
            for reply in behave(query, queries.count) {
                _ = withUnsafePointer(to: &peer) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                        reply.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, address, peerLength) }
                    }
                }
            }
        }
        try event?.add()
    }

    func close() {
        try? event?.delete()
        Glibc.close(fd)
    }

    /// A reply to `query` with `answers`, optionally with another id, question or rcode.
    static func reply(
        to query: DNSMessage, answers: [DNSRecord] = [], id: UInt16? = nil, question: DNSQuestion? = nil,
        code: DNSResponseCode = .noError, truncated: Bool = false
    ) -> [UInt8] {
        var message = DNSMessage()
        message.id = id ?? query.id
        message.isResponse = true
        message.responseCode = code
        message.isTruncated = truncated
        message.questions = [question ?? query.questions[0]]
        message.answers = answers
        return (try? message.serialized()) ?? []
    }
}
