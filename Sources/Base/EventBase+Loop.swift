import CEventShims
import EventBackends
import Glibc
import Synchronization

extension EventBase {
    /// Runs the loop (libevent's `event_base_loop`): waits for events and
    /// runs their callbacks until none are left, or until exit or break is
    /// requested, or once with `.once` / `.nonBlocking`.
    @discardableResult
    public func loop(_ options: LoopOptions = []) throws(EventError) -> LoopExit {
        if shutDown.load(ordering: .acquiring) { throw .baseShutDown(call: "EventBase.loop") }
        let me = se_thread_id()
        switch discipline {
        case .owned:
            checkOwner("EventBase.loop")
            guard !loopRunning.load(ordering: .relaxed) else { throw .loopAlreadyRunning }
        case .locked, .readCopyUpdate:
            if loopThread.load(ordering: .relaxed) == me { throw .loopAlreadyRunning }
            // The base lock (mutex) or writer role (rcu). A running rcu loop
            // holds the role throughout, so wait only for brief holders.
            while !baseLock.tryLock() {
                if loopRunning.load(ordering: .acquiring) { throw .loopAlreadyRunning }
                sched_yield()
            }
            if loopRunning.load(ordering: .relaxed) {
                baseLock.unlock()
                throw .loopAlreadyRunning
            }
        }
        loopRunning.store(true, ordering: .sequentiallyConsistent)
        loopThread.store(me, ordering: .sequentiallyConsistent)
        if discipline == .readCopyUpdate { writerThread.store(me, ordering: .relaxed) }
        defer { finishLoop() }
        let exit = try runIterations(options)
        // A break or exit asked during this run ends it even if the run was
        // ending anyway (`.once`, `.nonBlocking`): use it up and report it.
        if breakRequested.exchange(false, ordering: .acquiring) {
            lastExit = .break
        } else if exitRequested.exchange(false, ordering: .acquiring) {
            lastExit = .exit
        }
        return exit
    }

    /// libevent's `event_base_dispatch`: `loop([])`.
    @discardableResult
    public func dispatch() throws(EventError) -> LoopExit { try loop() }

    private func finishLoop() {
        cachedNow = 0
        loopThread.store(0, ordering: .sequentiallyConsistent)
        loopRunning.store(false, ordering: .sequentiallyConsistent)
        switch discipline {
        case .owned:
            break
        case .locked:
            // Activations handed over just before the loop stopped.
            drainHandoff()
            baseLock.unlock()
        case .readCopyUpdate:
            drainHandoff()
            flushRetired()
            writerThread.store(0, ordering: .relaxed)
            baseLock.unlock()
            drainIfNoLoop()
        }
    }

    private func runIterations(_ options: LoopOptions) throws(EventError) -> LoopExit {
        while true {
            drainHandoff()
            runPosted()
            runJobs()
            if exitRequested.exchange(false, ordering: .acquiring) {
                lastExit = .exit
                return .finished
            }
            if breakRequested.exchange(false, ordering: .acquiring) {
                lastExit = .break
                return .finished
            }
            continueRequested.store(false, ordering: .relaxed)

            var timeout: Int64 = 0
            if activeCount == 0 && jobs.isEmpty && !options.contains(.nonBlocking) {
                timeout = nextTimeout(now: MonotonicClock.now())
            }
            if !options.contains(.noExitOnEmpty) && userEventCount == 0 && activeCount == 0 && posted.isEmpty && jobs.isEmpty {
                lastExit = .noEvents
                return .noEvents
            }
            cachedNow = 0
            try waitForEvents(timeout: timeout)
            let now = MonotonicClock.now()
            cachedNow = now
            processTimeouts(now: now)

            if discipline == .readCopyUpdate { flushRetired() }
            if activeCount > 0 {
                let ran = processActive()
                if options.contains(.once) && activeCount == 0 && ran != 0 {
                    lastExit = .finished
                    return .finished
                }
            } else if options.contains(.nonBlocking) {
                lastExit = .finished
                return .finished
            }
        }
    }

