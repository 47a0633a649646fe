import EventBuffers
import EventCore
import EventDNS
import EventLocking
import EventTestSupport
import Foundation
import Glibc
import Testing

@Suite("DNS resolver against dnsmasq", .serialized)
struct DNSAgainstDnsmasqTests {
    @Test func recordTypesAgainstDnsmasq() throws {
        let server = try Dnsmasq()
        let base = try DNSKit.ownedBase()
        let resolver = try DNSKit.resolver(base, [server.port])

        let a = try #require(try DNSKit.lookup(resolver, "web.example.test", .a)).get()
        #expect(a.addresses == [DNSKit.ipv4("192.0.2.10")])
        #expect(a.source == .network)

        let aaaa = try #require(try DNSKit.lookup(resolver, "web.example.test", .aaaa)).get()
        #expect(aaaa.records.map(\.data.description) == ["2001:db8::10"])

        // A CNAME chain of two, followed to the address.
        let chained = try #require(try DNSKit.lookup(resolver, "alias2.example.test", .a)).get()
        #expect(chained.cnameChain.map(\.description) == ["alias.example.test", "web.example.test"])
        #expect(chained.addresses == [DNSKit.ipv4("192.0.2.10")])

        let mx = try #require(try DNSKit.lookup(resolver, "example.test", .mx)).get()
        #expect(mx.records.map(\.data) == [.mx(preference: 10, exchange: "mail.example.test")])

        let srv = try #require(try DNSKit.lookup(resolver, "_sip._tcp.example.test", .srv)).get()
        #expect(srv.records.map(\.data) == [.srv(priority: 1, weight: 2, port: 5060, target: "sip.example.test")])

        let txt = try #require(try DNSKit.lookup(resolver, "example.test", .txt)).get()
        #expect(txt.records.map(\.data) == [.txt([Array("hello world".utf8)])])

        let ptr = DNSVar<Result<DNSAnswer, DNSLookupError>?>(nil)
        resolver.reverse("192.0.2.10") { ptr.value = $0 }
        #expect(try DNSKit.run(base) { ptr.value != nil })
        #expect(try ptr.value?.get().records.map(\.data) == [.ptr("web.example.test")])

        let missing = try #require(try DNSKit.lookup(resolver, "nope.example.test", .a))
        #expect(missing == .failure(.nameError("nope.example.test")))
        resolver.shutdown()
        try base.shutdown()
    }

    @Test func searchDomainsAndNdots() throws {
        let server = try Dnsmasq()
        let base = try DNSKit.ownedBase()
        let resolver = try DNSKit.resolver(base, [server.port]) {
            $0.searchDomains = ["nowhere.test", "example.test"]
            $0.ndots = 2
        }
        // "web" has fewer than 2 dots: the search list first; nowhere.test
        // gives NXDOMAIN, example.test answers.
        let answer = try #require(try DNSKit.lookup(resolver, "web", .a)).get()
        #expect(answer.question.name == "web.example.test")
        #expect(answer.addresses == [DNSKit.ipv4("192.0.2.10")])
        // A trailing dot: no search; dnsmasq refuses "web." (no upstream).
        let absolute = try #require(try DNSKit.lookup(resolver, "web.", .a))
        #expect(absolute == .failure(.refused))
        resolver.shutdown()
        try base.shutdown()
    }

    @Test func forcedTCP() throws {
        let server = try Dnsmasq()
        let base = try DNSKit.ownedBase()
        let resolver = try DNSKit.resolver(base, [server.port]) { $0.forceTCP = true }
        let answer = try #require(try DNSKit.lookup(resolver, "web.example.test", .a)).get()
        #expect(answer.addresses == [DNSKit.ipv4("192.0.2.10")])
        resolver.shutdown()
        try base.shutdown()
    }

    /// A nameserver that never answers listed first: the lookup still
    /// succeeds through the second, after one attempt's timeout.
    @Test func silentNameserverNextToAWorkingOne() throws {
        let server = try Dnsmasq()
        let base = try DNSKit.ownedBase()
        let silent = try Misbehaving(base: base) { _, _ in [] }
        defer { silent.close() }
        let resolver = try DNSKit.resolver(base, [silent.port, server.port]) { $0.timeout = .milliseconds(300) }
        let start = now()
        let answer = try #require(try DNSKit.lookup(resolver, "web.example.test", .a)).get()
        #expect(answer.addresses == [DNSKit.ipv4("192.0.2.10")])
        #expect(answer.nameserver == DNSKit.address(server.port))
        #expect(now() - start >= .milliseconds(250))
        #expect(silent.queries.count == 1)
        resolver.shutdown()
        try base.shutdown()
    }

