import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import EventRPC
import EventTestSupport
import Foundation
import Glibc
import Testing

struct EchoRequest: Codable, Equatable, Sendable {
    var value: UInt32
    var text: String
    enum CodingKeys: Int, CodingKey {
        case value = 1
        case text = 2
    }
}

typealias EchoReply = EchoRequest

/// Waits for one RPC completion.
final class Waiter<T: Sendable>: @unchecked Sendable {
    // `stored` is guarded by `lock`.
    private let lock = NSLock()
    private let latch = Latch()
    private var stored: T?
    func set(_ value: T) {
        lock.lock()
        stored = value
        lock.unlock()
        latch.open()
    }
    func wait(_ timeout: Duration = .seconds(10)) -> T? {
        guard latch.wait(timeout: timeout) else { return nil }
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}

@Suite("evrpc over our HTTP server and client, and against libevent's evhttp")
struct RPCTests {
    /// A shared base with an RPC server whose loop runs on a thread.
    final class Fixture: @unchecked Sendable {
        // Immutable after init; the base and server are thread-safe.
        let base: EventBase
        let http: HTTPServer
        let rpc: RPCServer
        let port: UInt16
        private let loop: TestThread

        init() throws {
            base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
            http = HTTPServer(base: base)
            rpc = RPCServer(http: http)
            rpc.register("Echo", request: EchoRequest.self, reply: EchoReply.self) { request, reply in
                reply.send(EchoReply(value: request.value * 2, text: "swift:" + request.text))
            }
            http.route("/.rpc.Garbage") { $0.respond(.ok, body: [0x01, 0x7f, 0xff]) }
            http.route("/.rpc.Never") { _ in }
            port = try http.bind(try SocketAddress(ipv4: "127.0.0.1", port: 0)).port ?? 0
            let base = self.base
            loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        }

        func stop() {
            http.free()
            try? base.loopExit()
            loop.join()
            _ = try? base.loop(.nonBlocking)
            try? base.shutdown()
        }
    }

    private func call<Reply: Decodable & Sendable>(
        _ pool: RPCClientPool, _ name: String, _ request: EchoRequest, _ reply: Reply.Type
    ) -> Result<Reply, RPCError>? {
        let waiter = Waiter<Result<Reply, RPCError>>()
        pool.call(name, request, reply: reply) { waiter.set($0) }
        return waiter.wait()
    }

    @Test func roundTripsOverOneKeptAliveConnection() throws {
        let fixture = try Fixture()
        defer { fixture.stop() }
        let pool = RPCClientPool(base: fixture.base, host: "127.0.0.1", port: fixture.port)
        for index in 0..<20 {
            let result = call(pool, "Echo", EchoRequest(value: UInt32(index), text: "n\(index)"), EchoReply.self)
            #expect(try result?.get() == EchoReply(value: UInt32(index * 2), text: "swift:n\(index)"))
        }
        #expect(fixture.http.connectionCount == 1)
        pool.free()
    }

    @Test func garbageTimeoutsAndUnknownRPCs() throws {
        let fixture = try Fixture()
        defer { fixture.stop() }
        let pool = RPCClientPool(base: fixture.base, host: "127.0.0.1", port: fixture.port, timeout: .milliseconds(300))
        let garbage = call(pool, "Garbage", EchoRequest(value: 1, text: ""), EchoReply.self)
        #expect(garbage.map { if case .failure(.badReply) = $0 { true } else { false } } == true, "\(String(describing: garbage))")
        let never = call(pool, "Never", EchoRequest(value: 1, text: ""), EchoReply.self)
        #expect(never.map { $0 == .failure(.timeout) } == true)
        let unknown = call(pool, "Nothing", EchoRequest(value: 1, text: ""), EchoReply.self)
        #expect(unknown.map { if case .failure(.badReply(let why)) = $0 { why.contains("404") } else { false } } == true)
        pool.free()
        let refused = RPCClientPool(base: fixture.base, host: "127.0.0.1", port: 1)
        let unstarted = call(refused, "Echo", EchoRequest(value: 1, text: ""), EchoReply.self)
        #expect(unstarted.map { if case .failure(.unstarted) = $0 { true } else { false } } == true, "\(String(describing: unstarted))")
        refused.free()
    }

    /// The C program, built once per test process (tests run in parallel).
    static let interopProgram: Result<String, any Error> = Result {
        let path = NSTemporaryDirectory() + "swiftevent-rpc-interop-\(getpid())"
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("rpc_interop.c").path
        let flags = try Shell.run("/usr/bin/pkg-config", ["--cflags", "--libs", "libevent"])
            .split(whereSeparator: \.isWhitespace).map(String.init)
        try Shell.run("/usr/bin/gcc", ["-O2", "-o", path, source] + flags)
        return path
    }

    private func interop() throws -> String { try Self.interopProgram.get() }

    /// libevent's evhttp client (hand-marshalled evtag) calls our RPC server.
    @Test func libeventClientCallsOurServer() throws {
        let fixture = try Fixture()
        defer { fixture.stop() }
        let output = try Shell.run(try interop(), ["call", "\(fixture.port)"])
        #expect(output == "reply value=42 text=swift:from c\n")
    }

    /// Our client calls an RPC served by libevent's evhttp.
    @Test func ourClientCallsLibeventServer() throws {
        let port = try freeLoopbackPort()
        let server = try Child(try interop(), ["serve", "\(port)"])
        defer { server.kill() }
        #expect(server.waitFor("serving"))
        let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        let pool = RPCClientPool(base: base, host: "127.0.0.1", port: port)
        let result = call(pool, "Echo", EchoRequest(value: 50, text: "from swift"), EchoReply.self)
        #expect(try result?.get() == EchoReply(value: 100, text: "c:from swift"))
        pool.free()
        try base.loopExit()
        loop.join()
        try? base.shutdown()
    }
}
