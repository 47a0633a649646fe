import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

@Suite("SocketBufferEvent: connect, echo, EOF, enable/disable, close-on-free")
struct BufferEventSocketTests {
    /// 50 clients each send 64 KiB through an echo server; every byte comes
    /// back, all on one owned base.
    @Test func echoServerWithFiftyConcurrentClients() throws {
        let base = try BEKit.ownedBase()
        let clientCount = 50
        let size = 64 * 1024
        let servers = BEVar<[BufferEvent]>([])
        let serverEnds = BEVar(0)
        let listener = try ConnectionListener(base: base, address: try BEFamily.ipv4.bindAddress()) { listener, fd, _ in
            guard let server = try? SocketBufferEvent(base: listener.base, fd: fd, options: [.closeOnFree]) else {
                close(fd)
                return
            }
            server.setCallbacks(
                read: { bev in try? bev.write(buffer: bev.input) }, write: nil,
                event: { bev, what, _ in
                    if what.contains(.endOfFile) || what.contains(.error) {
                        serverEnds.value += 1
                        bev.free()
                    }
                })
            try? server.enable(.read)
            servers.value.append(server)
        }
        let address = try BEKit.loopback4(port: try #require(listener.localAddress?.port))

        let expected = (0..<clientCount).map { BEKit.pattern(size, seed: $0) }
        let received = BEVar([[UInt8]](repeating: [], count: clientCount))
        let connected = BEVar(0)
        let failures = BEVar<[String]>([])
        var clients: [SocketBufferEvent] = []
        for index in 0..<clientCount {
            let client = try SocketBufferEvent(base: base, options: [.closeOnFree])
            client.setCallbacks(
                read: { bev in
                    received.value[index] += (try? bev.read(upTo: Int.max)) ?? []
                },
                write: nil,
                event: { _, what, error in
                    if what == .connected { connected.value += 1 } else { failures.value.append("client \(index): \(what) errno \(error)") }
                })
            try client.enable(.read)
            try client.connect(to: address)
            try client.write(expected[index])
            clients.append(client)
        }
        let allBack = try BEKit.run(base, timeout: .seconds(4)) {
            received.value.allSatisfy { $0.count >= size }
        }
        #expect(allBack, "bytes back per client: \(received.value.map(\.count))")
        #expect(connected.value == clientCount)
        #expect(failures.value.isEmpty, "\(failures.value)")
        #expect(servers.value.count == clientCount)
        for index in 0..<clientCount {
            #expect(BEKit.same(received.value[index], expected[index]), "client \(index) got different bytes back")
        }
        // Closing the clients makes every server see EOF and free itself.
        for client in clients { client.free() }
        #expect(try BEKit.run(base, timeout: .seconds(2)) { serverEnds.value == clientCount })
        BEKit.finish(base, servers.value, listeners: [listener])
    }

    /// Connecting to a listening address reports `.connected` once, and the
    /// connection carries data, over IPv4, IPv6 (where present) and Unix sockets.
    @Test(arguments: BEFamily.available)
    func connectToAListeningAddressReportsConnected(_ family: BEFamily) throws {
        let base = try BEKit.ownedBase()
        let accepted = BEVar<[Int32]>([])
        let bindAddress = try family.bindAddress()
        defer { if let path = bindAddress.path { unlink(path) } }
        let listener = try ConnectionListener(base: base, address: bindAddress) { _, fd, _ in accepted.value.append(fd) }
        let address = try #require(listener.localAddress)
        let client = try SocketBufferEvent(base: base, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: client)
        try client.connect(to: address)
        #expect(client.fd >= 0)
        try client.write("ping")
        #expect(try BEKit.run(base) { !recorder.events.isEmpty && !accepted.value.isEmpty })
        try BEKit.spin(base, for: .milliseconds(30))
        #expect(recorder.events.count == 1)
        #expect(recorder.events.first?.0 == .connected)
        #expect(recorder.events.first?.1 == 0)
        let server = try #require(accepted.value.first)
        #expect(BEKit.receive(server, count: 4) == Array("ping".utf8))
        for fd in accepted.value { close(fd) }
        BEKit.finish(base, [client], listeners: [listener])
    }

    /// A refused connect is no throw: the event callback gets `.error` with
    /// ECONNREFUSED, once, and nothing else follows.
    @Test func connectToAClosedPortReportsConnectionRefused() throws {
        let base = try BEKit.ownedBase()
        let client = try SocketBufferEvent(base: base, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: client)
        try client.enable(.read)
        try client.connect(to: try BEKit.loopback4(port: try BEKit.closedPort()))
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        try BEKit.spin(base, for: .milliseconds(100))
        #expect(recorder.entries.count == 1, "\(recorder.entries)")
        let (what, error) = try #require(recorder.events.first)
        #expect(what.contains(.error))
        #expect(!what.contains(.connected))
        #expect(error == ECONNREFUSED)
        BEKit.finish(base, [client])
    }

    /// Peer data first, then `[.reading, .endOfFile]` when it closes; reading
    /// is disabled after EOF.
    @Test func peerCloseReportsEndOfFileAfterTheData() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.enable(.read)
        try BEKit.sendAll(peer, "bye")
        close(peer)
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        try BEKit.spin(base, for: .milliseconds(30))
        #expect(recorder.receivedText == "bye")
        #expect(recorder.events.map(\.0) == [[.reading, .endOfFile]])
        #expect(recorder.events.first?.1 == 0)
        if case .read = recorder.entries.first {} else { Issue.record("data not delivered before EOF: \(recorder.entries)") }
        #expect(!bev.enabled.contains(.read))
        BEKit.finish(base, [bev])
    }

