import EventCore

/// One end of a bufferevent pair (libevent's `bufferevent_pair_new`): what
/// one end writes arrives in the other's input, moved segment by segment,
/// without a socket. The two ends share one lock. Callbacks are always
/// delivered from the loop. When one end is freed or flushed with
/// `.finished`, the other reads end of file.
public final class PairBufferEvent: BufferEvent, @unchecked Sendable {
    // Confinement: `partner` is guarded by the pair's shared lock.
    private weak var partner: PairBufferEvent?

    private init(pairOn base: EventBase, options: Options, sharingLockOf other: BufferEvent?) throws(EventError) {
        try super.init(base: base, options: options.union(.deferCallbacks), sharingLockOf: other)
    }

    /// Two connected ends.
    public static func makePair(base: EventBase, options: Options = []) throws(EventError) -> (PairBufferEvent, PairBufferEvent) {
        let first = try PairBufferEvent(pairOn: base, options: options, sharingLockOf: nil)
        let second = try PairBufferEvent(pairOn: base, options: options, sharingLockOf: first)
        first.lock.withLock {
            first.partner = second
            second.partner = first
        }
        return (first, second)
    }

    /// The other end, while it is not freed (libevent's `bufferevent_pair_get_partner`).
    public var other: PairBufferEvent? { lock.withLock { partner } }

    /// Moves what `source` has written into `destination`'s input, as far as
    /// both are enabled, the destination's high watermark and rate limits allow.
    private static func transfer(from source: PairBufferEvent, to destination: PairBufferEvent) {
        guard source.writingWanted, destination.readingWanted else { return }
        // Everything, as libevent's be_pair_transfer: only the high
        // watermark and rate limits hold bytes back, not the single-read cap.
        var count = min(source.output.total, source.writeRoom)
        count = min(count, destination.readRoom)
        guard count > 0 else { return }
        source.output.unfreeze(end: false)
        destination.input.unfreeze(end: true)
        let moved = (try? source.output.move(upTo: count, into: destination.input)) ?? 0
        source.output.freeze(end: false)
        destination.input.freeze(end: true)
        guard moved > 0 else { return }
        destination.didRead(moved)
        source.didWrite(moved)
    }

    private func exchange() {
        guard let partner else { return }
        Self.transfer(from: self, to: partner)
        Self.transfer(from: partner, to: self)
    }

    private func deliverBoth() {
        let partner = lock.withLock { self.partner }
        scheduleDelivery()
        partner?.scheduleDelivery()
    }

    public override func transportUpdate() throws(EventError) {
        exchange()
        deliverBoth()
    }

    public override func transportOutputAdded() {
        exchange()
        deliverBoth()
    }

    public override func transportInputDrained() {
        exchange()
        deliverBoth()
    }

    public override func transportFlush(_ directions: Direction, mode: FlushMode) {
        exchange()
        if mode == .finished, directions.contains(.write), let partner {
            partner.report([.reading, .endOfFile])
        }
        deliverBoth()
    }

    public override func transportFree() {
        guard let partner else { return }
        self.partner = nil
        partner.partner = nil
        partner.report([.reading, .endOfFile])
        partner.scheduleDelivery()
    }
}
