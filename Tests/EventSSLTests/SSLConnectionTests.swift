import EventBuffers
import EventCore
import EventLocking
import EventSSL
import EventTestSupport
import Foundation
import Glibc
import Testing

/// What a test's TLS client saw: bytes, events, the error.
final class Probe: @unchecked Sendable {
    // Confined to the owned base's loop thread (the test's thread).
    var received: [UInt8] = []
    var events: [BufferEvent.What] = []
    var connected: Bool { events.contains { $0.contains(.connected) } }
    var failed: Bool { events.contains { $0.contains(.error) } }
    var ended: Bool { events.contains { $0.contains(.endOfFile) } }

    func attach(_ bev: BufferEvent, readUpTo limit: Int = Int.max) {
        bev.setCallbacks(
            read: { [self] bev in received += (try? bev.read(upTo: limit)) ?? [] },
            write: nil,
            event: { [self] _, what, _ in events.append(what) })
    }
}

@Suite("TLS connections: ours against ours and against openssl s_server / s_client")
struct SSLConnectionTests {
    enum Version: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case tls12 = "TLSv1.2"
        case tls13 = "TLSv1.3"
        var testDescription: String { rawValue }
        var configured: SSLContext.ProtocolVersion { self == .tls12 ? .tls12 : .tls13 }
        var flag: String { self == .tls12 ? "-tls1_2" : "-tls1_3" }
    }

    /// Our client and our server over sockets, pinned to each version:
    /// data both ways, the version and cipher reported, the peer verified.
    @Test(arguments: Version.allCases)
    func ourClientAndServerEchoOverSockets(_ version: Version) throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext())
        let context = try pki.clientContext {
            $0.minimumVersion = version.configured
            $0.maximumVersion = version.configured
        }
        let client = try SSLBufferEvent(base: base, context: context, serverName: "localhost", options: [.closeOnFree])
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        try client.connect(to: try TLSKit.loopback(server.port))
        let message = Array("hello over \(version.rawValue)\n".utf8)
        try client.write(message)
        #expect(try TLSKit.run(base) { probe.received.count >= message.count })
        let same = probe.received == message
        #expect(same, "bytes differ (\(probe.received.count) received)")
        #expect(probe.connected)
        #expect(client.state == .open)
        #expect(client.protocolVersion == version.rawValue)
        #expect(client.cipherName != nil)
        #expect(client.peerCertificateSubject?.contains("CN=localhost") == true)
        #expect(server.errors.isEmpty, "\(server.errors)")
        TLSKit.finish(base, [client], listeners: [server.listener])
    }

    /// The filter form over both ends of a pair: a client filter and a
    /// server filter handshake and carry data with no socket at all.
    @Test(arguments: Version.allCases)
    func filtersOverAPairHandshakeAndCarryData(_ version: Version) throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let server = try SSLBufferEvent(
            filtering: b, context: try pki.serverContext { $0.maximumVersion = version.configured },
            options: [.closeOnFree])
        let client = try SSLBufferEvent(
            filtering: a, context: try pki.clientContext { $0.minimumVersion = version.configured },
            serverName: "localhost", options: [.closeOnFree])
        let serverProbe = Probe()
        serverProbe.attach(server)
        let clientProbe = Probe()
        clientProbe.attach(client)
        try server.enable(.read)
        try client.enable(.read)
        let up = TLSKit.pattern(300_000, seed: 1)
        let down = TLSKit.pattern(200_000, seed: 2)
        try client.write(up)
        try server.write(down)
        #expect(try TLSKit.run(base) { serverProbe.received.count >= up.count && clientProbe.received.count >= down.count })
        let same = serverProbe.received == up
        #expect(same, "bytes differ (\(serverProbe.received.count) received)")
        let sameDown = clientProbe.received == down
        #expect(sameDown, "bytes differ (\(clientProbe.received.count) received)")
        #expect(client.protocolVersion == version.rawValue)
        #expect(serverProbe.connected && clientProbe.connected)
        TLSKit.finish(base, [client, server])
    }

    /// A TLS filter over a socket bufferevent talks to our socket-form server.
    @Test func filterOverASocketTalksToTheSocketForm() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext())
        let socketBEV = try SocketBufferEvent(base: base, options: [.closeOnFree])
        try socketBEV.connect(to: try TLSKit.loopback(server.port))
        let client = try SSLBufferEvent(
            filtering: socketBEV, context: try pki.clientContext(), serverName: "127.0.0.1", options: [.closeOnFree])
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        let message = TLSKit.pattern(100_000, seed: 3)
        try client.write(message)
        #expect(try TLSKit.run(base) { probe.received.count >= message.count })
        let same = probe.received == message
        #expect(same, "bytes differ (\(probe.received.count) received)")
        TLSKit.finish(base, [client], listeners: [server.listener])
    }

    /// Tens of megabytes each way between our client and our server, every
    /// byte checked.
    @Test func largeTransfersBothWaysArriveIntact() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let size = 20 << 20
        let toServer = TLSKit.pattern(size, seed: 10)
        let toClient = TLSKit.pattern(size, seed: 11)
        let serverProbe = Probe()
        let server = try EchoServer(base: base, context: try pki.serverContext(), echo: false) { connection in
            serverProbe.attach(connection)
            try? connection.write(toClient)
        }
        let client = try SSLBufferEvent(
            base: base, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        try client.connect(to: try TLSKit.loopback(server.port))
        try client.write(toServer)
        #expect(try TLSKit.run(base, timeout: .seconds(60)) { probe.received.count >= size && serverProbe.received.count >= size })
        #expect(probe.received.count == size && serverProbe.received.count == size)
        let same = probe.received == toClient
        #expect(same, "client received different bytes")
        let sameUp = serverProbe.received == toServer
        #expect(sameUp, "server received different bytes")
        TLSKit.finish(base, [client], listeners: [server.listener])
        server.free()
    }

    /// A file segment added to a TLS output is read and encrypted (no
    /// sendfile), and the peer gets the file's bytes.
    @Test func fileSegmentsAreEncrypted() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let path = NSTemporaryDirectory() + "swiftevent-tls-file-\(getpid())"
        let contents = TLSKit.pattern(3 << 20, seed: 12)
        #expect(FileManager.default.createFile(atPath: path, contents: Data(contents)))
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        let serverProbe = Probe()
        let server = try EchoServer(base: base, context: try pki.serverContext(), echo: false) { serverProbe.attach($0) }
        let client = try SSLBufferEvent(
            base: base, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        try client.connect(to: try TLSKit.loopback(server.port))
        try client.output.add(file: try FileSegment(fd: fd, closeOnFree: true))
        #expect(try TLSKit.run(base, timeout: .seconds(20)) { serverProbe.received.count >= contents.count })
        let same = serverProbe.received == contents
        #expect(same, "bytes differ (\(serverProbe.received.count) received)")
        TLSKit.finish(base, [client], listeners: [server.listener])
        server.free()
    }

    /// SNI: the server answers with the certificate for the name asked
    /// (exact and wildcard), the default one otherwise; the server sees the
    /// name; ALPN works with every certificate.
    @Test(arguments: [("other.test", "CN=other.test"), ("a.wild.test", "CN=other.test"), ("localhost", "CN=localhost")])
    func serverPicksTheCertificateByName(_ name: String, _ subject: String) throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let serverContext = try pki.serverContext {
            $0.namedCertificates = [
                .init(names: ["other.test", "*.wild.test"], certificateChain: .file(pki.otherCert), privateKey: .file(pki.otherKey))
            ]
            $0.applicationProtocols = ["h2"]
        }
        let server = try EchoServer(base: base, context: serverContext)
        let client = try SSLBufferEvent(
            base: base, context: try pki.clientContext { $0.applicationProtocols = ["h2"] }, serverName: name, options: [.closeOnFree])
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        try client.connect(to: try TLSKit.loopback(server.port))
        try client.write("ping")
        #expect(try TLSKit.run(base) { probe.received.count >= 4 || probe.failed })
        #expect(probe.connected, "\(String(describing: client.lastError))")
        #expect(client.peerCertificateSubject?.contains(subject) == true)
        #expect(server.connections.first?.requestedServerName == name)
        // ALPN is still selected after the switch to the named certificate's context.
        #expect(client.applicationProtocol == "h2")
        TLSKit.finish(base, [client], listeners: [server.listener])
        server.free()
    }

    /// ALPN: the server picks its preferred protocol among those offered;
    /// none in common means no ALPN, not a failure.
    @Test func alpnSelectsTheServersPreferredCommonProtocol() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext { $0.applicationProtocols = ["h2", "http/1.1"] })
        var clients: [SSLBufferEvent] = []
        let probes = [Probe(), Probe()]
        for (index, offer) in [["http/1.1", "h2"], ["spdy/3"]].enumerated() {
            let client = try SSLBufferEvent(
                base: base, context: try pki.clientContext { $0.applicationProtocols = offer }, serverName: "localhost",
                options: [.closeOnFree])
            probes[index].attach(client)
            try client.connect(to: try TLSKit.loopback(server.port))
            clients.append(client)
        }
        #expect(try TLSKit.run(base) { probes.allSatisfy(\.connected) })
        #expect(clients[0].applicationProtocol == "h2")
        #expect(clients[1].applicationProtocol == nil)
        TLSKit.finish(base, clients, listeners: [server.listener])
        server.free()
    }

    /// Session resumption, TLS 1.2 and 1.3: a second connection offering
    /// the first one's session resumes it, and the server's cache counts a hit.
    @Test(arguments: Version.allCases)
    func sessionsResume(_ version: Version) throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let serverContext = try pki.serverContext { $0.maximumVersion = version.configured }
        let server = try EchoServer(base: base, context: serverContext)
        let context = try pki.clientContext()
        func connect(_ session: SSLSession?) throws -> (SSLBufferEvent, Probe) {
            let client = try SSLBufferEvent(
                base: base, context: context, serverName: "localhost", session: session, options: [.closeOnFree])
            let probe = Probe()
            probe.attach(client)
            try client.enable(.read)
            try client.connect(to: try TLSKit.loopback(server.port))
            try client.write("x")
            #expect(try TLSKit.run(base) { probe.received.count >= 1 })
            return (client, probe)
        }
        let (first, _) = try connect(nil)
        #expect(!first.isSessionReused)
        let session = try #require(first.session)
        #expect(session.isResumable)
        first.free()
        let (second, _) = try connect(session)
        #expect(second.isSessionReused)
        #expect(second.protocolVersion == version.rawValue)
        TLSKit.finish(base, [second], listeners: [server.listener])
        server.free()
    }

    /// Client certificates: a server that requires one lets a client with
    /// a CA-signed certificate in (and sees its subject) and refuses one without.
    @Test func serverRequiringClientCertificates() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext { $0.peerVerification = .require })
        let withCertificate = try SSLBufferEvent(
            base: base,
            context: try pki.clientContext {
                $0.certificateChain = .file(pki.clientCert)
                $0.privateKey = .file(pki.clientKey)
            }, serverName: "localhost", options: [.closeOnFree])
        let without = try SSLBufferEvent(base: base, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        let good = Probe()
        let bad = Probe()
        good.attach(withCertificate)
        bad.attach(without)
        for client in [withCertificate, without] {
            try client.enable(.read)
            try client.connect(to: try TLSKit.loopback(server.port))
            try client.write("hi")
        }
        #expect(try TLSKit.run(base) { good.received.count >= 2 && bad.failed })
        let same = good.received == Array("hi".utf8)
        #expect(same, "bytes differ (\(good.received.count) received)")
        #expect(bad.failed)
        #expect(server.connections.contains { $0.peerCertificateSubject?.contains("CN=test client") == true })
        #expect(server.errors.contains { $0.reason.contains("certificate") }, "\(server.errors)")
        TLSKit.finish(base, [withCertificate, without], listeners: [server.listener])
        server.free()
    }

    // MARK: against openssl

    /// Our client against `openssl s_server -rev`, each version: the
    /// server reports the version, our client gets the reversed line.
    @Test(arguments: Version.allCases)
    func ourClientAgainstOpenSSLServer(_ version: Version) throws {
        let pki = try TestPKI.get()
        let port = try freeLoopbackPort()
        let server = try Child(
            "/usr/bin/openssl",
            ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", pki.serverCert, "-key", pki.serverKey, "-rev",
             "-naccept", "1", version.flag, "-alpn", "h2"])
        defer { server.kill() }
        #expect(server.waitFor("ACCEPT"), "\(server.output)")
        let base = try TLSKit.ownedBase()
        let client = try SSLBufferEvent(
            base: base, context: try pki.clientContext { $0.applicationProtocols = ["h2"] }, serverName: "localhost",
            options: [.closeOnFree])
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        try client.connect(to: try TLSKit.loopback(port))
        try client.write("hello world\n")
        #expect(try TLSKit.run(base) { String(decoding: probe.received, as: UTF8.self).contains("dlrow olleh") || probe.failed })
        #expect(String(decoding: probe.received, as: UTF8.self).contains("dlrow olleh"), "\(String(describing: client.lastError))")
        #expect(client.protocolVersion == version.rawValue)
        #expect(client.applicationProtocol == "h2")
        // Freeing sends close_notify: s_server sees a clean close.
        client.free()
        _ = try? base.loop(.nonBlocking)
        #expect(server.waitFor("CONNECTION CLOSED"))
        #expect(server.output.contains("Protocol version: \(version.rawValue)"))
        try? base.shutdown()
    }

    /// `openssl s_client` against our server: verified against our CA with
    /// SNI and ALPN, its line echoed; a second run resumes the session
    /// saved by the first (TLS 1.2 and 1.3).
    @Test(arguments: Version.allCases)
    func openSSLClientAgainstOurServer(_ version: Version) throws {
        let pki = try TestPKI.get()
        let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        let serverBox = TLSVar<EchoServer?>(nil)
        serverBox.value = try EchoServer(base: base, context: try pki.serverContext { $0.applicationProtocols = ["echo/1"] })
        let port = try #require(serverBox.value?.port)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        let sessionFile = pki.directory + "/session-\(version.rawValue)-\(UInt32.random(in: 0...UInt32.max))"
        func clientRun(_ extra: [String]) throws -> String {
            let child = try Child(
                "/usr/bin/openssl",
                ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caFile, "-verify_return_error",
                 "-servername", "localhost", "-alpn", "echo/1", version.flag, "-ign_eof"] + extra)
            child.send("ping from s_client\n")
            #expect(child.waitFor("ping from s_client"), "\(child.output)")
            // Give TLS 1.3 tickets time to arrive before s_client saves the session.
            pause(.milliseconds(200))
            child.closeInput()
            child.kill()
            child.finish()
            return child.output
        }
        let first = try clientRun(["-sess_out", sessionFile])
        #expect(first.contains("Verify return code: 0 (ok)"), "\(first)")
        #expect(first.contains("ALPN protocol: echo/1"), "\(first)")
        #expect(first.contains("Protocol  : \(version.rawValue)") || first.contains("New, \(version.rawValue)"), "\(first)")
        let second = try clientRun(["-sess_in", sessionFile])
        #expect(second.contains("Reused, \(version.rawValue)"), "\(second)")
        try base.loopExit()
        loop.join()
        serverBox.value?.free()
        _ = try? base.loop(.nonBlocking)
        try? base.shutdown()
        unlink(sessionFile)
    }
}
