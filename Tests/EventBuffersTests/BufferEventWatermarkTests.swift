import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

@Suite("BufferEvent watermarks over sockets")
struct BufferEventWatermarkTests {
    /// The read callback runs only once at least `low` bytes are buffered.
    @Test func readLowWatermarkWaitsForEnoughBytes() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder(drains: false)
        recorder.attach(to: bev)
        bev.setWatermark(.read, low: 100, high: 0)
        try bev.enable(.read)
        for round in 1...3 {
            try BEKit.sendAll(peer, BEKit.pattern(30, seed: round))
            #expect(try BEKit.run(base) { bev.input.count == 30 * round })
            try BEKit.spin(base, for: .milliseconds(20))
            #expect(recorder.reads == 0, "read callback ran with \(bev.input.count) bytes, below the low watermark")
        }
        try BEKit.sendAll(peer, BEKit.pattern(30, seed: 4))
        #expect(try BEKit.run(base) { recorder.reads > 0 })
        #expect(recorder.entries.first == .read(120))
        BEKit.finish(base, [bev])
    }

    /// Reading pauses at the high watermark (the input never holds more),
    /// the rest waits in the socket, and reading resumes once the input is
    /// drained; every byte arrives in order.
    @Test func readHighWatermarkPausesAndResumesReading() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        let high = 4096
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let largest = BEVar(0)
        let received = BEVar<[UInt8]>([])
        let draining = BEVar(false)
        let reads = BEVar(0)
        bev.setCallbacks(
            read: { bev in
                reads.value += 1
                largest.value = max(largest.value, bev.input.count)
                if draining.value { received.value += (try? bev.read(upTo: Int.max)) ?? [] }
            }, write: nil, event: nil)
        bev.setWatermark(.read, low: 0, high: high)
        try bev.enable(.read)
        let data = BEKit.pattern(200 * 1024, seed: 9)
        let sender = try BERawSender(base: base, fd: peer, data: data)
        #expect(try BEKit.run(base) { bev.input.count >= high })
        try BEKit.spin(base, for: .milliseconds(100))
        #expect(bev.input.count <= high)
        #expect(largest.value <= high, "the input held \(largest.value) bytes, above the high watermark \(high)")
        #expect(BEKit.pendingBytes(local) > 0, "nothing waits in the socket: reading did not pause")
        let readsWhilePaused = reads.value
        try BEKit.spin(base, for: .milliseconds(50))
        #expect(reads.value == readsWhilePaused)

        // Draining the input lets reading resume.
        received.value += try bev.read(upTo: Int.max)
        draining.value = true
        #expect(try BEKit.run(base, timeout: .seconds(4)) { received.value.count == data.count })
        #expect(BEKit.same(received.value, data))
        #expect(largest.value <= high)
        sender.stop()
        close(peer)
        BEKit.finish(base, [bev])
    }

    /// The write callback runs when the output falls to the low watermark,
    /// never while it is above.
    @Test func writeLowWatermarkRunsTheWriteCallbackAtLow() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        BEKit.setBufferSizes(local, send: 16384)
        let low = 64 * 1024
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        bev.setWatermark(.write, low: low, high: 0)
        let data = BEKit.pattern(1 << 20, seed: 5)
        try bev.write(data)
        try BEKit.spin(base, for: .milliseconds(80))
        #expect(bev.output.count > low, "the socket took too much: the test needs the output above low")
        #expect(recorder.writes == 0)

        let reader = try BERawReader(base: base, fd: peer)
        #expect(try BEKit.run(base, timeout: .seconds(4)) { reader.received.count == data.count })
        #expect(BEKit.same(reader.received, data))
        #expect(recorder.writes > 0)
        for entry in recorder.entries {
            if case .write(let left) = entry { #expect(left <= low, "write callback with \(left) bytes still queued") }
        }
        reader.stop()
        close(peer)
        BEKit.finish(base, [bev])
    }

    /// With the default write low watermark (0) the write callback runs
    /// only when the output is empty.
    @Test func defaultWriteLowWatermarkMeansEmpty() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        let data = BEKit.pattern(512 * 1024, seed: 6)
        try bev.write(data)
        let reader = try BERawReader(base: base, fd: peer)
        #expect(try BEKit.run(base, timeout: .seconds(4)) { reader.received.count == data.count && recorder.writes > 0 })
        #expect(recorder.entries == [.write(0)])
        reader.stop()
        close(peer)
        BEKit.finish(base, [bev])
    }
}
