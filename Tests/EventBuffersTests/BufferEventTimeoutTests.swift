import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

@Suite("BufferEvent read and write timeouts")
struct BufferEventTimeoutTests {
    /// No data for the read timeout: `[.reading, .timeout]`, reading is
    /// disabled (and stays quiet); enabling again resumes reading and the
    /// timeout with it.
    @Test func readTimeoutReportsAndDisablesReading() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.setTimeouts(read: .milliseconds(150), write: nil)
        try bev.enable(.read)
        let start = now()
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        let elapsed = now() - start
        #expect(elapsed >= .milliseconds(140), "timed out after \(elapsed)")
        #expect(elapsed < .seconds(1), "timed out after \(elapsed)")
        #expect(recorder.events.map(\.0) == [[.reading, .timeout]])
        #expect(!bev.enabled.contains(.read))
        #expect(bev.enabled.contains(.write))

        // Disabled: no second timeout, and data waits in the socket.
        try BEKit.sendAll(peer, "late")
        try BEKit.spin(base, for: .milliseconds(250))
        #expect(recorder.events.count == 1)
        #expect(recorder.reads == 0)

        try bev.enable(.read)
        #expect(try BEKit.run(base) { recorder.receivedText == "late" })
        #expect(try BEKit.run(base) { recorder.events.count == 2 })
        #expect(recorder.events.map(\.0) == [[.reading, .timeout], [.reading, .timeout]])
        BEKit.finish(base, [bev])
    }

    /// Data arriving more often than the read timeout keeps it from firing;
    /// once the data stops, it fires.
    @Test func incomingDataRestartsTheReadTimeout() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.setTimeouts(read: .milliseconds(200), write: nil)
        try bev.enable(.read)
        let sends = BEVar(0)
        let ticker = try Event.timer(base: base, persist: true) { event, _ in
            sends.value += 1
            _ = send(peer, "x", 1, Int32(MSG_NOSIGNAL))
            if sends.value == 10 { try? event.delete() }
        }
        try ticker.add(timeout: .milliseconds(50))
        #expect(try BEKit.run(base, timeout: .seconds(2)) { sends.value == 10 })
        #expect(recorder.events.isEmpty, "timed out while data kept arriving: \(recorder.entries)")
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        #expect(recorder.received.count == 10)
        #expect(recorder.events.map(\.0) == [[.reading, .timeout]])
        BEKit.finish(base, [bev])
    }

    /// Removing the read timeout (nil) while reading is enabled removes it:
    /// no timeout fires afterwards (libevent's bufferevent_set_timeouts
    /// removes the timer of a pending event).
    @Test func removingTheReadTimeoutWhileReadingStopsIt() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.setTimeouts(read: .milliseconds(100), write: nil)
        try bev.enable(.read)
        try bev.setTimeouts(read: nil, write: nil)
        try BEKit.spin(base, for: .milliseconds(350))
        #expect(recorder.events.isEmpty, "a removed read timeout fired: \(recorder.entries)")
        #expect(bev.enabled.contains(.read))
        BEKit.finish(base, [bev])
    }

    /// While reading is held back by the high watermark the read timeout
    /// does not run (libevent deletes the read event on a watermark
    /// suspension); draining resumes reading and the timeout.
    @Test func readTimeoutDoesNotFireWhileHeldAtTheHighWatermark() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder(drains: false)
        recorder.attach(to: bev)
        bev.setWatermark(.read, low: 0, high: 1000)
        try bev.setTimeouts(read: .milliseconds(100), write: nil)
        try bev.enable(.read)
        try BEKit.sendAll(peer, BEKit.pattern(5000, seed: 13))
        #expect(try BEKit.run(base) { bev.input.count == 1000 })
        try BEKit.spin(base, for: .milliseconds(300))
        #expect(recorder.events.isEmpty, "timed out while held at the high watermark: \(recorder.entries)")
        #expect(bev.input.count == 1000)
        recorder.drains = true
        recorder.received += try bev.read(upTo: Int.max)
        #expect(try BEKit.run(base) { recorder.received.count == 5000 && !recorder.events.isEmpty })
        #expect(recorder.events.map(\.0) == [[.reading, .timeout]])
        BEKit.finish(base, [bev])
    }

    /// The peer does not read and the socket buffers are full: the write
    /// timeout reports `[.writing, .timeout]` and disables writing; enabling
    /// writing once the peer reads delivers everything.
    @Test func writeTimeoutWhenThePeerDoesNotRead() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        BEKit.setBufferSizes(local, send: 4096)
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.setTimeouts(read: nil, write: .milliseconds(200))
        let data = BEKit.pattern(1 << 20, seed: 3)
        try bev.write(data)
        let start = now()
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        let elapsed = now() - start
        #expect(recorder.events.map(\.0) == [[.writing, .timeout]])
        #expect(elapsed >= .milliseconds(190), "timed out after \(elapsed)")
        #expect(!bev.enabled.contains(.write))
        #expect(bev.output.count > 0)

        let reader = try BERawReader(base: base, fd: peer)
        try bev.setTimeouts(read: nil, write: nil)
        try bev.enable(.write)
        #expect(try BEKit.run(base, timeout: .seconds(4)) { reader.received.count == data.count })
        #expect(BEKit.same(reader.received, data))
        #expect(recorder.events.count == 1)
        reader.stop()
        BEKit.finish(base, [bev])
    }

    /// A write timeout set while a write is already waiting for room takes
    /// effect (libevent re-adds pending events with the new timeouts).
    @Test func writeTimeoutSetWhileAWriteWaitsTakesEffect() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        BEKit.setBufferSizes(local, send: 4096)
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.write(BEKit.pattern(1 << 20, seed: 4))
        try BEKit.spin(base, for: .milliseconds(60))
        #expect(bev.output.count > 0, "the socket took everything: the test needs a full socket")
        try bev.setTimeouts(read: nil, write: .milliseconds(150))
        #expect(
            try BEKit.run(base, timeout: .seconds(1)) { !recorder.events.isEmpty },
            "no write timeout 1 s after setting a 150 ms one")
        #expect(recorder.events.map(\.0) == [[.writing, .timeout]])
        BEKit.finish(base, [bev])
    }
}

@Suite("BufferEvent timeouts: odd values")
struct BufferEventTimeoutValueTests {
    /// A zero timeout means no timeout, as in libevent (be_socket_add and
    /// bufferevent_generic_adj_timeouts_ treat a cleared timeval as none):
    /// it does not fire at once and over and over.
    @Test func aZeroTimeoutMeansNone() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.setTimeouts(read: .zero, write: .zero)
        try bev.enable(.read)
        try bev.write("out")
        try BEKit.spin(base, for: .milliseconds(100))
        #expect(recorder.events.isEmpty, "\(recorder.entries)")
        #expect(bev.enabled == .both)
        try BEKit.sendAll(peer, "in")
        #expect(try BEKit.run(base, timeout: .seconds(1)) { recorder.receivedText == "in" })
        #expect(BEKit.receive(peer, count: 3, timeout: .seconds(1)) == Array("out".utf8))
        BEKit.finish(base, [bev])
    }

    /// Negative and absurdly large timeouts are refused with a typed error.
    @Test func invalidTimeoutsAreRefused() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        #expect(throws: EventError.invalidTimeout(.milliseconds(-1))) {
            try a.setTimeouts(read: .milliseconds(-1), write: nil)
        }
        let huge = EventBase.maximumTimeout + .seconds(1)
        #expect(throws: EventError.invalidTimeout(huge)) { try a.setTimeouts(read: nil, write: huge) }
        BEKit.finish(base, [a, b])
    }
}
