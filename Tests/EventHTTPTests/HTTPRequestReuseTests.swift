import EventBuffers
import EventCore
import EventHTTP
import EventTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// A connection reuses its last request object for the next request only
/// when nobody else holds it; these check that reuse never shows.
@Suite("HTTP server: request objects reused only when unheld")
struct HTTPRequestReuseTests {
    @Test func nextRequestSeesNothingOfThePreviousOne() throws {
        let server = try TestServer(setup: { server in
            server.route("/inspect") { request in
                let names = request.headers.fields.map(\.name).joined(separator: ",")
                let text = "method=\(request.method) target=\(request.target) headers=\(names) trailers=\(request.trailers.count) body=\(request.body.count)"
                request.respond(.ok, body: text)
            }
        })
        defer { server.stop() }
        let fd = try Raw.connect(server.port)
        defer { close(fd) }
        // A chunked POST with a trailer and a body, then a plain GET on the same connection.
        Raw.send(
            fd,
            "POST /echo?x=1 HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n"
                + "GET /inspect HTTP/1.1\r\nHost: b\r\n\r\n")
        let response = Raw.read(fd) { $0.contains("body=") }
        #expect(Raw.statusLines(response) == ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"])
        #expect(response.hasSuffix("method=GET target=/inspect headers=Host trailers=0 body=0"), "\(response.debugDescription)")
    }

    @Test func aRequestKeptByItsHandlerIsNeverChanged() throws {
        final class Kept: Sendable {
            let requests = Mutex<[HTTPServerRequest]>([])
        }
        let kept = Kept()
        let server = try TestServer(setup: { server in
            server.route("/keep") { request in
                kept.requests.withLock { $0.append(request) }
                request.respond(.ok, body: "kept \(request.headers["X-N"] ?? "")")
            }
        })
        defer { server.stop() }
        let fd = try Raw.connect(server.port)
        defer { close(fd) }
        for n in 1...5 {
            Raw.send(fd, "GET /keep?n=\(n) HTTP/1.1\r\nHost: h\r\nX-N: \(n)\r\n\r\n")
            _ = Raw.read(fd) { $0.hasSuffix("kept \(n)") }
        }
        let requests = kept.requests.withLock { $0 }
        #expect(requests.count == 5)
        #expect(Set(requests.map(ObjectIdentifier.init)).count == 5)
        for (index, request) in requests.enumerated() {
            #expect(request.target == "/keep?n=\(index + 1)")
            #expect(request.headers["X-N"] == "\(index + 1)")
        }
    }

    @Test func aBodyKeptByTheHandlerIsNotReused() throws {
        final class Kept: Sendable {
            let bodies = Mutex<[EventBuffer]>([])
        }
        let kept = Kept()
        let server = try TestServer(setup: { server in
            server.route("/body") { request in
                kept.bodies.withLock { $0.append(request.body) }
                request.respond(.ok, body: "got \(request.body.count)")
            }
        })
        defer { server.stop() }
        let fd = try Raw.connect(server.port)
        defer { close(fd) }
        Raw.send(fd, "POST /body HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
        _ = Raw.read(fd) { $0.hasSuffix("got 3") }
        Raw.send(fd, "POST /body HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nvwxyz")
        _ = Raw.read(fd) { $0.hasSuffix("got 5") }
        let bodies = kept.bodies.withLock { $0 }
        #expect(bodies.count == 2)
        #expect(bodies.count == 2 && bodies[0] !== bodies[1])
        #expect((try? bodies.first?.copyOut(count: 10)) == Array("abc".utf8))
    }
}