    /// Reading disabled: bytes stay in the socket and no read callback runs;
    /// enabling delivers them; disabling again stops delivery again.
    @Test func disabledReadingLeavesDataInTheSocket() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        #expect(bev.enabled == .write, "writing only is enabled at the start, as in libevent")
        let data = BEKit.pattern(100, seed: 1)
        try BEKit.sendAll(peer, data)
        try BEKit.spin(base, for: .milliseconds(80))
        #expect(recorder.reads == 0)
        #expect(bev.input.isEmpty)
        #expect(BEKit.pendingBytes(local) == 100)

        try bev.enable(.read)
        #expect(try BEKit.run(base) { recorder.received.count == 100 })
        #expect(BEKit.same(recorder.received, data))

        try bev.disable(.read)
        #expect(!bev.enabled.contains(.read))
        try BEKit.sendAll(peer, "more")
        try BEKit.spin(base, for: .milliseconds(80))
        #expect(recorder.received.count == 100)
        #expect(BEKit.pendingBytes(local) == 4)
        try bev.enable(.read)
        #expect(try BEKit.run(base) { recorder.received.count == 104 })
        #expect(Array(recorder.received.suffix(4)) == Array("more".utf8))
        BEKit.finish(base, [bev])
    }

    /// Writing disabled: the output is held; enabling writes it out and runs
    /// the write callback once it is empty.
    @Test func disabledWritingHoldsTheOutput() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.disable(.write)
        #expect(bev.enabled.isEmpty)
        try bev.write("held back")
        try BEKit.spin(base, for: .milliseconds(80))
        #expect(bev.output.count == 9)
        #expect(BEKit.pendingBytes(peer) == 0)
        #expect(recorder.writes == 0)

        try bev.enable(.write)
        #expect(try BEKit.run(base) { recorder.writes > 0 })
        #expect(bev.output.isEmpty)
        #expect(BEKit.receive(peer, count: 9) == Array("held back".utf8))
        #expect(recorder.entries == [.write(0)])
        BEKit.finish(base, [bev])
    }

    /// `.closeOnFree`: the descriptor is closed once the loop has run the
    /// finalizers, and the peer sees EOF.
    @Test func closeOnFreeClosesTheDescriptor() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let identity = BEKit.identity(local)
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        try bev.enable(.read)
        try bev.write("last words")
        try BEKit.spin(base, for: .milliseconds(20))
        bev.free()
        #expect(bev.isFree)
        #expect(try BEKit.run(base, timeout: .seconds(2)) { !BEKit.isOpen(local, as: identity) })
        #expect(BEKit.receive(peer, count: 10) == Array("last words".utf8))
        #expect(BEKit.seesEndOfFile(peer, within: .seconds(2)))
        BEKit.finish(base)
    }

    /// Without `.closeOnFree` the descriptor stays open and usable after the
    /// free (and after the finalizers ran), and a new bufferevent can take it.
    @Test func withoutCloseOnFreeTheDescriptorStaysOpen() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let identity = BEKit.identity(local)
        let first = try SocketBufferEvent(base: base, fd: local)
        try first.enable(.read)
        first.free()
        try BEKit.spin(base, for: .milliseconds(60))
        #expect(BEKit.isOpen(local, as: identity))
        #expect(!BEKit.seesEndOfFile(peer, within: .milliseconds(50)))
        #expect(!base.isWatched(fd: local))

        let second = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: second)
        try second.enable(.read)
        try BEKit.sendAll(peer, "still here")
        #expect(try BEKit.run(base) { recorder.received.count == 10 })
        #expect(recorder.receivedText == "still here")
        BEKit.finish(base, [second])
        #expect(!BEKit.isOpen(local, as: identity))
    }

    /// `write(buffer:)` moves a whole buffer out; `read(upTo:)` takes at most
    /// that many bytes; `flush()` leaves a socket's data flowing.
    @Test func writeBufferReadUpToAndFlush() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        #expect(bev.fd == local)
        try bev.enable(.read)

        let source = EventBuffer()
        try source.add("hello ")
        try source.add("world")
        try bev.write(buffer: source)
        #expect(source.isEmpty)
        #expect(try BEKit.run(base) { bev.output.isEmpty })
        #expect(BEKit.receive(peer, count: 11) == Array("hello world".utf8))

        try BEKit.sendAll(peer, "0123456789")
        #expect(try BEKit.run(base) { bev.input.count == 10 })
        #expect(try bev.read(upTo: 4) == Array("0123".utf8))
        #expect(try bev.read(upTo: 100) == Array("456789".utf8))
        #expect(try bev.read(upTo: 5).isEmpty)

        try bev.write("flushed")
        bev.flush()
        bev.flush(.both, mode: .finished)
        #expect(try BEKit.run(base) { bev.output.isEmpty })
        #expect(BEKit.receive(peer, count: 7) == Array("flushed".utf8))
        BEKit.finish(base, [bev])
    }
}
