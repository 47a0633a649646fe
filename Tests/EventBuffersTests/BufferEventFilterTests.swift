import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

/// Filters for the tests.
enum BEFilters {
    /// Moves up to `limit` bytes, transformed byte by byte.
    static func mapping(_ transform: @escaping @Sendable (UInt8) -> [UInt8]) -> FilterBufferEvent.Filter {
        { source, destination, limit, _ in
            guard !source.isEmpty else { return .needMore }
            guard let bytes = try? source.remove(upTo: max(1, min(limit, source.count))) else { return .error }
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count * 2)
            for byte in bytes { out += transform(byte) }
            return (try? destination.add(out)) == nil ? .error : .ok
        }
    }

    static let uppercase = mapping { byte in [(0x61...0x7A).contains(byte) ? byte - 0x20 : byte] }
    static let double = mapping { byte in [byte, byte] }
    static let xor55 = mapping { byte in [byte ^ 0x55] }

    /// Passes whole 4-byte blocks only; at the end of the stream
    /// (`.finished`) it passes the partial block too.
    static let blocksOfFour: FilterBufferEvent.Filter = { source, destination, _, mode in
        let whole = mode == .finished ? source.count : source.count / 4 * 4
        guard whole > 0 else { return .needMore }
        guard (try? source.move(upTo: whole, into: destination)) == whole else { return .error }
        return .ok
    }

    static let failing: FilterBufferEvent.Filter = { source, _, _, _ in source.isEmpty ? .needMore : .error }
}

@Suite("FilterBufferEvent over pairs and sockets")
struct BufferEventFilterTests {
    /// Input uppercased, output doubled, end to end through a pair.
    @Test func dataIsTransformedBothWays() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let filter = try FilterBufferEvent(underlying: a, input: BEFilters.uppercase, output: BEFilters.double)
        #expect(filter.underlying === a)
        let atFilter = BERecorder()
        let atB = BERecorder()
        atFilter.attach(to: filter)
        atB.attach(to: b)
        try filter.enable(.read)
        try b.enable(.read)
        try filter.write("abc")
        try b.write("hello, World 42")
        #expect(try BEKit.run(base) { atB.receivedText == "aabbcc" && atFilter.receivedText == "HELLO, WORLD 42" })
        #expect(atB.receivedText == "aabbcc")
        #expect(atFilter.receivedText == "HELLO, WORLD 42")

