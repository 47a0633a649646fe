import EventBuffers
import EventCore
import EventLocking
import EventSSL
import EventTestSupport
import Foundation
import Glibc
import Testing

@Suite("TLS with watermarks, rate limits, idle connections and a shared base")
struct SSLFlowTests {
    /// The reader's high watermark is far below what the peer sends in one
    /// go (many TLS records per socket read): reading pauses and resumes
    /// until every byte is in; OpenSSL's buffered records are not forgotten.
    @Test(arguments: [false, true])
    func readerBehindAHighWatermarkGetsEverything(filter: Bool) throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let payload = TLSKit.pattern(2 << 20, seed: 21)
        let server = try EchoServer(base: base, context: try pki.serverContext(), echo: false) { connection in
            try? connection.write(payload)
        }
        let client: SSLBufferEvent
        var socketBEV: SocketBufferEvent?
        if filter {
            let underlying = try SocketBufferEvent(base: base, options: [.closeOnFree])
            try underlying.connect(to: try TLSKit.loopback(server.port))
            client = try SSLBufferEvent(filtering: underlying, context: try pki.clientContext(), serverName: "localhost")
            socketBEV = underlying
        } else {
            client = try SSLBufferEvent(base: base, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
            try client.connect(to: try TLSKit.loopback(server.port))
        }
        client.setWatermark(.read, low: 0, high: 3000)
        let received = TLSVar<[UInt8]>([])
        let maxBuffered = TLSVar(0)
        client.setCallbacks(
            read: { bev in
                maxBuffered.value = max(maxBuffered.value, bev.input.count)
                received.value += (try? bev.read(upTo: Int.max)) ?? []
            }, write: nil, event: nil)
        try client.enable(.read)
        #expect(try TLSKit.run(base, timeout: .seconds(20)) { received.value.count >= payload.count }, "\(received.value.count) of \(payload.count), buffered \(client.input.count), state \(client.state), error \(String(describing: client.lastError))")
        let same = received.value == payload
        #expect(same, "bytes differ (\(received.value.count) received)")
        #expect(maxBuffered.value <= 3000, "the watermark let the input grow to \(maxBuffered.value)")
        client.free()
        socketBEV?.free()
        TLSKit.finish(base, listeners: [server.listener])
        server.free()
    }

