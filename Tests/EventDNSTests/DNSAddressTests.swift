import EventBuffers
import EventCore
import EventDNS
import EventLocking
import EventTestSupport
import Foundation
import Glibc
import Testing

@Suite("Address lookups (getaddrinfo-style) and connecting bufferevents by host name")
struct DNSAddressTests {
    static let zone = HostsZone(text: "127.0.0.1 loop.zone.test\n::1 loop.zone.test\n192.0.2.7 v4only.zone.test\n")

    private func server(_ base: EventBase) throws -> DNSServer {
        try DNSServer(base: base, address: DNSKit.address(0)) { request in
            guard let question = request.questions.first else { return }
            let answers = Self.zone.answers(question)
            try? request.respond(answers: answers, responseCode: answers.isEmpty && !Self.zone.knows(question.name) ? .nameError : .noError)
        }
    }

    private func addresses(_ resolver: DNSResolver, _ host: String, _ service: String, _ family: DNSResolver.AddressFamily = .any)
        throws -> Result<[SocketAddress], DNSLookupError>?
    {
        let result = DNSVar<Result<[SocketAddress], DNSLookupError>?>(nil)
        resolver.addresses(host: host, service: service, family: family) { result.value = $0 }
        try DNSKit.run(resolver.base) { result.value != nil }
        return result.value
    }

    @Test func numericHostsNeedNoQuery() throws {
        let base = try DNSKit.ownedBase()
        let silent = try Misbehaving(base: base) { _, _ in [] }
        defer { silent.close() }
        let resolver = try DNSKit.resolver(base, [silent.port])
        #expect(try addresses(resolver, "192.0.2.1", "80")?.get().map(\.description) == ["192.0.2.1:80"])
        #expect(try addresses(resolver, "[2001:db8::1]", "http")?.get().map(\.description) == ["[2001:db8::1]:80"])
        #expect(silent.queries.isEmpty)
        #expect(try addresses(resolver, "192.0.2.1", "no-such-service") == .failure(.badName(.badName("no-such-service", "not a port number or a known service"))))
        resolver.shutdown()
        try base.shutdown()
    }

    @Test func bothFamiliesInParallelAlternating() throws {
        let base = try DNSKit.ownedBase()
        let dns = try server(base)
        let resolver = try DNSKit.resolver(base, [try #require(dns.address.port)])
        let both = try #require(try addresses(resolver, "loop.zone.test", "8080")).get()
        #expect(Set(both.map(\.description)) == ["127.0.0.1:8080", "[::1]:8080"])
        #expect(try addresses(resolver, "loop.zone.test", "8080", .ipv4)?.get().map(\.description) == ["127.0.0.1:8080"])
        #expect(try addresses(resolver, "v4only.zone.test", "1")?.get().map(\.description) == ["192.0.2.7:1"])
        #expect(try addresses(resolver, "missing.zone.test", "1") == .failure(.nameError("missing.zone.test")))
        resolver.shutdown()
        dns.free()
        try base.shutdown()
    }

    @Test func hostsFileComesFirst() throws {
        let base = try DNSKit.ownedBase()
        let silent = try Misbehaving(base: base) { _, _ in [] }
        defer { silent.close() }
        let path = NSTemporaryDirectory() + "swiftevent-hosts-\(getpid())"
        try "10.9.8.7 fromhosts.test\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let resolver = try DNSKit.resolver(base, [silent.port]) { $0.hostsFile = path }
        let answer = try #require(try DNSKit.lookup(resolver, "fromhosts.test", .a)).get()
        #expect(answer.source == .hostsFile)
        #expect(answer.addresses == [[10, 9, 8, 7]])
        #expect(silent.queries.isEmpty)
        resolver.shutdown()
        try base.shutdown()
    }

    /// A socket bufferevent connects to a host name through the resolver;
    /// a name that does not exist is an error event.
    @Test func bufferEventConnectsByHostName() throws {
        let base = try DNSKit.ownedBase()
        let dns = try server(base)
        let resolver = try DNSKit.resolver(base, [try #require(dns.address.port)])
        let accepted = DNSVar(0)
        let listener = try ConnectionListener(base: base, address: DNSKit.address(0)) { _, fd, _ in
            accepted.value += 1
            close(fd)
        }
        let port = try #require(listener.localAddress?.port)
        let events = DNSVar<[BufferEvent.What]>([])
        let client = try SocketBufferEvent(base: base, options: [.closeOnFree])
        client.setCallbacks(read: nil, write: nil, event: { _, what, _ in events.value.append(what) })
        client.connect(hostname: "loop.zone.test", port: port, resolver: resolver, family: .ipv4)
        #expect(try DNSKit.run(base) { accepted.value == 1 && events.value.contains(.connected) })

        let failing = try SocketBufferEvent(base: base, options: [.closeOnFree])
        let errors = DNSVar<[Int32]>([])
        failing.setCallbacks(read: nil, write: nil, event: { _, what, error in if what.contains(.error) { errors.value.append(error) } })
        failing.connect(hostname: "missing.zone.test", port: port, resolver: resolver)
        #expect(try DNSKit.run(base) { !errors.value.isEmpty })
        #expect(errors.value == [ENOENT])
        client.free()
        failing.free()
        listener.free()
        resolver.shutdown()
        dns.free()
        _ = try? base.loop(.nonBlocking)
        try base.shutdown()
    }
}
