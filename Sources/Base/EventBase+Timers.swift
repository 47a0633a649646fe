import Glibc

extension EventBase {
    // MARK: time

    /// The loop's notion of now: the cached time inside a loop iteration,
    /// the clock otherwise (libevent's `gettime`).
    @inline(__always)
    func currentTime() -> Int64 {
        cachedNow != 0 ? cachedNow : MonotonicClock.now()
    }

    /// The time cached at the start of this loop iteration's callbacks, as
    /// wall-clock time since the epoch (libevent's
    /// `event_base_gettimeofday_cached`); the current time outside the loop.
    public func cachedTime() throws(EventError) -> Duration {
        try withWriter("EventBase.cachedTime") {
            let now = self.currentTime()
            self.refreshWallClockOffset(now: now)
            return .nanoseconds(now + self.wallClockOffset)
        }
    }

    /// Refreshes the cached time (libevent's `event_base_update_cache_time`).
    public func updateCachedTime() throws(EventError) {
        try withWriter("EventBase.updateCachedTime") {
            if self.cachedNow != 0 { self.cachedNow = MonotonicClock.now() }
        }
    }

    func refreshWallClockOffset(now: Int64) {
        if wallClockOffsetUpdated == Int64.min || now &- wallClockOffsetUpdated >= 5_000_000_000 {
            wallClockOffset = MonotonicClock.wallClock() - MonotonicClock.now()
            wallClockOffsetUpdated = now
        }
    }

    // MARK: common timeouts

    /// A common timeout for `duration`, shared by every event added with it
    /// (libevent's `event_base_init_common_timeout`). Asking twice for one
    /// duration returns the same queue.
    public func commonTimeout(_ duration: Duration) throws(EventError) -> CommonTimeout {
        guard duration >= .zero, duration <= EventBase.maximumTimeout else { throw .invalidTimeout(duration) }
        let nanoseconds = duration.nanosecondsRoundedUp
        return try withWriter("EventBase.commonTimeout") {
            if let existing = self.commonQueues[nanoseconds] { return CommonTimeout(queue: existing) }
            let id = self.commonQueueList.count < TimerSlot.maximumQueues ? UInt32(self.commonQueueList.count) : nil
            let queue = CommonTimeoutQueue(base: self, duration: nanoseconds, id: id)
            if id != nil { self.commonQueueList.append(Unmanaged.passUnretained(queue)) }
            let timer = Event(internalOn: self, keepsLoopAlive: false, priority: 0) { _, _ in }
            timer.expiresQueue = queue
            queue.timer = timer
            self.commonQueues[nanoseconds] = queue
            return CommonTimeout(queue: queue)
        }
    }

    // MARK: scheduling (writer)

    func scheduleTimeout(_ event: Event, after nanoseconds: Int64, queue: CommonTimeoutQueue?) {
        if event.hasTimeout { removeTimeout(event) }
        event.deadline = currentTime() &+ nanoseconds
        insertTimeout(event, queue: queue)
    }

    func insertTimeout(_ event: Event, queue: CommonTimeoutQueue?) {
        event.hasTimeout = true
        if let queue {
            let wasEmpty = queue.isEmpty
            if queue.append(event) {
                if wasEmpty { armQueueTimer(queue) }
                return
            }
        }
        // No queue, or one that cannot take it in order: the heap.
        timers.insert(event)
    }

    func removeTimeout(_ event: Event) {
        event.hasTimeout = false
        let slot = event.timerSlot
        if TimerSlot.isInRing(slot) {
            commonQueueList[TimerSlot.queue(slot)]._withUnsafeGuaranteedRef { queue in
                let wasHead = TimerSlot.position(slot) == queue.firstPosition
                queue.remove(event)
                if wasHead { armQueueTimer(queue) }
            }
        } else {
            timers.remove(event)
        }
    }

    /// Puts the queue's internal timer at its head's deadline, or takes it
    /// out of the heap when the queue is empty.
    func armQueueTimer(_ queue: CommonTimeoutQueue) {
        let timer = queue.timer!
        guard let head = queue.head else {
            if timer.hasTimeout {
                timers.remove(timer)
                timer.hasTimeout = false
                settle(timer)
            }
            return
        }
        let deadline = head._withUnsafeGuaranteedRef { $0.deadline }
        timer.deadline = deadline
        if timer.hasTimeout {
            timers.update(timer)
        } else {
            timer.hasTimeout = true
            timers.insert(timer)
            settle(timer)
        }
    }

    /// The wait limit for the backend: until the earliest deadline, -1 if none.
    func nextTimeout(now: Int64) -> Int64 {
        guard let top = timers.top else { return -1 }
        let deadline = top._withUnsafeGuaranteedRef { $0.deadline }
        return deadline <= now ? 0 : deadline - now
    }

    /// Activates every event whose deadline passed (libevent's `timeout_process`).
    /// Non-persistent events are deleted first; persistent ones keep their
    /// descriptor registration and are rescheduled when their callback runs.
    func processTimeouts(now: Int64) {
        while let top = timers.top {
            let event = top.takeUnretainedValue()
            if event.deadline > now { break }
            if let queue = event.expiresQueue {
                timers.remove(event)
                event.hasTimeout = false
                expireQueue(queue, now: now)
                settle(event)
                continue
            }
            expire(event)
        }
    }

    private func expireQueue(_ queue: CommonTimeoutQueue, now: Int64) {
        while let head = queue.head {
            let event = head.takeUnretainedValue()
            if event.deadline > now { break }
            expire(event)
        }
        armQueueTimer(queue)
    }

    private func expire(_ event: Event) {
        removeTimeout(event)
        if !event.flags.contains(.persist) && event.isInserted { removeInserted(event) }
        applyActivate(event, .timeout, calls: 1)
    }

    /// Before a persistent event's callback: schedule its next timeout, from
    /// the last deadline if it timed out (so a periodic timer does not drift),
    /// else from now (libevent's `event_persist_closure`).
    func reschedulePersistent(_ event: Event, result: Event.Flags) {
        let now = currentTime()
        var next = now &+ event.interval
        if result.contains(.timeout) {
            let fromDeadline = event.deadline &+ event.interval
            if fromDeadline >= now { next = fromDeadline }
        }
        if event.hasTimeout { removeTimeout(event) }
        event.deadline = next
        // On its common queue when the deadline keeps the queue in order
        // (else the heap, see CommonTimeoutQueue).
        insertTimeout(event, queue: event.intervalQueue)
    }
}
