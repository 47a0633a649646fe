import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

/// Rate limits observed on real sockets: within 10% of the configured rate
/// over two seconds.
@Suite(.serialized) struct RateLimitTests {
    static let window: Duration = .seconds(2)

    func ownedBase() throws -> EventBase {
        var configuration = EventBase.Configuration(method: .epoll, lockProvider: NoLockProvider())
        configuration.ignoreEnvironment = true
        return try EventBase(configuration)
    }

    /// Keeps writing into `fd` until `stop` is set.
    func feeder(_ fd: Int32, _ stop: AtomicFlag) -> TestThread {
        TestThread {
            var chunk = [UInt8](repeating: 0x41, count: 8192)
            while !stop.value {
                if write(fd, &chunk, chunk.count) <= 0 { pause(.microseconds(500)) }
            }
        }
    }

    @Test func readRateIsHeldWithinTenPercent() throws {
        let base = try ownedBase()
        let pair = SocketPair()
        let bev = try SocketBufferEvent(base: base, fd: pair.left)
        // 25 kB per 50 ms tick: 500 kB/s.
        try bev.setRateLimit(try RateLimit(readRate: 25_000, writeRate: RateLimit.unlimited, tick: .milliseconds(50)))
        let read = Counter()
        bev.setCallbacks(read: { bev in
            let n = bev.input.count
            try? bev.input.drain(n)
            read.increment(by: n)
        }, write: nil, event: nil)
        try bev.enable(.read)
        let stop = AtomicFlag()
        let writer = feeder(pair.right, stop)
        try base.loopExit(after: Self.window)
        try base.loop()
        stop.value = true
        writer.join()
        let expected = 500_000.0 * Self.window.seconds
        let observed = Double(read.value)
        // The first tick's burst comes on top of the window's refills.
        #expect(abs(observed - expected) <= expected * 0.10 + 25_000, "read \(observed) bytes, expected about \(expected)")
        bev.free()
    }

    @Test func writeRateIsHeldWithinTenPercent() throws {
        let base = try ownedBase()
        let pair = SocketPair()
        let bev = try SocketBufferEvent(base: base, fd: pair.left)
        try bev.setRateLimit(try RateLimit(readRate: RateLimit.unlimited, writeRate: 20_000, tick: .milliseconds(40)))
        let chunk = [UInt8](repeating: 0x42, count: 16384)
        bev.setWatermark(.write, low: 65536, high: 0)
        bev.setCallbacks(read: nil, write: { bev in
            while bev.output.count < 262_144 { try? bev.write(chunk) }
        }, event: nil)
        try bev.write(chunk)
        let received = Counter()
        let stop = AtomicFlag()
        let reader = TestThread {
            var sink = [UInt8](repeating: 0, count: 65536)
            while !stop.value {
                let n = read(pair.right, &sink, sink.count)
                if n > 0 { received.increment(by: n) } else { pause(.microseconds(500)) }
            }
        }
        try base.loopExit(after: Self.window)
        try base.loop()
        stop.value = true
        reader.join()
        let expected = 500_000.0 * Self.window.seconds
        let observed = Double(received.value)
        #expect(abs(observed - expected) <= expected * 0.10 + 20_000, "wrote \(observed) bytes, expected about \(expected)")
        bev.free()
    }

    @Test func aGroupSharesItsRateFairly() throws {
        let base = try ownedBase()
        let group = try RateLimitGroup(base: base, limit: try RateLimit(readRate: 25_000, writeRate: RateLimit.unlimited, tick: .milliseconds(50)))
        let pairs = (0..<4).map { _ in SocketPair() }
        let counters = pairs.map { _ in Counter() }
        var members: [SocketBufferEvent] = []
        for (index, pair) in pairs.enumerated() {
            let bev = try SocketBufferEvent(base: base, fd: pair.left)
            bev.setRateLimitGroup(group)
            bev.setCallbacks(read: { bev in
                let n = bev.input.count
                try? bev.input.drain(n)
                counters[index].increment(by: n)
            }, write: nil, event: nil)
            try bev.enable(.read)
            members.append(bev)
        }
        #expect(group.memberCount == 4)
        let stop = AtomicFlag()
        let writers = pairs.map { feeder($0.right, stop) }
        try base.loopExit(after: Self.window)
        try base.loop()
        stop.value = true
        for writer in writers { writer.join() }
        let total = Double(counters.reduce(0) { $0 + $1.value })
        let expected = 500_000.0 * Self.window.seconds
        #expect(abs(total - expected) <= expected * 0.10 + 25_000, "the group read \(total) bytes, expected about \(expected)")
        #expect(group.totals.read == Int(total))
        for counter in counters {
            #expect(Double(counter.value) >= total / 4 * 0.5, "a member got \(counter.value) of \(total)")
        }
        for bev in members { bev.free() }
        #expect(group.memberCount == 0)
    }

    @Test func invalidConfigurationsAreRefused() {
        #expect(throws: RateLimitError.nonPositiveRate) { _ = try RateLimit(readRate: 0, writeRate: 1) }
        #expect(throws: RateLimitError.nonPositiveRate) { _ = try RateLimit(readRate: 1, writeRate: -5) }
        #expect(throws: RateLimitError.invalidTick(.zero)) { _ = try RateLimit(readRate: 1, writeRate: 1, tick: .zero) }
        #expect(throws: RateLimitError.burstBelowRate) { _ = try RateLimit(readRate: 10, readBurst: 5, writeRate: 1) }
    }

    /// Huge rates and bursts saturate instead of overflowing (libevent once
    /// overflowed and divided by zero here).
    @Test func hugeRatesDoNotOverflow() throws {
        let base = try ownedBase()
        let pair = SocketPair()
        let bev = try SocketBufferEvent(base: base, fd: pair.left)
        try bev.setRateLimit(try RateLimit(readRate: Int.max / 2, readBurst: Int.max, writeRate: Int.max, tick: .milliseconds(1)))
        let got = Box<String>("")
        bev.setCallbacks(read: { bev in
            got.value = (try? bev.input.string()) ?? ""
            try? bev.base.loopBreak()
        }, write: nil, event: nil)
        try bev.enable(.read)
        pause(.milliseconds(20))
        pair.send("through")
        try base.loopExit(after: .seconds(2))
        try base.loop()
        #expect(got.value == "through")
        bev.free()
    }
}
