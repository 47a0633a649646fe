import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import EventSSL
import EventTestSupport
import Foundation
import Glibc
import Testing

@Suite("HTTP server with real clients: curl and Python's http.client")
struct HTTPServerTests {
    private func curl(_ arguments: [String]) throws -> String {
        try Shell.run("/usr/bin/curl", ["-sS", "--max-time", "10"] + arguments)
    }

    @Test func curlKeepAliveReusesTheConnection() throws {
        let server = try TestServer()
        defer { server.stop() }
        let output = try curl([
            "-w", "%{http_code} %{num_connects}\n", "http://127.0.0.1:\(server.port)/hello", "http://127.0.0.1:\(server.port)/hello",
        ])
        #expect(output == "hello world200 1\nhello world200 0\n")
    }

    @Test func curlChunkedUploadAnd100Continue() throws {
        let server = try TestServer()
        defer { server.stop() }
        let path = NSTemporaryDirectory() + "swiftevent-upload-\(getpid())"
        let payload = String(repeating: "0123456789abcdef", count: 200_000)
        try payload.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        // Chunked upload.
        let chunked = try curl(["-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path, "http://127.0.0.1:\(server.port)/echo"])
        #expect(chunked.count == payload.count && chunked == payload)
        // Expect: 100-continue (curl waits for our 100 before sending the body).
        let verbose = try curl(["-v", "-H", "Expect: 100-continue", "--data-binary", "@" + path, "-o", "/dev/null",
                                "http://127.0.0.1:\(server.port)/echo"])
        #expect(verbose.contains("< HTTP/1.1 100 Continue"))
        #expect(verbose.contains("< HTTP/1.1 200 OK"))
    }

    @Test func curlHeadAndStreamedReply() throws {
        let server = try TestServer(setup: { server in
            server.route("/stream") { request in
                request.startStream(.ok, headers: HTTPHeaders([("Content-Type", "text/plain")]))
                for index in 0..<5 { request.sendChunk("part \(index)\n") }
                request.endStream()
            }
        })
        defer { server.stop() }
        let head = try curl(["-I", "http://127.0.0.1:\(server.port)/hello"])
        #expect(head.contains("HTTP/1.1 200 OK"))
        #expect(head.contains("Content-Length: 11"))
        #expect(head.contains("Date: "))
        let streamed = try curl(["-v", "http://127.0.0.1:\(server.port)/stream"])
        #expect(streamed.contains("Transfer-Encoding: chunked"))
        #expect(streamed.contains("part 0\npart 1\npart 2\npart 3\npart 4\n"))
    }

    @Test func unknownPathIs404AndUnknownMethodIs501() throws {
        let server = try TestServer()
        defer { server.stop() }
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(server.port)/nowhere"]) == "404")
        #expect(try curl(["-X", "BREW", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(server.port)/hello"]) == "501")
    }

    @Test func virtualHostsWithWildcardsAndAliases() throws {
        let server = try TestServer(setup: { server in
            let api = HTTPServer(base: server.base)
            api.route("/hello") { $0.respond(.ok, body: "from api") }
            api.addAlias("api.alias.test")
            server.addVirtualHost("*.api.test", api)
        })
        defer { server.stop() }
        let url = "http://127.0.0.1:\(server.port)/hello"
        #expect(try curl(["-H", "Host: v1.api.test", url]) == "from api")
        #expect(try curl(["-H", "Host: api.alias.test:8080", url]) == "from api")
        #expect(try curl(["-H", "Host: other.test", url]) == "hello world")
    }

    @Test func pythonHTTPClient() throws {
        let server = try TestServer()
        defer { server.stop() }
        let script = """
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", \(server.port), timeout=5)
            c.request("GET", "/hello")
            r = c.getresponse(); print(r.status, r.read().decode())
            c.request("POST", "/echo", body=b"x" * 100000, headers={"Content-Type": "application/octet-stream"})
            r = c.getresponse(); body = r.read(); print(r.status, len(body), body == b"x" * 100000)
            c.request("PUT", "/echo", body=iter([b"ab", b"cd"]), encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
            r = c.getresponse(); print(r.status, r.read().decode(), r.getheader("X-Method"))
            """
        let output = try Shell.run("/usr/bin/env", ["python3", "-c", script])
        #expect(output == "200 hello world\n200 100000 True\n200 abcd PUT\n")
    }

    /// A shared base: the handler hands the request to another thread,
    /// which replies; many clients at once.
    @Test func repliesFromWorkerThreads() throws {
        let server = try TestServer(setup: { server in
            server.route("/work") { request in
                Thread.detachNewThread {
                    usleep(1000)
                    request.respond(.ok, body: "worked on \(request.uri.query ?? "");")
                }
            }
        })
        defer { server.stop() }
        let urls = (0..<40).map { "http://127.0.0.1:\(server.port)/work?\($0)" }
        let output = try curl(["--no-progress-meter", "--parallel", "--parallel-max", "20"] + urls)
        for index in 0..<40 { #expect(output.contains("worked on \(index);"), "no reply \(index)") }
    }

    /// Slowloris: a client trickling its header is cut off by the header
    /// timeout while another client is served normally.
    @Test func slowHeadersAreCutOffAndOthersServed() throws {
        let server = try TestServer { $0.headerTimeout = .milliseconds(500) }
        defer { server.stop() }
        let slow = try Raw.connect(server.port, timeout: .seconds(3))
        defer { close(slow) }
        let start = now()
        Raw.send(slow, "GET /hello HTTP/1.1\r\n")
        var closedEarly = false
        for index in 0..<30 {
            Raw.send(slow, "X-\(index): y\r\n")
            // The other client is served meanwhile.
            if index == 2 {
                let (fast, _) = try Raw.exchange(server.port, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                #expect(fast.hasSuffix("hello world"))
            }
            usleep(100_000)
            var probe: UInt8 = 0
            if recv(slow, &probe, 1, Int32(MSG_DONTWAIT | MSG_PEEK)) >= 0 || errno != EAGAIN {
                closedEarly = true
                break
            }
        }
        let (response, closed) = Raw.readAll(slow)
        #expect(closedEarly)
        #expect(response.hasPrefix("HTTP/1.1 408 "))
        #expect(closed)
        #expect(now() - start < .milliseconds(2900))
    }

    @Test func connectionsBeyondTheLimitGet503() throws {
        let server = try TestServer { $0.maxConnections = 2 }
        defer { server.stop() }
        let first = try Raw.connect(server.port)
        let second = try Raw.connect(server.port)
        defer {
            close(first)
            close(second)
        }
        #expect(eventually { server.server.connectionCount == 2 })
        let (third, closed) = try Raw.exchange(server.port, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(third.hasPrefix("HTTP/1.1 503 "))
        #expect(closed)
    }

    @Test func idleKeepAliveConnectionsAreClosed() throws {
        let server = try TestServer { $0.idleTimeout = .milliseconds(300) }
        defer { server.stop() }
        let fd = try Raw.connect(server.port)
        defer { close(fd) }
        Raw.send(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = Raw.read(fd) { $0.hasSuffix("hello world") }
        let start = now()
        let (_, closed) = Raw.readAll(fd)
        #expect(closed)
        #expect(now() - start < .milliseconds(2900))
    }

    @Test func httpsWithCurl() throws {
        let (certificate, key) = try SSLContext.selfSignedCertificate(name: "localhost")
        let directory = NSTemporaryDirectory() + "swiftevent-https-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try certificate.write(toFile: directory + "/cert.pem", atomically: true, encoding: .utf8)
        let tls = try SSLContext(.server(certificateChain: .text(certificate), privateKey: .text(key), applicationProtocols: ["http/1.1"]))
        let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        let server = HTTPServer(base: base)
        server.route("/secure") { $0.respond(.ok, body: "over tls") }
        let port = try #require(try server.bind(try SocketAddress(ipv4: "127.0.0.1", port: 0), tls: tls).port)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        let output = try curl([
            "--cacert", directory + "/cert.pem", "-w", " %{http_version}",
            "https://localhost:\(port)/secure", "--resolve", "localhost:\(port):127.0.0.1",
        ])
        #expect(output == "over tls 1.1")
        server.free()
        try base.loopExit()
        loop.join()
        _ = try? base.loop(.nonBlocking)
        try? base.shutdown()
    }
}
