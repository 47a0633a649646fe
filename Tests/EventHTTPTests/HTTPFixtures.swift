// Helpers for the HTTP tests: a server on a shared base whose loop runs on
// its own thread, raw blocking sockets for byte-exact exchanges, and curl.
import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import EventTestSupport
import Foundation
import Glibc
import Testing

/// A server with test routes, its loop on a thread.
final class TestServer: @unchecked Sendable {
    // Immutable after init; the server and base are thread-safe (shared base).
    let base: EventBase
    let server: HTTPServer
    let port: UInt16
    private let loop: TestThread

    init(_ change: (inout HTTPServer.Configuration) -> Void = { _ in }, setup: (HTTPServer) -> Void = { _ in }) throws {
        base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        var configuration = HTTPServer.Configuration()
        configuration.lingerTime = .milliseconds(300)
        change(&configuration)
        server = HTTPServer(base: base, configuration: configuration)
        server.route("/echo") { request in
            var headers = HTTPHeaders()
            headers.add("X-Method", request.method.rawValue)
            if let trailer = request.trailers["X-Trailer"] { headers.add("X-Got-Trailer", trailer) }
            request.respond(.ok, headers: headers, buffer: request.body)
        }
        server.route("/smuggled") { request in request.respond(.ok, body: "SMUGGLED") }
        server.route("/hello") { request in request.respond(.ok, body: "hello world") }
        setup(server)
        let address = try server.bind(try SocketAddress(ipv4: "127.0.0.1", port: 0))
        port = address.port ?? 0
        let base = self.base
        loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
    }

    func stop() {
        server.free()
        try? base.loopExit()
        loop.join()
        _ = try? base.loop(.nonBlocking)
        try? base.shutdown()
    }
}

enum Raw {
    /// A blocking TCP connection to 127.0.0.1:port with a receive timeout.
    static func connect(_ port: UInt16, timeout: Duration = .seconds(3)) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw ShellError(command: "connect", status: errno, output: "")
        }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until EOF (true) or the receive timeout (false).
    static func readAll(_ fd: Int32) -> (String, closed: Bool) {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 {
                data += buffer[0..<n]
                continue
            }
            return (String(decoding: data, as: UTF8.self), n == 0 || (n < 0 && errno == ECONNRESET))
        }
    }

    /// Reads until `count` responses' worth of "HTTP/1.1 " status lines and their bodies seem in, or timeout.
    static func read(_ fd: Int32, until predicate: (String) -> Bool) -> String {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !predicate(String(decoding: data, as: UTF8.self)) {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// One exchange on a fresh connection: sends `text`, reads to EOF or timeout.
    static func exchange(_ port: UInt16, _ text: String, timeout: Duration = .seconds(3)) throws -> (String, closed: Bool) {
        let fd = try connect(port, timeout: timeout)
        defer { close(fd) }
        send(fd, text)
        return readAll(fd)
    }

    /// Every status line in a stream of responses (bodies need not end in CRLF).
    static func statusLines(_ response: String) -> [String] {
        response.components(separatedBy: "HTTP/1.1 ").dropFirst().compactMap { rest -> String? in
            let code = rest.prefix(3)
            guard code.count == 3, code.allSatisfy(\.isNumber) else { return nil }
            return "HTTP/1.1 " + (rest.components(separatedBy: "\r\n").first ?? "")
        }
    }
}
