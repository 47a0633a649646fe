import EventCore
import EventLocking
import Glibc

/// A token-bucket configuration (libevent's `ev_token_bucket_cfg`): each
/// tick adds `rate` bytes of allowance, up to `burst`.
public struct RateLimit: Sendable, Hashable {
    public var readRate: Int
    public var readBurst: Int
    public var writeRate: Int
    public var writeBurst: Int
    public var tick: Duration

    /// Rates are bytes per tick; bursts at least the rates. Zero or negative
    /// rates, or a zero tick, are refused (libevent once divided by them).
    public init(readRate: Int, readBurst: Int? = nil, writeRate: Int, writeBurst: Int? = nil, tick: Duration = .seconds(1))
        throws(RateLimitError)
    {
        guard readRate > 0, writeRate > 0 else { throw .nonPositiveRate }
        guard tick > .zero, tick <= .seconds(3600) else { throw .invalidTick(tick) }
        let readBurst = readBurst ?? readRate
        let writeBurst = writeBurst ?? writeRate
        guard readBurst >= readRate, writeBurst >= writeRate else { throw .burstBelowRate }
        self.readRate = readRate
        self.readBurst = readBurst
        self.writeRate = writeRate
        self.writeBurst = writeBurst
        self.tick = tick
    }

    /// Effectively no limit in one direction.
    public static let unlimited = Int(Int32.max)
}

public enum RateLimitError: Error, Hashable {
    case nonPositiveRate
    case burstBelowRate
    case invalidTick(Duration)
}

/// A token bucket: allowance in each direction, refilled per tick, never
/// above the burst (libevent's `ev_token_bucket`). Arithmetic saturates, so
/// long idle periods or huge rates cannot overflow.
struct TokenBucket {
    var read: Int
    var written: Int
    var lastTick: Int64

    init(_ limit: RateLimit, tick: Int64) {
        read = limit.readBurst
        written = limit.writeBurst
        lastTick = tick
    }

    mutating func refill(_ limit: RateLimit, tick: Int64) {
        let elapsed = tick - lastTick
        guard elapsed > 0 else { return }
        lastTick = tick
        read = Self.add(read, rate: limit.readRate, ticks: elapsed, burst: limit.readBurst)
        written = Self.add(written, rate: limit.writeRate, ticks: elapsed, burst: limit.writeBurst)
    }

    static func add(_ tokens: Int, rate: Int, ticks: Int64, burst: Int) -> Int {
        let (product, overflow) = rate.multipliedReportingOverflow(by: Int(clamping: ticks))
        if overflow { return burst }
        let (sum, overflow2) = tokens.addingReportingOverflow(product)
        return overflow2 ? burst : min(sum, burst)
    }
}

/// Applies a rate limit to bufferevents: one per bufferevent, or one shared
/// by a group. Owned by the bufferevents' base; its state is guarded by
/// its own lock (taken while a bufferevent's lock is held, never the other
/// way round).
final class RateLimiter: @unchecked Sendable {
    // `bucket`, `members`, `suspended`, `timer` and `minimumShare` are guarded by `lock`.
    let limit: RateLimit
    private let lock: any EventLock
    private var bucket: TokenBucket
    private var members: [ObjectIdentifier: Weak] = [:]
    private var suspended: [ObjectIdentifier: Weak] = [:]
    private var timer: Event?
    let isGroup: Bool
    private var minimumShareValue: Int
    /// Totals moved through the limiter (libevent's group totals).
    private(set) var totalRead = 0
    private(set) var totalWritten = 0
    private let tickNanoseconds: Int64
    private let epoch = MonotonicNow.nanoseconds()

    struct Weak {
        weak var bufferEvent: BufferEvent?
    }

