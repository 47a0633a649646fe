// Helpers for the TLS tests: a test certificate authority made at test time
// with the openssl CLI, owned bases and a loop runner with a watchdog, our
// TLS echo server, and openssl s_server / s_client processes on 127.0.0.1.
import EventBuffers
import EventCore
import EventLocking
import EventSSL
import EventTestSupport
import Foundation
import Glibc
import Testing

/// A value confined to the thread that runs a test's owned base: the test
/// body and the callbacks that loop runs on that same thread touch it.
final class TLSVar<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

enum TLSFixtureError: Error, CustomStringConvertible {
    case command(String, Int32, String)
    case timeout(String)
    var description: String {
        switch self {
        case .command(let line, let status, let output): "\(line) exited \(status): \(output)"
        case .timeout(let what): "timed out: \(what)"
        }
    }
}

/// A certificate authority and certificates for the tests, made once per
/// test process in a temporary directory.
struct TestPKI: Sendable {
    let directory: String
    var caFile: String { directory + "/ca.pem" }
    /// localhost + 127.0.0.1, signed by the CA.
    var serverCert: String { directory + "/server.pem" }
    var serverKey: String { directory + "/server.key" }
    /// other.test and *.wild.test (for SNI), signed by the CA.
    var otherCert: String { directory + "/other.pem" }
    var otherKey: String { directory + "/other.key" }
    /// localhost, expired yesterday.
    var expiredCert: String { directory + "/expired.pem" }
    var expiredKey: String { directory + "/expired.key" }
    /// localhost, signed by a CA nobody trusts.
    var rogueCert: String { directory + "/rogue.pem" }
    var rogueKey: String { directory + "/rogue.key" }
    /// A client certificate (CN=test client), signed by the CA.
    var clientCert: String { directory + "/client.pem" }
    var clientKey: String { directory + "/client.key" }

    static let shared: Result<TestPKI, any Error> = Result { try TestPKI.make() }

    static func get() throws -> TestPKI { try shared.get() }

    private static func make() throws -> TestPKI {
        let directory = NSTemporaryDirectory() + "swiftevent-pki-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let pki = TestPKI(directory: directory)
        func run(_ arguments: [String]) throws { _ = try Shell.run("/usr/bin/openssl", arguments, in: directory) }
        func key(_ name: String) throws {
            try run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name + ".key"])
        }
        func ca(_ name: String, _ subject: String) throws {
            try key(name)
            try run(["req", "-x509", "-new", "-key", name + ".key", "-out", name + ".pem", "-days", "30", "-subj", subject])
        }
        func leaf(_ name: String, _ subject: String, san: String?, signer: String, days: String, client: Bool = false) throws {
            try key(name)
            try run(["req", "-new", "-key", name + ".key", "-out", name + ".csr", "-subj", subject])
            var extensions = client ? "extendedKeyUsage=clientAuth\n" : "extendedKeyUsage=serverAuth\n"
            if let san { extensions += "subjectAltName=\(san)\n" }
            try extensions.write(toFile: directory + "/\(name).ext", atomically: true, encoding: .utf8)
            try run([
                "x509", "-req", "-in", name + ".csr", "-CA", signer + ".pem", "-CAkey", signer + ".key",
                "-CAcreateserial", "-out", name + ".pem", "-days", days, "-extfile", name + ".ext",
            ])
        }
        try ca("ca", "/CN=SwiftEvent Test CA")
        try ca("rogueca", "/CN=Nobody Trusts Me CA")
        try leaf("server", "/CN=localhost", san: "DNS:localhost,IP:127.0.0.1", signer: "ca", days: "30")
        try leaf("other", "/CN=other.test", san: "DNS:other.test,DNS:*.wild.test", signer: "ca", days: "30")
        try leaf("expired", "/CN=localhost", san: "DNS:localhost,IP:127.0.0.1", signer: "ca", days: "-1")
        try leaf("rogue", "/CN=localhost", san: "DNS:localhost,IP:127.0.0.1", signer: "rogueca", days: "30")
        try leaf("client", "/CN=test client", san: nil, signer: "ca", days: "30", client: true)
        return pki
    }

    func serverContext(
        cert: String? = nil, key: String? = nil, _ change: (inout SSLContext.Configuration) -> Void = { _ in }
    ) throws -> SSLContext {
        var configuration = SSLContext.Configuration.server(
            certificateChain: .file(cert ?? serverCert), privateKey: .file(key ?? serverKey))
        configuration.trustRoots = [.file(caFile)]
        change(&configuration)
        return try SSLContext(configuration)
    }

    func clientContext(_ change: (inout SSLContext.Configuration) -> Void = { _ in }) throws -> SSLContext {
        var configuration = SSLContext.Configuration.client(trustRoots: [.file(caFile)])
        change(&configuration)
        return try SSLContext(configuration)
    }
}

