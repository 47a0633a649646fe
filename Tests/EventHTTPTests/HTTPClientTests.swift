import EventBuffers
import EventCore
import EventDNS
import EventHTTP
import EventLocking
import EventSSL
import EventTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// Waits for a client completion (the loop runs on its own thread).
final class Outcome: @unchecked Sendable {
    // `stored` is guarded by `lock`.
    private let latch = Latch()
    private let lock = NSLock()
    private var stored: Result<HTTPClientResponse, HTTPClientError>?

    var callback: @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void {
        { [self] result in
            lock.lock()
            stored = result
            lock.unlock()
            latch.open()
        }
    }

    func wait(_ timeout: Duration = .seconds(10)) -> Result<HTTPClientResponse, HTTPClientError>? {
        guard latch.wait(timeout: timeout) else { return nil }
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}

@Suite("HTTP client against our server, Python's http.server and misbehaving servers")
struct HTTPClientTests {
    @Test func keepAliveReuseAndMethods() throws {
        let server = try TestServer(setup: { server in
            server.route("/stream") { request in
                request.startStream(.ok)
                for index in 0..<3 { request.sendChunk("chunk \(index);") }
                request.endStream()
            }
        })
        defer { server.stop() }
        let client = HTTPClientConnection(base: server.base, host: "127.0.0.1", port: server.port)
        let closes = AtomicCounter()
        client.setCloseCallback { closes.increment() }
        let first = Outcome()
        client.request(.get, "/hello", completion: first.callback)
        let response = try #require(try first.wait()?.get())
        #expect(response.status.code == 200)
        #expect(response.text == "hello world")
        let post = Outcome()
        client.request(.post, "/echo", body: Array("posted".utf8), completion: post.callback)
        #expect(try post.wait()?.get().text == "posted")
        let head = Outcome()
        client.request(.head, "/hello", completion: head.callback)
        let headResponse = try #require(try head.wait()?.get())
        #expect(headResponse.body.isEmpty && headResponse.headers["Content-Length"] == "11")
        // Chunked response, streamed chunk by chunk.
        let streamed = Outcome()
        let received = Mutex<[UInt8]>([])
        client.request(.get, "/stream", onChunk: { bytes in received.withLock { $0 += bytes } }, completion: streamed.callback)
        #expect(try streamed.wait()?.get().body.isEmpty == true)
        #expect(String(decoding: received.withLock { $0 }, as: UTF8.self) == "chunk 0;chunk 1;chunk 2;")
        // All on one connection.
        #expect(server.server.connectionCount == 1)
        #expect(closes.value == 0)
        client.free()
    }

    @Test func againstPythonHTTPServer() throws {
        let directory = NSTemporaryDirectory() + "swiftevent-pyhttp-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let content = String(repeating: "python served this\n", count: 5000)
        try content.write(toFile: directory + "/file.txt", atomically: true, encoding: .utf8)
        let port = try freeLoopbackPort()
        let python = try Child("/usr/bin/env", ["python3", "-m", "http.server", "\(port)", "--bind", "127.0.0.1", "--directory", directory])
        defer { python.kill() }
        let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        defer {
            try? base.loopExit()
            loop.join()
            try? base.shutdown()
        }
        let client = HTTPClientConnection(base: base, host: "127.0.0.1", port: port)
        // python's server may need a moment to listen: the client retries connection failures.
        var result: Result<HTTPClientResponse, HTTPClientError>?
        for _ in 0..<20 {
            let outcome = Outcome()
            client.request(.get, "/file.txt", completion: outcome.callback)
            result = outcome.wait()
            if case .success = result { break }
            usleep(100_000)
        }
        let response = try #require(try result?.get())
        #expect(response.status.code == 200)
        #expect(response.text == content)
        let missing = Outcome()
        client.request(.get, "/missing", completion: missing.callback)
        #expect(try missing.wait()?.get().status.code == 404)
        client.free()
    }

