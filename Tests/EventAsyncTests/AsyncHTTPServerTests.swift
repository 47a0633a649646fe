import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import EventTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// A server with async routes, its loop on its own thread; on an owned base
/// everything is set up on the loop thread (through `post`).
final class AsyncHTTPFixture: @unchecked Sendable {
    // Written once before init returns; the server is used on the loop
    // thread only (owned) or under its locks (shared).
    let base: EventBase
    private(set) var server: HTTPServer!
    private(set) var port: UInt16 = 0
    private let loop: TestThread

    init(shared: Bool, routes: @escaping @Sendable (HTTPServer) -> Void) throws {
        let ready = Latch()
        let box = Box<EventBase>()
        let provider: any LockProvider = shared ? MutexLockProvider() : NoLockProvider()
        loop = TestThread {
            guard let base = try? EventBase(.init(method: .epoll, lockProvider: provider)) else { return }
            box.value = base
            ready.open()
            _ = try? base.loop(.noExitOnEmpty)
            try? base.shutdown()
        }
        guard ready.wait(), let base = box.value else { throw ShellError(command: "start a loop", status: -1, output: "") }
        self.base = base
        let made = Latch()
        let result = Mutex<(HTTPServer, UInt16)?>(nil)
        try base.post { [base] in
            let server = HTTPServer(base: base)
            routes(server)
            let port = (try? server.bind(try SocketAddress(ipv4: "127.0.0.1", port: 0)))?.port ?? 0
            result.withLock { $0 = (server, port) }
            made.open()
        }
        guard made.wait(), let (server, port) = result.withLock({ $0 }) else {
            throw ShellError(command: "bind the server", status: -1, output: "")
        }
        (self.server, self.port) = (server, port)
    }

    func stop() {
        let server = self.server
        try? base.post { [base] in
            server?.free()
            try? base.loopExit()
        }
        loop.join()
    }
}

/// The tests are async and do their blocking work (starting the loop,
/// curl, waiting for latches) on threads of their own through `blocking`:
/// Swift's cooperative pool is as wide as the machine (two threads here)
/// and the other async tests need it.
@Suite("Swift concurrency: an HTTP server with async handlers")
struct AsyncHTTPServerTests {
    private func curl(_ arguments: [String]) async throws -> String {
        try await blocking { Result { try Shell.run("/usr/bin/curl", ["-sS", "--max-time", "20"] + arguments) } }.get()
    }

    private func start(shared: Bool, routes: @escaping @Sendable (HTTPServer) -> Void) async throws -> AsyncHTTPFixture {
        try await blocking { Result { try AsyncHTTPFixture(shared: shared, routes: routes) } }.get()
    }

    @Test(arguments: [false, true])
    func asyncHandlersRunOnTheLoopThread(shared: Bool) async throws {
        let fixture = try await start(shared: shared) { server in
            let base = server.base
            server.route("/where", async: { request in
                let before = base.isLoopThread
                try await Task.sleep(for: .milliseconds(20))
                let after = base.isLoopThread
                return HTTPServerResponse(.ok, headers: HTTPHeaders([("X-Path", request.uri.path)]), body: "\(before) \(after)")
            })
            server.route("/fail", async: { _ in
                struct Oops: Error {}
                throw Oops()
            })
            server.route("/sync") { $0.respond(.ok, body: "sync") }
        }
        defer { fixture.stop() }
        let url = "http://127.0.0.1:\(fixture.port)"
        let output = try await curl(["-i", url + "/where"])
        #expect(output.hasPrefix("HTTP/1.1 200 OK"))
        #expect(output.contains("X-Path: /where"))
        #expect(output.hasSuffix("\r\n\r\ntrue true"), "\(output.debugDescription)")
        let failed = try await curl(["-i", url + "/fail"])
        #expect(failed.hasPrefix("HTTP/1.1 500 "))
        // Async and callback routes side by side, one kept-alive connection.
        let both = try await curl([url + "/where", url + "/sync", url + "/where"])
        #expect(both == "true truesynctrue true")
    }

    @Test(arguments: [false, true])
    func aClientThatLeavesCancelsTheHandlersTask(shared: Bool) async throws {
        let started = Latch()
        let cancelled = Latch()
        let fixture = try await start(shared: shared) { server in
            server.route("/slow", async: { _ in
                started.open()
                do {
                    try await Task.sleep(for: .seconds(60))
                } catch {
                    cancelled.open()
                    throw error
                }
                return HTTPServerResponse(body: "too late")
            })
        }
        defer { fixture.stop() }
        let fd = try connectLoopback(port: fixture.port)
        let request = Array("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        #expect(await blocking { started.wait(timeout: .seconds(30)) })
        close(fd)
        // Cancelled when the client left, long before the handler's 60 s sleep ends.
        #expect(await blocking { cancelled.wait(timeout: .seconds(30)) })
    }

    @Test(arguments: [false, true])
    func manyConcurrentAsyncRequests(shared: Bool) async throws {
        actor Tally {
            var count = 0
            func next() -> Int {
                count += 1
                return count
            }
        }
        let tally = Tally()
        let fixture = try await start(shared: shared) { server in
            server.route("/count", async: { _ in
                // Suspends (an actor hop) before answering.
                _ = await tally.next()
                return HTTPServerResponse(body: "ok\n")
            })
        }
        defer { fixture.stop() }
        let url = "http://127.0.0.1:\(fixture.port)/count"
        let output = try await curl(["--no-progress-meter", "--parallel", "--parallel-max", "50"] + Array(repeating: url, count: 300))
        #expect(output.split(separator: "\n").count == 300)
        #expect(output.split(separator: "\n").allSatisfy { $0 == "ok" }, "\(output.split(separator: "\n").filter { $0 != "ok" })")
    }
}
