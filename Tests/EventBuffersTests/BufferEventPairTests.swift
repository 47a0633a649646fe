import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

@Suite("PairBufferEvent: two bufferevents joined without a socket")
struct BufferEventPairTests {
    /// What one end writes arrives in the other's input, both ways, in order.
    @Test func bytesWrittenOnOneEndArriveAtTheOther() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        #expect(a.other === b)
        #expect(b.other === a)
        let atA = BERecorder()
        let atB = BERecorder()
        atA.attach(to: a)
        atB.attach(to: b)
        try a.enable(.read)
        try b.enable(.read)
        try a.write("hello ")
        try a.write("world")
        try b.write("back")
        #expect(try BEKit.run(base) { atB.receivedText == "hello world" && atA.receivedText == "back" })
        #expect(atB.receivedText == "hello world")
        #expect(atA.receivedText == "back")
        let big = BEKit.pattern(300_000, seed: 2)
        try a.write(big)
        #expect(try BEKit.run(base) { atB.received.count == 11 + big.count })
        #expect(BEKit.same(Array(atB.received.dropFirst(11)), big))
        BEKit.finish(base, [a, b])
    }

    /// Per direction: with writing disabled on one end, or reading on the
    /// other, nothing moves; enabling moves it.
    @Test func disabledDirectionsHoldDataBack() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let recorder = BERecorder()
        recorder.attach(to: b)
        try a.disable(.write)
        try b.enable(.read)
        try a.write("one")
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(a.output.count == 3)
        #expect(b.input.isEmpty)
        try a.enable(.write)
        #expect(try BEKit.run(base) { recorder.receivedText == "one" })

        try b.disable(.read)
        try a.write("two")
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(a.output.count == 3)
        #expect(recorder.receivedText == "one")
        try b.enable(.read)
        #expect(try BEKit.run(base) { recorder.receivedText == "onetwo" })
        BEKit.finish(base, [a, b])
    }

    /// Callbacks come from the loop, never from inside the write that caused
    /// them.
    @Test func callbacksAreDeferredToTheLoop() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let inCall = BEVar(false)
        let calls = BEVar<[String]>([])
        a.setCallbacks(read: nil, write: { _ in calls.value.append("a.write inCall=\(inCall.value)") }, event: nil)
        b.setCallbacks(
            read: { bev in
                calls.value.append("b.read inCall=\(inCall.value)")
                _ = try? bev.read(upTo: Int.max)
            }, write: nil, event: nil)
        try b.enable(.read)
        inCall.value = true
        try a.write("x")
        inCall.value = false
        #expect(calls.value.isEmpty, "callbacks ran inside write(): \(calls.value)")
        #expect(b.input.count == 1)
        #expect(try BEKit.run(base) { calls.value.count == 2 })
        #expect(Set(calls.value) == ["a.write inCall=false", "b.read inCall=false"])
        BEKit.finish(base, [a, b])
    }

    /// flush() does not run callbacks inside the call either: a pair
    /// delivers callbacks from the loop only.
    @Test func flushDoesNotRunCallbacksInsideTheCall() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let inCall = BEVar(false)
        let calls = BEVar<[String]>([])
        a.setCallbacks(read: nil, write: { _ in calls.value.append("a.write inCall=\(inCall.value)") }, event: nil)
        b.setCallbacks(
            read: { bev in
                calls.value.append("b.read inCall=\(inCall.value)")
                _ = try? bev.read(upTo: Int.max)
            }, write: nil, event: nil)
        try b.enable(.read)
        inCall.value = true
        try a.write("x")
        a.flush()
        inCall.value = false
        #expect(calls.value.isEmpty, "callbacks ran inside write()/flush(): \(calls.value)")
        #expect(try BEKit.run(base) { calls.value.count >= 2 })
        #expect(!calls.value.contains { $0.hasSuffix("inCall=true") }, "\(calls.value)")
        BEKit.finish(base, [a, b])
    }

    /// The receiving end's high watermark limits what the pair moves; draining
    /// lets the rest follow, in order.
    @Test func readHighWatermarkIsHonouredAcrossThePair() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let recorder = BERecorder(drains: false)
        recorder.attach(to: b)
        b.setWatermark(.read, low: 0, high: 100)
        try b.enable(.read)
        let data = BEKit.pattern(1000, seed: 8)
        try a.write(data)
        try BEKit.spin(base, for: .milliseconds(30))
        #expect(b.input.count == 100)
        #expect(a.output.count == 900)
        #expect(recorder.reads >= 1)

        var received = try b.read(upTo: Int.max)
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(b.input.count == 100)
        #expect(a.output.count == 800)
        recorder.drains = true
        received += try b.read(upTo: Int.max)
        let drainedByHand = received.count
        #expect(try BEKit.run(base) { drainedByHand + recorder.received.count == data.count })
        #expect(BEKit.same(received + recorder.received, data))
        #expect(recorder.entries.allSatisfy { if case .read(let n) = $0 { n <= 100 } else { true } }, "\(recorder.entries)")
        BEKit.finish(base, [a, b])
    }

    /// The receiving end's read callback waits for its low watermark.
    @Test func readLowWatermarkIsHonouredAcrossThePair() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let recorder = BERecorder(drains: false)
        recorder.attach(to: b)
        b.setWatermark(.read, low: 50, high: 0)
        try b.enable(.read)
        try a.write(BEKit.pattern(30, seed: 1))
        try BEKit.spin(base, for: .milliseconds(30))
        #expect(b.input.count == 30)
        #expect(recorder.reads == 0)
        try a.write(BEKit.pattern(30, seed: 2))
        #expect(try BEKit.run(base) { recorder.reads > 0 })
        #expect(recorder.entries.first == .read(60))
        BEKit.finish(base, [a, b])
    }

    /// Without a high watermark everything written moves across, however
    /// much: a read low watermark of 100 000 is reached by one 100 000-byte
    /// write (libevent's be_pair_transfer moves the whole output).
    @Test func withoutAHighWatermarkEverythingMovesAcross() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let recorder = BERecorder(drains: false)
        recorder.attach(to: b)
        b.setWatermark(.read, low: 100_000, high: 0)
        try b.enable(.read)
        try a.write(BEKit.pattern(100_000, seed: 3))
        #expect(
            try BEKit.run(base, timeout: .seconds(1)) { recorder.reads > 0 },
            "stalled: b holds \(b.input.count), a still holds \(a.output.count)")
        #expect(b.input.count == 100_000)
        #expect(a.output.isEmpty)
        BEKit.finish(base, [a, b])
    }

    /// The writing end's write callback runs when its output falls to its low
    /// watermark as the other end takes data.
    @Test func writeLowWatermarkIsHonouredAcrossThePair() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let writes = BEVar<[Int]>([])
        a.setCallbacks(read: nil, write: { bev in writes.value.append(bev.output.count) }, event: nil)
        a.setWatermark(.write, low: 200, high: 0)
        b.setWatermark(.read, low: 0, high: 100)
        try b.enable(.read)
        try a.write(BEKit.pattern(1000, seed: 4))
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(writes.value.isEmpty)
        #expect(a.output.count == 900)
        while a.output.count > 0 {
            _ = try b.read(upTo: Int.max)
            try BEKit.spin(base, for: .milliseconds(5))
        }
        _ = try b.read(upTo: Int.max)
        #expect(!writes.value.isEmpty)
        #expect(writes.value.allSatisfy { $0 <= 200 }, "\(writes.value)")
        BEKit.finish(base, [a, b])
    }

    /// Freeing one end makes the other see `[.reading, .endOfFile]` after the
    /// data it already has; the survivor has no partner any more.
    @Test func freeingOneEndSendsEndOfFileToTheOther() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let recorder = BERecorder()
        recorder.attach(to: b)
        try b.enable(.read)
        try a.write("goodbye")
        try BEKit.spin(base, for: .milliseconds(20))
        a.free()
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(recorder.receivedText == "goodbye")
        #expect(recorder.events.map(\.0) == [[.reading, .endOfFile]])
        #expect(b.other == nil)
        BEKit.finish(base, [b])
    }

    /// `flush(.write, mode: .finished)` sends EOF to the partner after the
    /// data; the pair stays joined.
    @Test func finishedFlushSendsEndOfFileToThePartner() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let recorder = BERecorder()
        recorder.attach(to: b)
        try b.enable(.read)
        try a.write("last")
        a.flush(.write, mode: .finished)
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(recorder.receivedText == "last")
        #expect(recorder.entries.first == .read(4), "data before EOF: \(recorder.entries)")
        #expect(recorder.events.map(\.0) == [[.reading, .endOfFile]])
        #expect(b.other === a)
        BEKit.finish(base, [a, b])
    }

    /// No callback runs after free, even one already queued.
    @Test func noCallbackAfterFree() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let recorder = BERecorder()
        recorder.attach(to: b)
        try b.enable(.read)
        try a.write("queued")
        #expect(b.input.count == 6)
        b.free()
        try BEKit.spin(base, for: .milliseconds(50))
        #expect(recorder.entries.isEmpty, "\(recorder.entries)")
        #expect(a.other == nil)
        BEKit.finish(base, [a])
    }
}