    @Test func hostNamesResolvedWithEventDNS() throws {
        let server = try TestServer()
        defer { server.stop() }
        let zone = HostsZone(text: "127.0.0.1 web.zone.test\n")
        let dns = try DNSServer(base: server.base, address: try SocketAddress(ipv4: "127.0.0.1", port: 0)) { request in
            guard let question = request.questions.first else { return }
            try? request.respond(answers: zone.answers(question), responseCode: zone.knows(question.name) ? .noError : .nameError)
        }
        var configuration = DNSResolver.Configuration(nameservers: [dns.address])
        configuration.hostsFile = nil
        let resolver = try DNSResolver(base: server.base, configuration: configuration)
        let client = HTTPClientConnection(base: server.base, host: "web.zone.test", port: server.port, resolver: resolver)
        let outcome = Outcome()
        client.request(.get, "/hello", completion: outcome.callback)
        #expect(try outcome.wait()?.get().text == "hello world")
        let failing = HTTPClientConnection(base: server.base, host: "nowhere.zone.test", port: server.port, resolver: resolver)
        let failed = Outcome()
        failing.request(.get, "/hello", completion: failed.callback)
        #expect(failed.wait().map { if case .failure(.resolution(.nameError)) = $0 { true } else { false } } == true)
        client.free()
        failing.free()
        resolver.shutdown()
        dns.free()
    }

    @Test func timeoutCancelAndRetry() throws {
        let server = try TestServer(setup: { server in
            server.route("/never") { _ in }  // never answered
        })
        defer { server.stop() }
        var configuration = HTTPClientConnection.Configuration()
        configuration.timeout = .milliseconds(300)
        let client = HTTPClientConnection(base: server.base, host: "127.0.0.1", port: server.port, configuration: configuration)
        let timedOut = Outcome()
        let start = now()
        client.request(.get, "/never", completion: timedOut.callback)
        #expect(timedOut.wait().map { $0 == .failure(.timeout) } == true)
        #expect(now() - start < .seconds(5))
        let cancelled = Outcome()
        let request = client.request(.get, "/never", completion: cancelled.callback)
        usleep(50_000)
        request.cancel()
        #expect(cancelled.wait().map { $0 == .failure(.cancelled) } == true)
        // The next request still works (on a new connection).
        let after = Outcome()
        client.request(.get, "/hello", completion: after.callback)
        #expect(try after.wait()?.get().text == "hello world")
        client.free()

        // Nothing listens: connection refused, retried with back-off, then reported.
        let closedPort = try freeLoopbackPort()
        var retrying = HTTPClientConnection.Configuration()
        retrying.retries = 2
        retrying.retryBackoff = .milliseconds(50)
        let refused = HTTPClientConnection(base: server.base, host: "127.0.0.1", port: closedPort, configuration: retrying)
        let outcome = Outcome()
        let begin = now()
        refused.request(.get, "/", completion: outcome.callback)
        let result = outcome.wait()
        #expect(result.map { if case .failure(.connect) = $0 { true } else { false } } == true, "\(String(describing: result))")
        // Two retries: 50 ms + 100 ms of back-off at least.
        #expect(now() - begin >= .milliseconds(140))
        refused.free()
    }

    @Test func httpsWithVerification() throws {
        let (certificate, key) = try SSLContext.selfSignedCertificate(name: "localhost")
        let tls = try SSLContext(.server(certificateChain: .text(certificate), privateKey: .text(key)))
        let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        let server = HTTPServer(base: base)
        server.route("/secure") { $0.respond(.ok, body: "secret") }
        let port = try #require(try server.bind(try SocketAddress(ipv4: "127.0.0.1", port: 0), tls: tls).port)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        defer {
            server.free()
            try? base.loopExit()
            loop.join()
            try? base.shutdown()
        }
        let trusted = HTTPClientConnection(
            base: base, host: "127.0.0.1", port: port, tls: try SSLContext(.client(trustRoots: [.text(certificate)])))
        let good = Outcome()
        trusted.request(.get, "/secure", completion: good.callback)
        #expect(try good.wait()?.get().text == "secret")
        // Not trusted: verification fails with OpenSSL's reason.
        let (otherCertificate, _) = try SSLContext.selfSignedCertificate(name: "localhost")
        let untrusted = HTTPClientConnection(
            base: base, host: "127.0.0.1", port: port, tls: try SSLContext(.client(trustRoots: [.text(otherCertificate)])))
        let bad = Outcome()
        untrusted.request(.get, "/secure", completion: bad.callback)
        let result = bad.wait()
        #expect(result.map { if case .failure(.tls(let why)) = $0 { why.contains("certificate verify failed") } else { false } } == true,
                "\(String(describing: result))")
        trusted.free()
        untrusted.free()
    }
}
