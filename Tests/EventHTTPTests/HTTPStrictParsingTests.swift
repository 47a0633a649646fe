import EventBuffers
import EventCore
import EventHTTP
import EventTestSupport
import Foundation
import Glibc
import Testing

/// Each hostile request is refused with its status and the connection is
/// closed; the request smuggled after it is never answered.
@Suite("HTTP server: strict parsing against request smuggling")
struct HTTPStrictParsingTests {
    static let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let request: String
        let status: Int
        var testDescription: String { name }
    }

    static let refused: [Case] = [
        Case(name: "Transfer-Encoding and Content-Length", request: "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, status: 400),
        Case(name: "last coding not chunked", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, status: 400),
        Case(name: "only gzip", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + smuggled, status: 400),
        Case(name: "gzip then chunked", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled, status: 501),
        Case(name: "differing Content-Length", request: "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nhello" + smuggled, status: 400),
        Case(name: "differing Content-Length list", request: "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 41\r\n\r\nhello" + smuggled, status: 400),
        Case(name: "signed Content-Length", request: "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello" + smuggled, status: 400),
        Case(name: "chunk size with sign", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n" + smuggled, status: 400),
        Case(name: "chunk size with 0x", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n" + smuggled, status: 400),
        Case(name: "chunk size with leading space", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n" + smuggled, status: 400),
        Case(name: "chunk size with trailing space", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n" + smuggled, status: 400),
        Case(name: "chunk size overflow", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n" + smuggled, status: 400),
        Case(name: "chunk without CRLF after data", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + smuggled, status: 400),
        Case(name: "empty header name", request: "GET /hello HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n" + smuggled, status: 400),
        Case(name: "space before colon", request: "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello" + smuggled, status: 400),
        Case(name: "NUL in a header value", request: "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n" + smuggled, status: 400),
        Case(name: "CR in a header value", request: "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n" + smuggled, status: 400),
        Case(name: "obsolete line folding", request: "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + smuggled, status: 400),
        Case(name: "invalid method", request: "G(T /hello HTTP/1.1\r\nHost: x\r\n\r\n" + smuggled, status: 400),
        Case(name: "unsupported version", request: "GET /hello HTTP/2.0\r\nHost: x\r\n\r\n" + smuggled, status: 505),
        Case(name: "malformed version", request: "GET /hello HTTP/1.1x\r\nHost: x\r\n\r\n" + smuggled, status: 400),
        Case(name: "bare LF", request: "GET /hello HTTP/1.1\nHost: x\n\n" + smuggled, status: 400),
        Case(name: "bare LF in chunk line", request: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" + smuggled, status: 400),
        Case(name: "missing Host", request: "GET /hello HTTP/1.1\r\n\r\n" + smuggled, status: 400),
        Case(name: "repeated Host", request: "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + smuggled, status: 400),
        Case(name: "Transfer-Encoding on HTTP/1.0", request: "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, status: 400),
    ]

    @Test(arguments: refused)
    func refusedAndClosed(_ hostile: Case) throws {
        let server = try TestServer()
        defer { server.stop() }
        let (response, closed) = try Raw.exchange(server.port, hostile.request)
        #expect(response.hasPrefix("HTTP/1.1 \(hostile.status) "), "\(response.debugDescription)")
        #expect(closed, "the connection stays open after \(hostile.name)")
        #expect(!response.contains("SMUGGLED"), "a smuggled request was answered")
        #expect(Raw.statusLines(response).count == 1)
    }

    @Test func headerSectionOverTheLimitIs431AndCloses() throws {
        let server = try TestServer { $0.limits.maxHeaderBytes = 1024 }
        defer { server.stop() }
        let big = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 2000))\r\n\r\n"
        let (response, closed) = try Raw.exchange(server.port, big + Self.smuggled)
        #expect(response.hasPrefix("HTTP/1.1 431 "), "\(response.prefix(80))")
        #expect(closed)
        #expect(!response.contains("SMUGGLED"))
    }

    @Test func uriOverTheLimitIs414AndCloses() throws {
        let server = try TestServer { $0.limits.maxURILength = 100 }
        defer { server.stop() }
        let (response, closed) = try Raw.exchange(server.port, "GET /\(String(repeating: "a", count: 200)) HTTP/1.1\r\nHost: x\r\n\r\n" + Self.smuggled)
        #expect(response.hasPrefix("HTTP/1.1 414 "))
        #expect(closed)
    }

    @Test func bodyOverTheLimitIs413() throws {
        let server = try TestServer { $0.limits.maxBodyBytes = 10 }
        defer { server.stop() }
        let (response, closed) = try Raw.exchange(server.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        #expect(response.hasPrefix("HTTP/1.1 413 "))
        #expect(closed)
        let (chunked, _) = try Raw.exchange(server.port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")
        #expect(chunked.hasPrefix("HTTP/1.1 413 "))
    }

    // MARK: valid but unusual: accepted and framed exactly

    /// Sends `request` then a pipelined GET /hello; both must be answered, in order.
    private func acceptedThenNext(_ request: String, check: (String) -> Void) throws {
        let server = try TestServer()
        defer { server.stop() }
        let fd = try Raw.connect(server.port)
        defer { close(fd) }
        Raw.send(fd, request + "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        // Until the second response is complete (the first may be written alone).
        let response = Raw.read(fd) { Raw.statusLines($0).count >= 2 && $0.hasSuffix("hello world") }
        #expect(Raw.statusLines(response) == ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"], "\(response.debugDescription)")
        #expect(response.hasSuffix("hello world"))
        check(response)
    }

    @Test func chunkExtensionsAndTrailers() throws {
        try acceptedThenNext(
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value;x\r\nhello\r\n6 ;q=\"a b\"\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
        ) { response in
            #expect(response.contains("\r\n\r\nhello world"))
            #expect(response.contains("X-Got-Trailer: yes"))
        }
    }

    @Test func chunkedInAnyCaseAndTabsAsWhitespace() throws {
        try acceptedThenNext("POST /echo HTTP/1.1\r\nHost:\tx\t\r\nTransfer-Encoding:\tChUnKeD\r\n\r\n3\r\nabc\r\n0\r\n\r\n") { response in
            #expect(response.contains("Content-Length: 3\r\n"))
            #expect(response.contains("\r\n\r\nabc"))
        }
    }

    @Test func bodiesOnGetAndHead() throws {
        try acceptedThenNext("GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody") { response in
            #expect(response.contains("X-Method: GET"))
            #expect(response.contains("\r\n\r\nbody"))
        }
        try acceptedThenNext("HEAD /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody") { response in
            // HEAD: the length of the body that GET would send, no body.
            #expect(response.contains("X-Method: HEAD"))
            #expect(response.contains("Content-Length: 4\r\n"))
            #expect(!response.contains("body"))
        }
    }

    @Test func identicalRepeatedContentLengthIsOneLength() throws {
        try acceptedThenNext("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc") { response in
            #expect(response.contains("\r\n\r\nabc"))
        }
    }

    @Test func manyPipelinedRequestsAnsweredInOrder() throws {
        let server = try TestServer()
        defer { server.stop() }
        let fd = try Raw.connect(server.port)
        defer { close(fd) }
        var batch = ""
        for index in 0..<20 { batch += "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \(String(index).count)\r\n\r\n\(index)" }
        Raw.send(fd, batch)
        let response = Raw.read(fd) { Raw.statusLines($0).count == 20 && $0.hasSuffix("19") }
        let bodies = response.components(separatedBy: "HTTP/1.1 200 OK").dropFirst().map { $0.components(separatedBy: "\r\n\r\n").last ?? "" }
        #expect(bodies == (0..<20).map(String.init))
    }

    @Test func http10KeepAliveAndClose() throws {
        let server = try TestServer()
        defer { server.stop() }
        let fd = try Raw.connect(server.port)
        defer { close(fd) }
        Raw.send(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let first = Raw.read(fd) { $0.contains("hello world") }
        #expect(first.contains("Connection: keep-alive"))
        Raw.send(fd, "GET /hello HTTP/1.0\r\n\r\n")
        let (second, closed) = Raw.readAll(fd)
        #expect(second.contains("Connection: close"))
        #expect(second.hasSuffix("hello world"))
        #expect(closed)
    }

    @Test func connectionCloseIsHonoured() throws {
        let server = try TestServer()
        defer { server.stop() }
        let (response, closed) = try Raw.exchange(server.port, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + Self.smuggled)
        #expect(Raw.statusLines(response).count == 1)
        #expect(closed)
    }
}
