import EventBuffers
import EventCore
import EventDNS
import EventLocking
import EventTestSupport
import Glibc
import Synchronization
import Testing

/// Many lookups from several threads on one shared base: every request gets
/// exactly one callback, with the right answer.
@Suite("DNS lookups from many threads on a shared base")
struct DNSStressTests {
    @Test(arguments: ["mutex", "rcu"])
    func lookupsFromFourThreads(_ provider: String) throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: provider == "rcu" ? RCULockProvider() : MutexLockProvider()))
        let zone = HostsZone(text: (0..<50).map { "10.1.0.\($0) h\($0).stress.test" }.joined(separator: "\n"))
        let server = try DNSServer(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: 0)) { request in
            guard let question = request.questions.first else { return }
            try? request.respond(answers: zone.answers(question))
        }
        var configuration = DNSResolver.Configuration(nameservers: [server.address])
        configuration.hostsFile = nil
        // Generous: under ThreadSanitizer with other stress tests beside it
        // the loop can be slow; what is tested is that every request ends
        // once with the right answer.
        configuration.timeout = .seconds(10)
        configuration.attempts = 3
        configuration.maxInflight = 32
        // No cache: every lookup goes to the server.
        configuration.cacheEnabled = false
        let resolver = try DNSResolver(base: base, configuration: configuration)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        let perThread = 300
        let good = AtomicCounter()
        let bad = AtomicCounter()
        let callbacks = AtomicCounter()
        let threads = (0..<4).map { thread in
            TestThread {
                for index in 0..<perThread {
                    let host = (thread * perThread + index) % 50
                    resolver.query("h\(host).stress.test", type: .a) { result in
                        callbacks.increment()
                        if case .success(let answer) = result, answer.addresses == [[10, 1, 0, UInt8(host)]] {
                            good.increment()
                        } else {
                            bad.increment()
                        }
                    }
                }
            }
        }
        for thread in threads { thread.join() }
        #expect(eventually(timeout: .seconds(90)) { callbacks.value >= 4 * perThread })
        pause(.milliseconds(100))
        #expect(callbacks.value == 4 * perThread, "every request exactly once")
        #expect(good.value == 4 * perThread)
        #expect(bad.value == 0)
        try base.loopExit()
        loop.join()
        resolver.shutdown()
        server.free()
        _ = try? base.loop(.nonBlocking)
        try? base.shutdown()
    }
}
