import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import EventTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// Many clients at once against both threading modes: every request gets
/// its own answer, on kept-alive connections.
@Suite("HTTP under load: owned loops on one port, and a shared base answering from workers")
struct HTTPStressTests {
    /// Runs `clients` threads, each sending `perClient` requests on one
    /// kept-alive raw connection; returns how many answers matched.
    private func hammer(port: UInt16, clients: Int, perClient: Int) -> Int {
        let matched = AtomicCounter()
        let threads = (0..<clients).map { client in
            TestThread {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = port.bigEndian
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                guard withUnsafePointer(to: &address, {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }) == 0 else { return }
                var limit = timeval(tv_sec: 20, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                var pending: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 8192)
                for index in 0..<perClient {
                    let tag = "c\(client)r\(index)"
                    let request = Array("GET /echo?\(tag) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
                    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return }
                    let expected = Array("\r\n\r\n\(tag)".utf8)
                    while !(pending.count >= expected.count && pending.suffix(expected.count).elementsEqual(expected)) {
                        let n = recv(fd, &buffer, buffer.count, 0)
                        if n <= 0 { return }
                        pending += buffer[0..<n]
                    }
                    pending.removeAll(keepingCapacity: true)
                    matched.increment()
                }
            }
        }
        for thread in threads { thread.join(timeout: .seconds(60)) }
        return matched.value
    }

    @Test func ownedLoopsSharingAPort() throws {
        let group = try HTTPServer.reusePortGroup(count: 2, address: try SocketAddress(ipv4: "127.0.0.1", port: 0)) { server in
            server.route("/echo") { $0.respond(.ok, body: $0.uri.query ?? "") }
        }
        let port = try #require(group.address.port)
        #expect(hammer(port: port, clients: 16, perClient: 200) == 16 * 200)
        group.stop()
    }

    @Test(arguments: ["mutex", "rcu"])
    func sharedBaseWithWorkerReplies(_ provider: String) throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: provider == "rcu" ? RCULockProvider() : MutexLockProvider()))
        let server = HTTPServer(base: base)
        let workers = DispatchQueue(label: "http-stress", attributes: .concurrent)
        server.route("/echo") { request in
            workers.async { request.respond(.ok, body: request.uri.query ?? "") }
        }
        let port = try #require(try server.bind(try SocketAddress(ipv4: "127.0.0.1", port: 0)).port)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        #expect(hammer(port: port, clients: 16, perClient: 150) == 16 * 150)
        server.free()
        try base.loopExit()
        loop.join()
        _ = try? base.loop(.nonBlocking)
        try? base.shutdown()
    }
}