    /// A second lookup of the same name is answered from the cache; with
    /// the cache off it goes to the network again.
    @Test(arguments: [true, false])
    func cache(enabled: Bool) throws {
        let server = try Dnsmasq()
        let base = try DNSKit.ownedBase()
        let resolver = try DNSKit.resolver(base, [server.port]) { $0.cacheEnabled = enabled }
        _ = try #require(try DNSKit.lookup(resolver, "web.example.test", .a)).get()
        let second = try #require(try DNSKit.lookup(resolver, "web.example.test", .a)).get()
        #expect(second.source == (enabled ? .cache : .network))
        #expect(second.addresses == [DNSKit.ipv4("192.0.2.10")])
        #expect(resolver.queriesSent == (enabled ? 1 : 2))
        resolver.shutdown()
        try base.shutdown()
    }
}

@Suite("DNS resolver against misbehaving nameservers")
struct DNSMisbehaviourTests {
    static let answer: [DNSRecord] = [.a("victim.test", [203, 0, 113, 7])]

    /// Wrong id, then the right id with another question, then a
    /// flipped-case echo: each dropped; the real answer that follows is taken.
    @Test func spoofAttemptsAreDroppedAndTheRealAnswerTaken() throws {
        let base = try DNSKit.ownedBase()
        let server = try Misbehaving(base: base) { query, _ in
            let question = query.questions[0]
            var flipped = question
            flipped.name = try! DNSName(String(question.name.description.map { $0.isUppercase ? Character($0.lowercased()) : Character($0.uppercased()) }))
            return [
                Misbehaving.reply(to: query, answers: [.a(question.name, [6, 6, 6, 6])], id: query.id &+ 1),
                Misbehaving.reply(to: query, answers: [.a("other.test", [6, 6, 6, 6])], question: DNSQuestion(name: "other.test", type: .a)),
                Misbehaving.reply(to: query, answers: [.a(flipped.name, [6, 6, 6, 6])], question: flipped),
                Misbehaving.reply(to: query, answers: [.a(question.name, [203, 0, 113, 7])]),
            ]
        }
        defer { server.close() }
        let resolver = try DNSKit.resolver(base, [server.port])
        let answer = try #require(try DNSKit.lookup(resolver, "victim.test", .a)).get()
        #expect(answer.addresses == [[203, 0, 113, 7]])
        // Five more lookups: the names sent carry randomised case (all
        // lower-case by chance in every one: 2^-50).
        resolver.clearCache()
        for index in 0..<5 { _ = try DNSKit.lookup(resolver, "victim\(index).test", .a) }
        #expect(server.queries.contains { $0.questions[0].name.description != $0.questions[0].name.description.lowercased() })
        resolver.shutdown()
        try base.shutdown()
    }

    /// Records whose owner is not the question (or its CNAME chain) are ignored.
    @Test func recordsForOtherNamesAreIgnored() throws {
        let base = try DNSKit.ownedBase()
        let server = try Misbehaving(base: base) { query, _ in
            let name = query.questions[0].name
            return [Misbehaving.reply(to: query, answers: [.a("bank.test", [6, 6, 6, 6]), .a(name, [192, 0, 2, 1])])]
        }
        defer { server.close() }
        let resolver = try DNSKit.resolver(base, [server.port])
        let answer = try #require(try DNSKit.lookup(resolver, "www.test", .a)).get()
        #expect(answer.addresses == [[192, 0, 2, 1]])
        resolver.shutdown()
        try base.shutdown()
    }

    /// SERVFAIL from the first nameserver moves on to the second at once (no timeout wait).
    @Test func serverFailureMovesOnAtOnce() throws {
        let base = try DNSKit.ownedBase()
        let failing = try Misbehaving(base: base) { query, _ in [Misbehaving.reply(to: query, code: .serverFailure)] }
        let good = try Misbehaving(base: base) { query, _ in
            [Misbehaving.reply(to: query, answers: [.a(query.questions[0].name, [192, 0, 2, 2])])]
        }
        defer {
            failing.close()
            good.close()
        }
        let resolver = try DNSKit.resolver(base, [failing.port, good.port]) { $0.timeout = .seconds(10) }
        let start = now()
        let answer = try #require(try DNSKit.lookup(resolver, "x.test", .a)).get()
        #expect(answer.addresses == [[192, 0, 2, 2]])
        // Far below one timeout: the second nameserver was asked at once.
        #expect(now() - start < .seconds(3))
        resolver.shutdown()
        try base.shutdown()
    }