enum TLSKit {
    static func ownedBase() throws -> EventBase {
        try ownedEpollBase()
    }

    /// Runs the loop until `done()` holds or `timeout` passes; returns `done()`.
    @discardableResult
    static func run(_ base: EventBase, timeout: Duration = .seconds(5), until done: @escaping @Sendable () -> Bool) throws -> Bool {
        try runLoop(base, timeout: timeout, until: done)
    }

    static func finish(_ base: EventBase, _ bufferEvents: [BufferEvent] = [], listeners: [ConnectionListener] = []) {
        for bufferEvent in bufferEvents { bufferEvent.free() }
        for listener in listeners { listener.free() }
        _ = try? base.loop(.nonBlocking)
        try? base.shutdown()
    }

    static func loopback(_ port: UInt16) throws -> SocketAddress { try SocketAddress(ipv4: "127.0.0.1", port: port) }

    /// Waits until something accepts connections on `port`.
    static func waitForListener(_ port: UInt16, timeout: Duration = .seconds(5)) -> Bool {
        eventually(timeout: timeout) {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            } == 0
        }
    }

    /// A raw TCP connection to 127.0.0.1:`port` (blocking).
    static func rawConnect(_ port: UInt16) throws -> Int32 {
        do {
            return try connectLoopback(port: port)
        } catch let error as ShellError {
            throw TLSFixtureError.command("connect", error.status, "")
        }
    }

    static func pattern(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }
}

/// Our TLS echo server on 127.0.0.1: every accepted connection echoes what
/// it reads; the sessions it made and the errors it saw are kept.
final class EchoServer: @unchecked Sendable {
    // Confined to the loop thread of `base` (an owned base), like the test.
    let listener: ConnectionListener
    var connections: [SSLBufferEvent] = []
    var errors: [SSLError] = []
    var events: [BufferEvent.What] = []
    var port: UInt16 { listener.localAddress?.port ?? 0 }

    init(base: EventBase, context: SSLContext, echo: Bool = true, configure: (@Sendable (SSLBufferEvent) -> Void)? = nil) throws {
        let box = TLSVar<EchoServer?>(nil)
        let accept: ConnectionListener.AcceptCallback = { listener, fd, _ in
            box.value?.accept(fd, base: listener.base, context: context, echo: echo, configure: configure)
        }
        listener = try ConnectionListener(base: base, address: try TLSKit.loopback(0), callback: accept)
        box.value = self
    }

    private func accept(
        _ fd: Int32, base: EventBase, context: SSLContext, echo: Bool, configure: (@Sendable (SSLBufferEvent) -> Void)?
    ) {
        let connection: SSLBufferEvent
        do {
            connection = try SSLBufferEvent(base: base, socket: fd, context: context, options: [.closeOnFree])
        } catch {
            close(fd)
            return
        }
        var echoRead: BufferEvent.DataCallback?
        if echo {
            echoRead = { bev in _ = try? bev.write(buffer: bev.input) }
        }
        connection.setCallbacks(
            read: echoRead, write: nil,
            event: { [self] bev, what, _ in
                events.append(what)
                if let error = (bev as? SSLBufferEvent)?.lastError { errors.append(error) }
                if what.contains(.endOfFile) || what.contains(.error) || what.contains(.timeout) { bev.free() }
            })
        try? connection.enable(.read)
        configure?(connection)
        connections.append(connection)
    }

    func free() {
        for connection in connections { connection.free() }
        listener.free()
    }
}
