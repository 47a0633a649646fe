import CEventShims
import EventBuffers
import EventCore
import EventDNS
import EventHTTP
import EventLocking
import EventRPC
import EventTestSupport
import Foundation
import Glibc
import Testing

/// An owned base whose loop runs on its own thread (the base is made there,
/// so that thread owns it).
final class LoopThread: @unchecked Sendable {
    // `base` is written once by the loop thread before `ready` opens.
    private(set) var base: EventBase!
    private let ready = Latch()
    private let thread: TestThread

    init() {
        let box = Box<EventBase>()
        let ready = self.ready
        thread = TestThread {
            guard let base = try? EventBase(.init(method: .epoll, lockProvider: NoLockProvider())) else { return }
            box.value = base
            ready.open()
            _ = try? base.loop(.noExitOnEmpty)
            try? base.shutdown()
        }
        ready.wait()
        base = box.value
    }

    func stop() {
        try? base.post { [base] in try? base?.loopExit() }
        thread.join()
    }
}

/// An actor whose methods run on an event base's loop thread.
actor Counter {
    let base: EventBase
    private var count = 0
    nonisolated var unownedExecutor: UnownedSerialExecutor { base.serialExecutor.asUnownedSerialExecutor() }

    init(base: EventBase) { self.base = base }

    /// Increments and reports whether this ran on the loop thread.
    func increment() -> (Int, onLoop: Bool) {
        count += 1
        return (count, base.isLoopThread)
    }
}

@Suite("Swift concurrency on an event base: actors, async lookups, requests and calls")
struct AsyncTests {
    @Test func actorMethodsRunOnTheLoopThread() async throws {
        let loop = LoopThread()
        defer { loop.stop() }
        let counter = Counter(base: loop.base)
        for expected in 1...100 {
            let (count, onLoop) = await counter.increment()
            #expect(count == expected)
            #expect(onLoop)
        }
    }

    @Test func thousandsOfTasksOnOneActor() async throws {
        let loop = LoopThread()
        defer { loop.stop() }
        let counter = Counter(base: loop.base)
        let onLoop = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<5000 { group.addTask { await counter.increment().onLoop } }
            var all = true
            for try await result in group { all = all && result }
            return all
        }
        #expect(onLoop)
        #expect(await counter.increment().0 == 5001)
    }

    @Test func asyncLookupAndCancellation() async throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        let zone = HostsZone(text: "192.0.2.44 async.zone.test\n")
        let server = try DNSServer(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: 0)) { request in
            guard let question = request.questions.first else { return }
            if question.name == "silent.zone.test" {
                request.drop()
                return
            }
            try? request.respond(answers: zone.answers(question))
        }
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        var configuration = DNSResolver.Configuration(nameservers: [server.address])
        configuration.hostsFile = nil
        // Long: without cancellation the silent lookup would take minutes.
        configuration.timeout = .seconds(120)
        let resolver = try DNSResolver(base: base, configuration: configuration)
        let answer = try await resolver.query("async.zone.test", type: .a)
        #expect(answer.addresses == [[192, 0, 2, 44]])
        // A lookup the server never answers, cancelled after 100 ms: it ends
        // then (the bound leaves room for a loaded machine), not at its timeout.
        let start = now()
        let task = Task { try await resolver.query("silent.zone.test", type: .a) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        // Under TSan in CI, with the other async tests sharing the two
        // cooperative threads, this has taken 35 s: the bound only has to
        // tell "cancelled" from "timed out" (120 s × attempts).
        #expect(now() - start < .seconds(90))
        resolver.shutdown()
        server.free()
        try base.loopExit()
        loop.join()
        try? base.shutdown()
    }

    @Test func asyncHTTPRequestAndRPCCall() async throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        let http = HTTPServer(base: base)
        http.route("/hello") { $0.respond(.ok, body: "hello async") }
        http.route("/never") { _ in }
        struct Ping: Codable, Sendable {
            var value: UInt32
            enum CodingKeys: Int, CodingKey { case value = 1 }
        }
        let rpc = RPCServer(http: http)
        rpc.register("Double", request: Ping.self, reply: Ping.self) { request, reply in reply.send(Ping(value: request.value * 2)) }
        let port = try #require(try http.bind(try SocketAddress(ipv4: "127.0.0.1", port: 0)).port)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        let client = HTTPClientConnection(base: base, host: "127.0.0.1", port: port)
        let response = try await client.send(.get, "/hello")
        #expect(response.text == "hello async")
        // Cancelling a request in flight.
        let task = Task { try await client.send(.get, "/never") }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(try await client.send(.get, "/hello").text == "hello async")
        let pool = RPCClientPool(base: base, host: "127.0.0.1", port: port)
        let doubled = try await pool.call("Double", Ping(value: 21), reply: Ping.self)
        #expect(doubled.value == 42)
        pool.free()
        client.free()
        http.free()
        try base.loopExit()
        loop.join()
        try? base.shutdown()
    }
}