    /// Every nameserver SERVFAIL, or every one REFUSED: reported as such, quickly, not as a timeout.
    @Test(arguments: [DNSResponseCode.serverFailure, .refused])
    func everyNameserverFailingIsReportedAsSuch(_ code: DNSResponseCode) throws {
        let base = try DNSKit.ownedBase()
        let servers = try (0..<2).map { _ in try Misbehaving(base: base) { query, _ in [Misbehaving.reply(to: query, code: code)] } }
        defer { for server in servers { server.close() } }
        let resolver = try DNSKit.resolver(base, servers.map(\.port)) { $0.timeout = .seconds(10) }
        let start = now()
        let result = try #require(try DNSKit.lookup(resolver, "x.test", .a))
        #expect(result == .failure(code == .refused ? .refused : .serverFailure))
        // Far below one timeout: reported as soon as both answered.
        #expect(now() - start < .seconds(3))
        resolver.shutdown()
        try base.shutdown()
    }

    /// Every nameserver silent, with more requests than max-inflight: every
    /// request fails with a timeout within timeout × attempts (libevent #106 hangs).
    @Test func silentNameserversFailEveryRequestInTime() throws {
        let base = try DNSKit.ownedBase()
        let silent = try (0..<2).map { _ in try Misbehaving(base: base) { _, _ in [] } }
        defer { for server in silent { server.close() } }
        let resolver = try DNSKit.resolver(base, silent.map(\.port)) {
            $0.timeout = .milliseconds(200)
            $0.attempts = 2
            $0.maxInflight = 2
        }
        let results = DNSVar<[Result<DNSAnswer, DNSLookupError>]>([])
        let start = now()
        for index in 0..<10 { resolver.query("n\(index).test", type: .a) { results.value.append($0) } }
        #expect(try DNSKit.run(base, timeout: .seconds(5)) { results.value.count == 10 })
        let elapsed = now() - start
        #expect(results.value.allSatisfy { $0 == .failure(.timeout) })
        // 200 ms × 2 attempts per request, for queued requests too (the
        // bound leaves room for a loaded machine; libevent #106 never ends).
        #expect(elapsed < .seconds(3), "\(elapsed)")
        resolver.shutdown()
        try base.shutdown()
    }

    /// A truncated UDP answer is retried over TCP (our DNSServer truncates at 512 bytes).
    @Test func truncatedAnswerIsRetriedOverTCP() throws {
        let base = try DNSKit.ownedBase()
        let many = (1...60).map { DNSRecord.a("big.test", [10, 0, 0, UInt8($0)]) }
        let server = try DNSServer(base: base, address: DNSKit.address(0)) { request in
            try? request.respond(answers: many)
        }
        let port = try #require(server.address.port)
        let resolver = try DNSKit.resolver(base, [port]) { $0.ednsUDPSize = nil }
        let answer = try #require(try DNSKit.lookup(resolver, "big.test", .a)).get()
        #expect(answer.records.count == 60)
        resolver.shutdown()
        server.free()
        try base.shutdown()
    }

    /// A nameserver that answers FORMERR to EDNS0 is asked again without it.
    @Test func formatErrorToEDNSIsRetriedWithout() throws {
        let base = try DNSKit.ownedBase()
        let old = try Misbehaving(base: base) { query, _ in
            query.ednsUDPSize != nil
                ? [Misbehaving.reply(to: query, code: .formatError)]
                : [Misbehaving.reply(to: query, answers: [.a(query.questions[0].name, [192, 0, 2, 9])])]
        }
        defer { old.close() }
        let resolver = try DNSKit.resolver(base, [old.port])
        let answer = try #require(try DNSKit.lookup(resolver, "old.test", .a)).get()
        #expect(answer.addresses == [[192, 0, 2, 9]])
        #expect(old.queries.map { $0.ednsUDPSize != nil } == [true, false])
        resolver.shutdown()
        try base.shutdown()
    }

    /// Cancelling a request delivers `.cancelled` once; nothing after.
    @Test func cancelDeliversOnce() throws {
        let base = try DNSKit.ownedBase()
        let silent = try Misbehaving(base: base) { _, _ in [] }
        defer { silent.close() }
        let resolver = try DNSKit.resolver(base, [silent.port])
        let results = DNSVar<[Result<DNSAnswer, DNSLookupError>]>([])
        let request = resolver.query("x.test", type: .a) { results.value.append($0) }
        request.cancel()
        request.cancel()
        try DNSKit.run(base, timeout: .seconds(2)) { false }
        #expect(results.value == [.failure(.cancelled)])
        resolver.shutdown()
        try base.shutdown()
    }