    /// One backend wait and the dispatch of what it reported.
    private func waitForEvents(timeout: Int64) throws(EventError) {
        backend.prepareWait()
        let ready: UnsafeBufferPointer<ReadyDescriptor>
        do {
            switch discipline {
            case .locked:
                baseLock.unlock()
                defer { baseLock.lock() }
                ready = try backend.wait(timeoutNanoseconds: timeout)
            case .owned, .readCopyUpdate:
                ready = try backend.wait(timeoutNanoseconds: timeout)
            }
        } catch {
            throw .system(error)
        }
        var table = self.table
        for item in ready {
            let fd = item.fd
            if fd == notifierFD {
                notifier.acknowledge()
                drainHandoff()
                table = self.table
            } else if fd == signalFD {
                deliverSignals()
            } else {
                let what = Event.Flags(rawValue: item.what)
                table.forEach(at: Int(fd)) { event in
                    let matched = event.flags.intersection(what)
                    if !matched.isEmpty { applyActivate(event, matched, calls: 1) }
                }
            }
        }
    }

    /// Runs callbacks of the highest non-empty priority (libevent's
    /// `event_process_active`); returns how many ran, -1 on break.
    private func processActive() -> Int {
        for priority in 0..<priorityCount where !activeQueues[priority].isEmpty {
            let limited = priority >= limitsFromPriority
            let limit = limited ? maxCallbacksPerPass : Int.max
            let endTime = limited && maxDispatchNanoseconds >= 0 ? MonotonicClock.now() + maxDispatchNanoseconds : -1
            let count = processQueue(priority, limit: limit, endTime: endTime)
            if count != 0 { return count }
        }
        return 0
    }

    private func processQueue(_ priority: Int, limit: Int, endTime: Int64) -> Int {
        var count = 0
        while let head = activeQueues[priority].head {
            // An active event is linked, so the base holds a reference to it;
            // pinned, that reference outlives the callback even if the
            // callback deletes the event: no retain/release per dispatch.
            head._withUnsafeGuaranteedRef { event in dispatch(event, priority: priority) }
            count += 1
            if breakRequested.load(ordering: .relaxed) { return -1 }
            if count >= limit { return count }
            if endTime >= 0 {
                let now = MonotonicClock.now()
                cachedNow = now
                if now >= endTime { return count }
            }
            if continueRequested.load(ordering: .relaxed) { break }
        }
        return count
    }

    /// Takes `event` off its active queue, updates its registration as
    /// libevent does before a callback (non-persistent events are deleted,
    /// persistent timeouts rescheduled) and runs the callback or finalizer.
    @inline(__always)
    private func dispatch(_ event: Event, priority: Int) {
        let result = event.result
        let calls = event.flags.contains(.signal) ? event.signalCalls : 1
        event.pinnedByDispatch = true
        removeActive(event)
        // Writer state, not the lifecycle atomic: under rcu another thread may
        // have just claimed the finalize, but only the writer's applyFinalize
        // turns an activation into the finalizer's.
        let finalizing = event.finalizeQueued
        if finalizing {
            // Deleted when finalize was called; nothing can fire it now.
        } else if event.flags.contains(.persist) {
            if event.interval >= 0 { reschedulePersistent(event, result: result) }
        } else {
            if event.hasTimeout { removeTimeout(event) }
            if event.isInserted { removeInserted(event) }
        }
        settle(event)
        runningPriority = priority
        if finalizing {
            runFinalizer(event)
        } else {
            invoke(event, result, calls: event.flags.contains(.signal) ? max(calls, 1) : 1)
        }
        runningPriority = -1
        event.pinnedByDispatch = false
        if event.releaseWhenUnpinned {
            event.releaseWhenUnpinned = false
            releaseBaseReference(event)
        }
    }

    /// Runs the callback `calls` times (signals delivered more than once),
    /// without the base lock (mutex, debug) and, under rcu, only if no delete
    /// has come in since the event was activated.
    @inline(__always)
    private func invoke(_ event: Event, _ result: Event.Flags, calls: Int) {
        let node = Unmanaged.passUnretained(event)
        switch discipline {
        case .owned:
            runningEvent.store(node, ordering: .relaxed)
            for _ in 0..<calls {
                event.callback(event, result)
                if breakRequested.load(ordering: .relaxed) { break }
            }
            runningEvent.store(nil, ordering: .relaxed)
        case .locked:
            runningEvent.store(node, ordering: .relaxed)
            baseLock.unlock()
            for _ in 0..<calls {
                event.callback(event, result)
                if breakRequested.load(ordering: .relaxed) { break }
            }
            baseLock.lock()
            runningEvent.store(nil, ordering: .relaxed)
            if deleteWaiters > 0 { callbackDone.broadcast() }
        case .readCopyUpdate:
            // Pairs with the deleter's generation bump then running-event
            // load: either we see the new generation and skip, or the
            // deleter sees us running and waits for our quiescent state.
            runningEvent.store(node, ordering: .sequentiallyConsistent)
            if Intent.generation(event.intent.load(ordering: .sequentiallyConsistent)) == event.rcuState.activationGeneration {
                for _ in 0..<calls {
                    event.callback(event, result)
                    if breakRequested.load(ordering: .relaxed) { break }
                }
            }
            runningEvent.store(nil, ordering: .releasing)
            // The loop is the epoch's only writer: a plain releasing store.
            callbackEpoch.store(callbackEpoch.load(ordering: .relaxed) &+ 1, ordering: .releasing)
        }
    }