    /// TLS as a filter over a rate-limited socket: the transfer completes,
    /// at the limited pace.
    @Test func filterOverARateLimitedSocket() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let payload = TLSKit.pattern(600_000, seed: 22)
        let server = try EchoServer(base: base, context: try pki.serverContext(), echo: false) { try? $0.write(payload) }
        let underlying = try SocketBufferEvent(base: base, options: [.closeOnFree])
        // 2 MB/s of ciphertext: 600 kB take at least ~0.2 s.
        try underlying.setRateLimit(try RateLimit(readRate: 100_000, writeRate: 100_000, tick: .milliseconds(50)))
        try underlying.connect(to: try TLSKit.loopback(server.port))
        let client = try SSLBufferEvent(filtering: underlying, context: try pki.clientContext(), serverName: "localhost")
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        let start = now()
        #expect(try TLSKit.run(base, timeout: .seconds(20)) { probe.received.count >= payload.count })
        let same = probe.received == payload
        #expect(same, "bytes differ (\(probe.received.count) received)")
        #expect(now() - start >= .milliseconds(150), "the rate limit did not hold: \(now() - start)")
        client.free()
        underlying.free()
        TLSKit.finish(base, listeners: [server.listener])
        server.free()
    }

    /// A rate limit on the TLS bufferevent itself limits the plaintext it reads.
    @Test func rateLimitOnTheTLSBufferEvent() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let payload = TLSKit.pattern(300_000, seed: 23)
        let server = try EchoServer(base: base, context: try pki.serverContext(), echo: false) { try? $0.write(payload) }
        let client = try SSLBufferEvent(base: base, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        try client.setRateLimit(try RateLimit(readRate: 50_000, writeRate: 50_000, tick: .milliseconds(50)))
        try client.connect(to: try TLSKit.loopback(server.port))
        let probe = Probe()
        probe.attach(client)
        try client.enable(.read)
        let start = now()
        #expect(try TLSKit.run(base, timeout: .seconds(20)) { probe.received.count >= payload.count })
        let same = probe.received == payload
        #expect(same, "bytes differ (\(probe.received.count) received)")
        #expect(now() - start >= .milliseconds(200), "the rate limit did not hold: \(now() - start)")
        TLSKit.finish(base, [client], listeners: [server.listener])
        server.free()
    }

    /// A write rate limit pauses the TLS writer and the refill resumes it:
    /// everything arrives (the writer is not left waiting for more output).
    @Test func writeRateLimitPausesAndResumes() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let serverProbe = Probe()
        let server = try EchoServer(base: base, context: try pki.serverContext(), echo: false) { serverProbe.attach($0) }
        let client = try SSLBufferEvent(base: base, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        try client.setRateLimit(try RateLimit(readRate: 1_000_000, writeRate: 40_000, tick: .milliseconds(20)))
        try client.connect(to: try TLSKit.loopback(server.port))
        let payload = TLSKit.pattern(400_000, seed: 25)
        try client.write(payload)
        #expect(try TLSKit.run(base, timeout: .seconds(20)) { serverProbe.received.count >= payload.count },
                "\(serverProbe.received.count) of \(payload.count)")
        let same = serverProbe.received == payload
        #expect(same)
        TLSKit.finish(base, [client], listeners: [server.listener])
        server.free()
    }

    /// Writing disabled, then enabled again: the waiting output goes out.
    @Test func writingResumesAfterDisableAndEnable() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let serverProbe = Probe()
        let server = try EchoServer(base: base, context: try pki.serverContext(), echo: false) { serverProbe.attach($0) }
        let client = try SSLBufferEvent(base: base, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        let clientProbe = Probe()
        clientProbe.attach(client)
        try client.connect(to: try TLSKit.loopback(server.port))
        #expect(try TLSKit.run(base) { clientProbe.connected })
        try client.disable(.write)
        try client.write("held back")
        try TLSKit.run(base, timeout: .milliseconds(100)) { false }
        #expect(serverProbe.received.isEmpty)
        try client.enable(.write)
        #expect(try TLSKit.run(base) { serverProbe.received.count >= 9 })
        #expect(String(decoding: serverProbe.received, as: UTF8.self) == "held back")
        TLSKit.finish(base, [client], listeners: [server.listener])
        server.free()
    }

    /// Idle, half-closed and rate-starved TLS connections cost the loop no
    /// CPU: over 600 ms the loop thread uses a small fraction of it.
    @Test func idleHalfClosedAndRateLimitedConnectionsDoNotSpin() throws {
        let pki = try TestPKI.get()
        let base = try TLSKit.ownedBase()
        let big = TLSKit.pattern(4 << 20, seed: 24)
        let server = try EchoServer(base: base, context: try pki.serverContext(), echo: false)
        let context = try pki.clientContext()
        func client() throws -> (SSLBufferEvent, Probe) {
            let client = try SSLBufferEvent(base: base, context: context, serverName: "localhost", options: [.closeOnFree])
            let probe = Probe()
            probe.attach(client)
            try client.enable(.read)
            try client.connect(to: try TLSKit.loopback(server.port))
            return (client, probe)
        }
        let (idle, idleProbe) = try client()
        let (halfClosed, halfProbe) = try client()
        let (starved, starvedProbe) = try client()
        try starved.setRateLimit(try RateLimit(readRate: 1, writeRate: 1_000_000, tick: .seconds(10)))
        #expect(try TLSKit.run(base) {
            idleProbe.connected && halfProbe.connected && starvedProbe.connected && server.connections.count == 3
                && server.connections.allSatisfy { $0.state == .open }
        })
        // Server side: one connection sends close_notify (freed), one floods the starved reader.
        func serverEnd(of client: SSLBufferEvent) throws -> SSLBufferEvent {
            try #require(server.connections.first { port(of: $0.fd, peer: true) == port(of: client.fd, peer: false) })
        }
        try serverEnd(of: halfClosed).free()
        try serverEnd(of: starved).write(big)
        #expect(try TLSKit.run(base) { halfProbe.ended })
        let before = threadCPUTime()
        try TLSKit.run(base, timeout: .milliseconds(600)) { false }
        let used = threadCPUTime() - before
        #expect(used < .milliseconds(120), "the loop used \(used) of CPU in 600 ms")
        #expect(starvedProbe.received.count < big.count)
        TLSKit.finish(base, [idle, halfClosed, starved], listeners: [server.listener])
        server.free()
    }

    /// A shared base (mutex provider): four threads write into one TLS
    /// client while the loop runs on its own thread; the server echoes;
    /// every byte of every thread comes back.
    @Test func writersOnManyThreadsThroughASharedBase() throws {
        let pki = try TestPKI.get()
        let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
        let server = try EchoServer(base: base, context: try pki.serverContext())
        let client = try SSLBufferEvent(base: base, context: try pki.clientContext(), serverName: "localhost", options: [.closeOnFree])
        let received = Guarded([Int](repeating: 0, count: 256))
        let total = AtomicCounter()
        client.setCallbacks(
            read: { bev in
                let bytes = (try? bev.read(upTo: Int.max)) ?? []
                received.withLock { counts in for byte in bytes { counts[Int(byte)] += 1 } }
                for _ in 0..<bytes.count { total.increment() }
            }, write: nil, event: nil)
        try client.enable(.read)
        try client.connect(to: try TLSKit.loopback(server.port))
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        let perThread = 40_000
        let writers = (1...4).map { value in
            TestThread {
                let chunk = [UInt8](repeating: UInt8(value), count: 100)
                for _ in 0..<(perThread / 100) { try? client.write(chunk) }
            }
        }
        for writer in writers { writer.join() }
        #expect(eventually(timeout: .seconds(20)) { total.value >= 4 * perThread })
        let counts = received.withLock { $0 }
        for value in 1...4 { #expect(counts[value] == perThread, "thread \(value): \(counts[value]) bytes back") }
        client.free()
        try base.loopExit()
        loop.join()
        server.free()
        _ = try? base.loop(.nonBlocking)
        try? base.shutdown()
    }
}

/// CPU time this thread has used.
func threadCPUTime() -> Duration {
    var usage = rusage()
    getrusage(__rusage_who_t(1), &usage)  // RUSAGE_THREAD
    let user = Duration.seconds(usage.ru_utime.tv_sec) + .microseconds(usage.ru_utime.tv_usec)
    let system = Duration.seconds(usage.ru_stime.tv_sec) + .microseconds(usage.ru_stime.tv_usec)
    return user + system
}

/// The local or peer port of a TCP socket.
func port(of fd: Int32, peer: Bool) -> UInt16 {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length) }
    }
    return rc == 0 ? UInt16(bigEndian: address.sin_port) : 0
}