    init(limit: RateLimit, base: EventBase, isGroup: Bool) throws(EventError) {
        self.limit = limit
        self.isGroup = isGroup
        minimumShareValue = isGroup ? 64 : 0
        lock = base.lockProvider.makeLock(.recursive)
        let (seconds, attoseconds) = limit.tick.components
        tickNanoseconds = max(1, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        bucket = TokenBucket(limit, tick: 0)
        timer = try Event.timer(base: base, persist: false) { [weak self] _, _ in self?.tickFired() }
    }

    private func currentTick() -> Int64 { (MonotonicNow.nanoseconds() - epoch) / tickNanoseconds }

    func attach(_ bufferEvent: BufferEvent) {
        lock.withLock { members[ObjectIdentifier(bufferEvent)] = Weak(bufferEvent: bufferEvent) }
    }

    func detach(_ bufferEvent: BufferEvent) {
        lock.withLock {
            members[ObjectIdentifier(bufferEvent)] = nil
            suspended[ObjectIdentifier(bufferEvent)] = nil
        }
    }

    var memberCount: Int { lock.withLock { members.count } }

    /// What a member may read now: its share of the bucket (a group splits it
    /// evenly, with a minimum share so no member starves).
    func readAllowance(for bufferEvent: BufferEvent) -> Int {
        lock.withLock {
            bucket.refill(limit, tick: currentTick())
            return share(of: bucket.read)
        }
    }

    func writeAllowance(for bufferEvent: BufferEvent) -> Int {
        lock.withLock {
            bucket.refill(limit, tick: currentTick())
            return share(of: bucket.written)
        }
    }

    private func share(of tokens: Int) -> Int {
        guard tokens > 0 else { return 0 }
        guard isGroup, members.count > 1 else { return tokens }
        return min(tokens, max(tokens / members.count, minimumShareValue))
    }

    func charge(_ bufferEvent: BufferEvent, read count: Int) {
        lock.withLock {
            bucket.read -= count
            totalRead += count
            if bucket.read <= 0 { suspendAll(bufferEvent) }
        }
    }

    func charge(_ bufferEvent: BufferEvent, written count: Int) {
        lock.withLock {
            bucket.written -= count
            totalWritten += count
            if bucket.written <= 0 { suspendAll(bufferEvent) }
        }
    }

    /// The bucket is empty: hold every member back until the next tick.
    private func suspendAll(_ current: BufferEvent) {
        suspended[ObjectIdentifier(current)] = Weak(bufferEvent: current)
        if isGroup {
            for (id, member) in members { suspended[id] = member }
        }
        armTimer()
    }

    /// A member found no allowance: resume it on the next tick.
    func noteStarved(_ bufferEvent: BufferEvent) {
        lock.withLock {
            suspended[ObjectIdentifier(bufferEvent)] = Weak(bufferEvent: bufferEvent)
            armTimer()
        }
    }

    private func armTimer() {
        guard let timer, !timer.isPending else { return }
        let next = (currentTick() + 1) * tickNanoseconds + epoch
        let delay = max(0, next - MonotonicNow.nanoseconds())
        try? timer.add(timeout: .nanoseconds(delay))
    }

    /// A tick: refill, and let the suspended members go, in random order so
    /// no member of a group always goes first (libevent does the same).
    private func tickFired() {
        let waiting: [BufferEvent] = lock.withLock {
            bucket.refill(limit, tick: currentTick())
            let list = suspended.values.compactMap(\.bufferEvent)
            suspended.removeAll()
            return list.shuffled()
        }
        for bufferEvent in waiting {
            bufferEvent.lock.withLock { bufferEvent.resume(.both, .rateLimit) }
            bufferEvent.deliverCallbacksOrDefer(onLoop: true)
        }
    }

    var minimumShare: Int {
        get { lock.withLock { minimumShareValue } }
        set { lock.withLock { minimumShareValue = max(0, newValue) } }
    }

    func snapshotTotals() -> (read: Int, written: Int) { lock.withLock { (totalRead, totalWritten) } }

    /// Stops the refill timer (the group or bufferevent is going away).
    func close() {
        let timer = lock.withLock { () -> Event? in
            let timer = self.timer
            self.timer = nil
            return timer
        }
        try? timer?.finalize { _ in }
    }
}

/// Monotonic nanoseconds (the rate limiter's clock).
enum MonotonicNow {
    static func nanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

/// Bufferevents sharing one token bucket (libevent's
/// `bufferevent_rate_limit_group`): together they move no more than the
/// limit, each gets at least ``minimumShare`` per tick when it can.
public final class RateLimitGroup: Sendable {
    let limiter: RateLimiter

    public init(base: EventBase, limit: RateLimit) throws(EventError) {
        limiter = try RateLimiter(limit: limit, base: base, isGroup: true)
    }

    deinit { limiter.close() }

    /// The smallest share a member gets per tick (libevent's
    /// `bufferevent_rate_limit_group_set_min_share`, default 64).
    public var minimumShare: Int {
        get { limiter.minimumShare }
        set { limiter.minimumShare = newValue }
    }

    /// Bytes read and written by all members so far
    /// (libevent's `bufferevent_rate_limit_group_get_totals`).
    public var totals: (read: Int, written: Int) { limiter.snapshotTotals() }

    public var memberCount: Int { limiter.memberCount }
}

extension BufferEvent {
    /// Limits this bufferevent alone (libevent's `bufferevent_set_rate_limit`);
    /// nil removes the limit.
    public func setRateLimit(_ limit: RateLimit?) throws(EventError) {
        let limiter = try limit.map { limit throws(EventError) in try RateLimiter(limit: limit, base: base, isGroup: false) }
        lock.withLock {
            rateLimiter?.detach(self)
            if let old = rateLimiter, !old.isGroup { old.close() }
            rateLimiter = limiter
            limiter?.attach(self)
            resume(.both, .rateLimit)
        }
    }

    /// Adds this bufferevent to `group`, or removes it with nil
    /// (libevent's `bufferevent_add_to_rate_limit_group`).
    public func setRateLimitGroup(_ group: RateLimitGroup?) {
        lock.withLock {
            rateLimiter?.detach(self)
            if let old = rateLimiter, !old.isGroup { old.close() }
            rateLimiter = group?.limiter
            group?.limiter.attach(self)
            resume(.both, .rateLimit)
        }
    }
}