        // Larger than one transfer: every byte, in order.
        let data = BEKit.pattern(100_000, seed: 11)
        try filter.write(data)
        #expect(try BEKit.run(base) { atB.received.count == 6 + 2 * data.count })
        let doubled = data.flatMap { [$0, $0] }
        #expect(BEKit.same(Array(atB.received.dropFirst(6)), doubled))
        BEKit.finish(base, [filter, a, b])
    }

    /// A filter that says `.needMore` holds bytes until a whole block is
    /// there; at EOF it sees `.finished` and passes the rest.
    @Test func needMoreHoldsBytesUntilEnoughArrive() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let filter = try FilterBufferEvent(underlying: a, input: BEFilters.blocksOfFour)
        let recorder = BERecorder()
        recorder.attach(to: filter)
        try filter.enable(.read)
        try b.write("abc")
        try BEKit.spin(base, for: .milliseconds(30))
        #expect(recorder.reads == 0)
        #expect(filter.input.isEmpty)
        #expect(a.input.count == 3)
        try b.write("d")
        #expect(try BEKit.run(base) { recorder.receivedText == "abcd" })
        try b.write("efghij")
        #expect(try BEKit.run(base) { recorder.receivedText == "abcdefgh" })
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(recorder.receivedText == "abcdefgh")
        #expect(a.input.count == 2)
        b.free()
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(recorder.receivedText == "abcdefghij", "the partial block at EOF")
        #expect(recorder.events.map(\.0) == [[.reading, .endOfFile]])
        BEKit.finish(base, [filter, a])
    }

    /// The filter's read high watermark limits what the input filter adds;
    /// draining lets the rest through, in order.
    @Test func readHighWatermarkLimitsTheInputFilter() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let filter = try FilterBufferEvent(underlying: a, input: BEFilters.uppercase)
        let recorder = BERecorder(drains: false)
        recorder.attach(to: filter)
        filter.setWatermark(.read, low: 0, high: 10)
        try filter.enable(.read)
        try b.write(String(repeating: "abcdefghij", count: 10))
        #expect(try BEKit.run(base) { recorder.reads > 0 })
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(filter.input.count == 10)
        var received = try filter.read(upTo: Int.max)
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(filter.input.count == 10)
        recorder.drains = true
        received += try filter.read(upTo: Int.max)
        let drainedByHand = received.count
        #expect(try BEKit.run(base) { drainedByHand + recorder.received.count == 100 })
        #expect(String(decoding: received + recorder.received, as: UTF8.self) == String(repeating: "ABCDEFGHIJ", count: 10))
        #expect(recorder.entries.allSatisfy { if case .read(let n) = $0 { n <= 10 } else { true } }, "\(recorder.entries)")
        BEKit.finish(base, [filter, a, b])
    }

    /// An input filter returning `.error` reports `[.reading, .error]`.
    @Test func inputFilterErrorIsReported() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let filter = try FilterBufferEvent(underlying: a, input: BEFilters.failing)
        let recorder = BERecorder()
        recorder.attach(to: filter)
        try filter.enable(.read)
        try b.write("bad data")
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        #expect(recorder.events.first?.0 == [.reading, .error])
        #expect(recorder.reads == 0)
        #expect(filter.input.isEmpty)
        BEKit.finish(base, [filter, a, b])
    }

    /// An output filter returning `.error` reports `[.writing, .error]`.
    @Test func outputFilterErrorIsReported() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let filter = try FilterBufferEvent(underlying: a, output: BEFilters.failing)
        let recorder = BERecorder()
        recorder.attach(to: filter)
        let atB = BERecorder()
        atB.attach(to: b)
        try b.enable(.read)
        try filter.write("bad data")
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        #expect(recorder.events.first?.0 == [.writing, .error])
        #expect(atB.received.isEmpty)
        BEKit.finish(base, [filter, a, b])
    }

    /// `.closeOnFree` frees the underlying bufferevent (whose partner then
    /// sees EOF); without it the underlying one lives on, its callbacks
    /// taken back.
    @Test func closeOnFreeFreesTheUnderlyingBufferEvent() throws {
        let base = try BEKit.ownedBase()
        let (a, b) = try PairBufferEvent.makePair(base: base)
        let filter = try FilterBufferEvent(underlying: a, options: [.closeOnFree])
        let atB = BERecorder()
        atB.attach(to: b)
        try b.enable(.read)
        try filter.enable(.read)
        filter.free()
        #expect(filter.isFree)
        #expect(a.isFree)
        #expect(try BEKit.run(base) { !atB.events.isEmpty })
        #expect(atB.events.map(\.0) == [[.reading, .endOfFile]])
        BEKit.finish(base, [b])

        let base2 = try BEKit.ownedBase()
        let (c, d) = try PairBufferEvent.makePair(base: base2)
        let kept = try FilterBufferEvent(underlying: c)
        let atKept = BERecorder()
        atKept.attach(to: kept)
        try kept.enable(.read)
        kept.free()
        #expect(!c.isFree)
        try d.write("still flowing")
        try BEKit.spin(base2, for: .milliseconds(30))
        #expect(c.input.count == 13)
        #expect(atKept.entries.isEmpty)
        BEKit.finish(base2, [c, d])
    }

    /// A filter over a TCP socket: the output is XOR-ed on the way out, an
    /// echo server returns it unchanged, the input filter XORs it back.
    @Test func filterOverASocket() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        let socket = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let filter = try FilterBufferEvent(
            underlying: socket, input: BEFilters.xor55, output: BEFilters.xor55, options: [.closeOnFree])
        let echo = try SocketBufferEvent(base: base, fd: peer, options: [.closeOnFree])
        let onTheWire = BEVar<[UInt8]>([])
        echo.setCallbacks(
            read: { bev in
                let bytes = (try? bev.read(upTo: Int.max)) ?? []
                onTheWire.value += bytes
                try? bev.write(bytes)
            }, write: nil, event: nil)
        try echo.enable(.read)
        let recorder = BERecorder()
        recorder.attach(to: filter)
        try filter.enable(.read)
        let data = BEKit.pattern(200_000, seed: 12)
        try filter.write(data)
        #expect(try BEKit.run(base, timeout: .seconds(4)) { recorder.received.count == data.count })
        #expect(BEKit.same(recorder.received, data))
        #expect(BEKit.same(onTheWire.value, data.map { $0 ^ 0x55 }))
        BEKit.finish(base, [filter, echo])
        #expect(socket.isFree)
    }
}