    private func runFinalizer(_ event: Event) {
        let finalizer = event.finalizer
        event.finalizer = nil
        if let finalizer {
            if discipline == .locked {
                baseLock.unlock()
                finalizer(event)
                baseLock.lock()
            } else {
                finalizer(event)
            }
        }
        event.lifecycle.store(Lifecycle.finalized, ordering: .releasing)
    }

    // MARK: loop control

    /// Makes the loop exit after `delay` (now if nil), once the callbacks of
    /// its current pass have run (libevent's `event_base_loopexit`). Asked
    /// while no loop runs, it ends the next one.
    public func loopExit(after delay: Duration? = nil) throws(EventError) {
        if shutDown.load(ordering: .acquiring) { throw .baseShutDown(call: "EventBase.loopExit") }
        if let delay, delay < .zero { throw .invalidTimeout(delay) }
        guard let delay, delay > .zero else {
            if discipline == .owned { checkOwner("EventBase.loopExit") }
            exitRequested.store(true, ordering: .releasing)
            notifyIfRunningElsewhere()
            return
        }
        guard delay <= EventBase.maximumTimeout else { throw .invalidTimeout(delay) }
        let nanoseconds = delay.nanosecondsRoundedUp
        try withWriter("EventBase.loopExit") {
            let timer = self.exitTimer ?? Event(internalOn: self, keepsLoopAlive: true, priority: 0) { event, _ in
                event.base.exitRequested.store(true, ordering: .releasing)
            }
            self.exitTimer = timer
            // The earliest requested exit wins, as with libevent's one event per call.
            if timer.hasTimeout && timer.deadline <= self.currentTime() &+ nanoseconds { return }
            self.scheduleTimeout(timer, after: nanoseconds, queue: nil)
            self.settle(timer)
        }
        notifyIfRunningElsewhere()
    }

    /// Makes the loop return right after the callback running now
    /// (libevent's `event_base_loopbreak`). Asked while no loop runs, it
    /// ends the next one at once (libevent forgets it; that loses a break
    /// that races the loop's start).
    public func loopBreak() throws(EventError) {
        if shutDown.load(ordering: .acquiring) { throw .baseShutDown(call: "EventBase.loopBreak") }
        if discipline == .owned { checkOwner("EventBase.loopBreak") }
        breakRequested.store(true, ordering: .releasing)
        notifyIfRunningElsewhere()
    }

    /// Makes the loop stop running this pass's callbacks and poll again
    /// (libevent's `event_base_loopcontinue`); also from a signal's callback.
    public func loopContinue() throws(EventError) {
        if discipline == .owned { checkOwner("EventBase.loopContinue") }
        continueRequested.store(true, ordering: .releasing)
    }

    /// Whether the last loop ended because of ``loopExit(after:)``
    /// (libevent's `event_base_got_exit`).
    public var gotExit: Bool { lastExitState.load(ordering: .acquiring) == LastExit.exit.rawValue }

    /// Whether the last loop ended because of ``loopBreak()``
    /// (libevent's `event_base_got_break`).
    public var gotBreak: Bool { lastExitState.load(ordering: .acquiring) == LastExit.break.rawValue }

    var lastExit: LastExit {
        get { LastExit(rawValue: lastExitState.load(ordering: .relaxed)) ?? .finished }
        set { lastExitState.store(newValue.rawValue, ordering: .releasing) }
    }

    private func notifyIfRunningElsewhere() {
        let running = loopThread.load(ordering: .sequentiallyConsistent)
        if running != 0 && running != se_thread_id() { notifier.notify() }
    }
}

enum LastExit: UInt8 {
    case finished
    case exit
    case `break`
    case noEvents
}
