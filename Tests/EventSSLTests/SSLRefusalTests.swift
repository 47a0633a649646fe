import EventBuffers
import EventCore
import EventLocking
import EventSSL
import COpenSSL
import CSSLShim
import EventTestSupport
import Foundation
import Glibc
import Testing

@Suite("TLS refusals and bad input: a clear ERROR event, no crash, no hang")
struct SSLRefusalTests {
    /// Connects our verifying client to a server presenting `cert`; returns the client's error.
    private func clientError(serverCert: String, serverKey: String, name: String) throws -> (SSLError?, [BufferEvent.What]) {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext(cert: serverCert, key: serverKey))
        let client = try SSLBufferEvent(base: base, context: try pki.clientContext(), serverName: name, options: [.closeOnFree])
        let probe = Probe()
        probe.attach(client)
        try client.connect(to: try TLSKit.loopback(server.port))
        try client.write("secret")
        #expect(try TLSKit.run(base) { probe.failed })
        // The server saw the handshake fail too, and neither side delivered data.
        #expect(try TLSKit.run(base) { !server.errors.isEmpty })
        #expect(probe.received.isEmpty)
        #expect(!probe.connected)
        let error = client.lastError
        TLSKit.finish(base, [client], listeners: [server.listener])
        server.free()
        return (error, probe.events)
    }

    @Test func expiredCertificateIsRefused() throws {
        let pki = try TestPKI.get()
        let (error, events) = try clientError(serverCert: pki.expiredCert, serverKey: pki.expiredKey, name: "localhost")
        #expect(events.contains { $0.contains(.error) })
        #expect(error?.kind == .verification)
        #expect(error?.reason.contains("certificate has expired") == true, "\(String(describing: error))")
    }

    @Test func wrongHostNameIsRefused() throws {
        let pki = try TestPKI.get()
        let (error, _) = try clientError(serverCert: pki.serverCert, serverKey: pki.serverKey, name: "evil.example")
        #expect(error?.kind == .verification)
        #expect(error?.reason.contains("hostname mismatch") == true, "\(String(describing: error))")
    }

    @Test func wrongIPAddressIsRefused() throws {
        let pki = try TestPKI.get()
        let (error, _) = try clientError(serverCert: pki.serverCert, serverKey: pki.serverKey, name: "127.0.0.2")
        #expect(error?.kind == .verification)
        #expect(error?.reason.contains("IP address mismatch") == true, "\(String(describing: error))")
    }

    @Test func unknownCertificateAuthorityIsRefused() throws {
        let pki = try TestPKI.get()
        let (error, _) = try clientError(serverCert: pki.rogueCert, serverKey: pki.rogueKey, name: "localhost")
        #expect(error?.kind == .verification)
        #expect(error?.reason.contains("unable to get local issuer certificate") == true, "\(String(describing: error))")
    }

    /// A client speaking plaintext HTTP to the TLS port: the server reports
    /// a handshake error naming it, and closes the connection.
    @Test func plaintextClientIsRefused() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext())
        let fd = try TLSKit.rawConnect(server.port)
        defer { close(fd) }
        let request = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        #expect(write(fd, request, request.utf8.count) == request.utf8.count)
        #expect(try TLSKit.run(base) { !server.errors.isEmpty })
        let error = try #require(server.errors.first)
        #expect(error.kind == .handshake)
        #expect(error.reason.contains("http request"), "\(error)")
        #expect(error.reason.contains("not speaking TLS"))
        // The server closed: the raw client reads EOF (after any alert).
        #expect(try TLSKit.run(base) { readsToEOF(fd) })
        TLSKit.finish(base, listeners: [server.listener])
        server.free()
    }

    /// Half a ClientHello, then nothing: the handshake timeout closes it.
    @Test func stalledHandshakeTimesOut() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext { $0.handshakeTimeout = .milliseconds(300) })
        let fd = try TLSKit.rawConnect(server.port)
        defer { close(fd) }
        // A TLS record header announcing 512 bytes of handshake, and 10 of them.
        let partial: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0]
        #expect(write(fd, partial, partial.count) == partial.count)
        let start = now()
        #expect(try TLSKit.run(base) { !server.errors.isEmpty })
        let elapsed = now() - start
        #expect(server.errors.first?.kind == .handshakeTimeout)
        #expect(server.events.contains { $0.contains(.timeout) && $0.contains(.error) })
        #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(3), "\(elapsed)")
        #expect(try TLSKit.run(base) { readsToEOF(fd) })
        TLSKit.finish(base, listeners: [server.listener])
        server.free()
    }

    /// A truncated handshake (the client vanishes mid-ClientHello) is an
    /// error on the server, at once.
    @Test func truncatedHandshakeIsAnError() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext())
        let fd = try TLSKit.rawConnect(server.port)
        let partial: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]
        #expect(write(fd, partial, partial.count) == partial.count)
        close(fd)
        #expect(try TLSKit.run(base) { !server.errors.isEmpty })
        #expect(server.errors.first?.kind == .handshake, "\(server.errors)")
        TLSKit.finish(base, listeners: [server.listener])
        server.free()
    }

    /// Garbage bytes injected into the ciphertext mid-stream: the receiver
    /// reports a protocol error with OpenSSL's reason; the data before it arrived.
    @Test func garbageMidStreamIsAProtocolError() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let server = try SSLBufferEvent(filtering: b, context: try pki.serverContext(), options: [.closeOnFree])
        let client = try SSLBufferEvent(filtering: a, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        let probe = Probe()
        probe.attach(server)
        try server.enable(.read)
        try client.write("before")
        #expect(try TLSKit.run(base) { probe.received.count >= 6 })
        // Straight into the pair, under the TLS layer.
        try a.write(TLSKit.pattern(64, seed: 99))
        #expect(try TLSKit.run(base) { probe.failed })
        let same = probe.received == Array("before".utf8)
        #expect(same, "bytes differ (\(probe.received.count) received)")
        let error = try #require(server.lastError)
        #expect(error.kind == .protocol)
        #expect(!error.reason.isEmpty && !error.codes.isEmpty, "\(error)")
        TLSKit.finish(base, [client, server])
    }

    /// A peer that closes without close_notify: an error by default, EOF
    /// when dirty shutdowns are allowed (libevent's option).
    @Test(arguments: [false, true])
    func dirtyShutdown(allowed: Bool) throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext())
        let socketBEV = try SocketBufferEvent(base: base, options: [.closeOnFree])
        try socketBEV.connect(to: try TLSKit.loopback(server.port))
        let client = try SSLBufferEvent(filtering: socketBEV, context: try pki.clientContext(), serverName: "localhost")
        client.allowDirtyShutdown = allowed
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        try client.write("x")
        #expect(try TLSKit.run(base) { probe.received.count >= 1 })
        // The server end goes away under TLS: its socket closes, no close_notify.
        let serverConnection = try #require(server.connections.first)
        #expect(shutdown(serverConnection.fd, Int32(SHUT_RDWR)) == 0)
        #expect(try TLSKit.run(base) { probe.failed || probe.ended })
        if allowed {
            #expect(probe.ended && !probe.failed)
        } else {
            #expect(probe.failed && !probe.ended)
            #expect(client.lastError?.reason.contains("close_notify") == true, "\(String(describing: client.lastError))")
        }
        client.free()
        socketBEV.free()
        TLSKit.finish(base, listeners: [server.listener])
        server.free()
    }

    /// Freeing an open connection sends close_notify: the peer sees a clean EOF, not an error.
    @Test func freeSendsCloseNotify() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext())
        let client = try SSLBufferEvent(base: base, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        try client.connect(to: try TLSKit.loopback(server.port))
        try client.write("x")
        #expect(try TLSKit.run(base) { probe.received.count >= 1 })
        client.free()
        #expect(try TLSKit.run(base) { !server.events.isEmpty })
        #expect(server.events.contains { $0.contains(.endOfFile) }, "\(server.events)")
        #expect(!server.events.contains { $0.contains(.error) }, "\(server.events)")
        TLSKit.finish(base, listeners: [server.listener])
        server.free()
    }

    /// The filter form with close-on-free sends close_notify through the
    /// underlying socket before closing it: a clean EOF at the peer.
    @Test func filterFreeSendsCloseNotify() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: try pki.serverContext())
        let socketBEV = try SocketBufferEvent(base: base, options: [.closeOnFree])
        try socketBEV.connect(to: try TLSKit.loopback(server.port))
        let client = try SSLBufferEvent(filtering: socketBEV, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        try client.write("x")
        #expect(try TLSKit.run(base) { probe.received.count >= 1 })
        client.free()
        #expect(try TLSKit.run(base) { server.events.contains { $0.contains(.endOfFile) || $0.contains(.error) } })
        #expect(server.events.contains { $0.contains(.endOfFile) }, "\(server.events)")
        #expect(!server.events.contains { $0.contains(.error) }, "\(server.errors)")
        TLSKit.finish(base, listeners: [server.listener])
        server.free()
    }

    /// Configurations OpenSSL would refuse, or that would be unsafe, are
    /// errors at once with a reason.
    @Test func badConfigurationsAreClearErrors() throws {
        let pki = try TestPKI.get()
        func reason(_ body: () throws -> Void) -> String {
            do {
                try body()
                return ""
            } catch let error as SSLError {
                #expect(error.kind == .configuration)
                return error.reason
            } catch {
                return "\(error)"
            }
        }
        #expect(reason { _ = try pki.serverContext(cert: pki.serverCert, key: pki.otherKey) }.contains("mismatch"))
        #expect(reason { _ = try pki.serverContext(cert: "/nonexistent.pem") }.contains("certificate chain file"))
        #expect(reason {
            _ = try SSLContext(.server(certificateChain: .text("not a pem"), privateKey: .file(pki.serverKey)))
        }.contains("no PEM certificate"))
        #expect(reason { _ = try SSLContext(.init(role: .server)) }.contains("needs a certificate"))
        #expect(reason { _ = try pki.clientContext { $0.applicationProtocols = [""] } }.contains("ALPN"))
        #expect(reason {
            _ = try pki.clientContext {
                $0.minimumVersion = .tls13
                $0.maximumVersion = .tls12
            }
        }.contains("below the minimum"))
        let base = try TLSKit.ownedBase()
        #expect(reason { _ = try SSLBufferEvent(base: base, context: try pki.clientContext()) }.contains("needs its name"))
        try base.shutdown()
    }

    /// PEM from memory works as files do (chain, key, CA).
    @Test func pemFromMemory() throws {
        let pki = try TestPKI.get()
        let text = { (path: String) throws -> String in try String(contentsOfFile: path, encoding: .utf8) }
        let serverContext = try SSLContext(.server(certificateChain: .text(try text(pki.serverCert)), privateKey: .text(try text(pki.serverKey))))
        let clientContext = try SSLContext(.client(trustRoots: [.text(try text(pki.caFile))]))
        let base = try TLSKit.ownedBase()
        let server = try EchoServer(base: base, context: serverContext)
        let client = try SSLBufferEvent(base: base, context: clientContext, serverName: "localhost", options: [.closeOnFree])
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        try client.connect(to: try TLSKit.loopback(server.port))
        try client.write("mem")
        #expect(try TLSKit.run(base) { probe.received.count >= 3 || probe.failed })
        let same = probe.received == Array("mem".utf8)
        #expect(same, "\(String(describing: client.lastError))")
        TLSKit.finish(base, [client], listeners: [server.listener])
        server.free()
    }

    /// The safe defaults are set on the context, not left to the build.
    @Test func safeDefaultsAreSetExplicitly() throws {
        let pki = try TestPKI.get()
        let context = try pki.serverContext()
        #expect(SSL_CTX_get_options(context.handle) & se_ssl_op_no_renegotiation() != 0)
        #expect(context.configuration.minimumVersion == .tls12)
        #expect(SSLContext.Configuration.client().peerVerification == .require)
    }
}

/// Reads (non-blocking) until EOF or an error; true once the peer closed.
func readsToEOF(_ fd: Int32) -> Bool {
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        if n == 0 { return true }
        if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR }
    }
}