    /// A nameserver that keeps timing out is marked down, and probed back up.
    @Test func downNameserverIsProbedBackUp() throws {
        let base = try DNSKit.ownedBase()
        let answering = DNSVar(false)
        let flaky = try Misbehaving(base: base) { query, _ in
            answering.value ? [Misbehaving.reply(to: query, code: .refused)] : []
        }
        defer { flaky.close() }
        let resolver = try DNSKit.resolver(base, [flaky.port]) {
            $0.timeout = .milliseconds(100)
            $0.attempts = 1
            $0.maxNameserverTimeouts = 2
            $0.initialProbeTimeout = .milliseconds(200)
        }
        for index in 0..<2 { _ = try DNSKit.lookup(resolver, "t\(index).test", .a) }
        #expect(resolver.nameserverStates.first?.isUp == false)
        answering.value = true
        #expect(try DNSKit.run(base, timeout: .seconds(3)) { resolver.nameserverStates.first?.isUp == true })
        resolver.shutdown()
        try base.shutdown()
    }
}

@Suite("DNS server port, queried by dig and by our resolver")
struct DNSServerTests {
    static let zone = HostsZone(text: "192.0.2.50 host.zone.test\n2001:db8::50 host.zone.test\n")

    private func startServer(_ base: EventBase) throws -> DNSServer {
        try DNSServer(base: base, address: DNSKit.address(0)) { request in
            guard let question = request.questions.first else { return }
            let answers = Self.zone.answers(question)
            if answers.isEmpty && !Self.zone.knows(question.name) {
                try? request.respond(answers: [], responseCode: .nameError)
            } else {
                try? request.respond(answers: answers)
            }
        }
    }

    @Test func digQueriesOurServer() throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        let server = try startServer(base)
        let port = try #require(server.address.port)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        func dig(_ arguments: [String]) throws -> String {
            try Shell.run("/usr/bin/dig", ["@127.0.0.1", "-p", "\(port)", "+time=2", "+tries=1"] + arguments)
        }
        #expect(try dig(["host.zone.test", "A", "+short"]).contains("192.0.2.50"))
        #expect(try dig(["host.zone.test", "AAAA", "+short", "+tcp"]).contains("2001:db8::50"))
        #expect(try dig(["-x", "192.0.2.50", "+short"]).contains("host.zone.test."))
        let missing = try dig(["nothing.zone.test", "A"])
        #expect(missing.contains("status: NXDOMAIN"))
        #expect(try dig(["host.zone.test", "A"]).contains("flags: qr aa rd"))
        try base.loopExit()
        loop.join()
        server.free()
        _ = try? base.loop(.nonBlocking)
        try? base.shutdown()
    }

    @Test func ourResolverQueriesOurServer() throws {
        let base = try DNSKit.ownedBase()
        let server = try startServer(base)
        let resolver = try DNSKit.resolver(base, [try #require(server.address.port)])
        let answer = try #require(try DNSKit.lookup(resolver, "host.zone.test", .aaaa)).get()
        #expect(answer.records.map(\.data.description) == ["2001:db8::50"])
        #expect(answer.isAuthoritative)
        resolver.shutdown()
        server.free()
        try base.shutdown()
    }
}

@Suite("resolv.conf and options")
struct DNSConfigurationTests {
    @Test func parsesResolvConf() throws {
        let configuration = try DNSResolver.Configuration.parse(resolvConf: """
            # comment
            nameserver 192.0.2.1
            nameserver [2001:db8::1]:5353
            nameserver 127.0.0.1:5300
            search a.test b.test
            options ndots:3 timeout:1.5 attempts:4 rotate max-inflight:7 randomize-case:0 initial-probe-timeout:2
            """)
        #expect(configuration.nameservers.map(\.description) == ["192.0.2.1:53", "[2001:db8::1]:5353", "127.0.0.1:5300"])
        #expect(configuration.searchDomains == ["a.test", "b.test"])
        #expect(configuration.ndots == 3)
        #expect(configuration.timeout == .milliseconds(1500))
        #expect(configuration.attempts == 4)
        #expect(configuration.rotate)
        #expect(configuration.maxInflight == 7)
        #expect(!configuration.randomizeCase)
        #expect(configuration.initialProbeTimeout == .seconds(2))
        #expect(throws: DNSConfigurationError.badOption("ndots:x")) {
            _ = try DNSResolver.Configuration.parse(resolvConf: "options ndots:x")
        }
        #expect(throws: DNSConfigurationError.badLine(1, "nameserver not-an-address")) {
            _ = try DNSResolver.Configuration.parse(resolvConf: "nameserver not-an-address")
        }
    }
}
