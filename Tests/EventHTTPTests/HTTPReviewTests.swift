import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import EventTestSupport
import Foundation
import Glibc
import Testing

@Suite("HTTP: response splitting, retries, limits and slow handlers")
struct HTTPReviewTests {
    /// A handler echoing hostile input into a header cannot split the response.
    @Test func headerValuesWithCRLFAreNotSent() throws {
        let server = try TestServer(setup: { server in
            server.route("/redirect") { request in
                let target = HTTPURI.percentDecode(request.uri.query ?? "")
                request.respond(.movedPermanently, headers: HTTPHeaders([("Location", target), ("X-Safe", "yes")]), body: "")
            }
        })
        defer { server.stop() }
        let (response, _) = try Raw.exchange(
            server.port, "GET /redirect?/x%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 301 "))
        #expect(!response.contains("Set-Cookie"))
        #expect(response.contains("X-Safe: yes"))
    }

    @Test func clientRefusesTargetsThatWouldSplitTheRequest() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = HTTPClientConnection(base: server.base, host: "127.0.0.1", port: server.port)
        let outcome = Outcome()
        client.request(.get, "/hello HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled", completion: outcome.callback)
        #expect(outcome.wait().map { if case .failure(.invalidRequest) = $0 { true } else { false } } == true)
        let header = Outcome()
        client.request(.get, "/hello", headers: HTTPHeaders([("X-A", "1\r\nX-B: 2")]), completion: header.callback)
        #expect(header.wait().map { if case .failure(.invalidRequest) = $0 { true } else { false } } == true)
        client.free()
    }

    /// A POST whose connection closes before any response is not sent again.
    @Test func postIsNotRetriedAfterItWasSent() throws {
        // The TestServer only lends its base (loop on a thread) to the client.
        let server = try TestServer()
        defer { server.stop() }
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 ? getsockname(listener, $0, &length) : -1 }
        }
        listen(listener, 8)
        let port = UInt16(bigEndian: address.sin_port)
        // A server that reads each request and closes without answering.
        let accepts = AtomicCounter()
        let closer = TestThread {
            for _ in 0..<3 {
                let fd = accept(listener, nil, nil)
                if fd < 0 { return }
                accepts.increment()
                var buffer = [UInt8](repeating: 0, count: 4096)
                _ = recv(fd, &buffer, buffer.count, 0)
                close(fd)
            }
        }
        let client = HTTPClientConnection(base: server.base, host: "127.0.0.1", port: port)
        let outcome = Outcome()
        client.request(.post, "/once", body: Array("pay once".utf8), completion: outcome.callback)
        let result = outcome.wait()
        #expect(result.map { $0 == .failure(.closed) } == true, "\(String(describing: result))")
        usleep(200_000)
        #expect(accepts.value == 1)
        client.free()
        shutdown(listener, Int32(SHUT_RDWR))
        closer.join()
    }

    @Test func responseBodyOverTheLimitFails() throws {
        let server = try TestServer(setup: { server in
            server.route("/big") { $0.respond(.ok, body: [UInt8](repeating: 0x61, count: 200_000)) }
        })
        defer { server.stop() }
        var configuration = HTTPClientConnection.Configuration()
        configuration.limits.maxBodyBytes = 100_000
        let client = HTTPClientConnection(base: server.base, host: "127.0.0.1", port: server.port, configuration: configuration)
        let outcome = Outcome()
        client.request(.get, "/big", completion: outcome.callback)
        #expect(outcome.wait().map { if case .failure(.badResponse) = $0 { true } else { false } } == true)
        client.free()
    }

    /// The read timeout does not cut off a request whose handler takes longer.
    @Test func slowHandlersAreNotTimedOut() throws {
        let server = try TestServer({ $0.readTimeout = .milliseconds(200); $0.idleTimeout = .milliseconds(200) }, setup: { server in
            server.route("/slow") { request in
                Thread.detachNewThread {
                    usleep(600_000)
                    request.respond(.ok, body: "finally")
                }
            }
        })
        defer { server.stop() }
        let (response, _) = try Raw.exchange(server.port, "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(response.hasSuffix("finally"), "\(response)")
    }
}
