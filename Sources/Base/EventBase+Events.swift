import CEventShims
import EventBackends
import Glibc
import Synchronization

/// A timeout as passed to ``EventBase/add(_:timeout:)``.
enum TimeoutRequest {
    case none
    case relative(Duration)
    case common(CommonTimeout)
}

/// A checked timeout: nanoseconds, or a common queue.
enum ResolvedTimeout {
    case none
    case relative(Int64)
    case common(CommonTimeoutQueue)
}

extension EventBase {
    // MARK: entry points (any thread of a shared base; the owner of an owned one)

    func add(_ event: Event, timeout: TimeoutRequest) throws(EventError) {
        try checkUsable(event, "Event.add")
        let resolved = try resolve(timeout)
        try checkFeatures(event)
        switch discipline {
        case .owned:
            checkOwner("Event.add")
            try applyAdd(event, resolved)
        case .locked:
            baseLock.lock()
            defer { baseLock.unlock() }
            try applyAdd(event, resolved)
            wakeLoopIfNeeded()
        case .readCopyUpdate:
            let applied = try withWriterRole { () throws(EventError) in
                var superseded = Intent.requestMask
                if case .none = resolved {} else { superseded |= Intent.removeTimer }
                _ = event.intent.bitwiseAnd(~superseded, ordering: .acquiringAndReleasing)
                try applyAdd(event, resolved)
            }
            if !applied { try requestAdd(event, resolved) }
        }
    }

    func removeTimer(_ event: Event) throws(EventError) {
        try checkUsable(event, "Event.removeTimer")
        switch discipline {
        case .owned:
            checkOwner("Event.removeTimer")
            applyRemoveTimer(event)
        case .locked:
            baseLock.lock()
            defer { baseLock.unlock() }
            applyRemoveTimer(event)
            wakeLoopIfNeeded()
        case .readCopyUpdate:
            let applied = withWriterRole {
                _ = event.intent.bitwiseAnd(~Intent.removeTimer, ordering: .acquiringAndReleasing)
                applyRemoveTimer(event)
            }
            if !applied {
                let old = event.intent.bitwiseOr(Intent.removeTimer | Intent.dirty, ordering: .sequentiallyConsistent).oldValue
                if old & Intent.dirty == 0 { pushRequest(event) }
            }
        }
    }

    func applyRemoveTimer(_ event: Event) {
        if event.hasTimeout { removeTimeout(event) }
        event.interval = -1
        event.intervalQueue = nil
        settle(event)
    }

    func delete(_ event: Event) throws(EventError) {
        try checkUsable(event, "Event.delete", allowShutDown: true)
        switch discipline {
        case .owned:
            checkOwner("Event.delete")
            applyDelete(event)
        case .locked:
            baseLock.lock()
            defer { baseLock.unlock() }
            applyDelete(event)
            // Deleting the last event or the earliest timer changes what the
            // loop waits for: wake it (libevent #623, #1727).
            wakeLoopIfNeeded()
            if !event.flags.contains(.finalize) { waitUntilNotRunning(event) }
        case .readCopyUpdate:
            let applied = withWriterRole {
                bumpGeneration(event, request: 0)
                applyDelete(event)
            }
            if !applied {
                request(event, Intent.delete, bumpingGeneration: true)
                if !event.flags.contains(.finalize) { waitUntilNotRunning(event) }
            }
        }
    }

    func activate(_ event: Event, _ what: Event.Flags) throws(EventError) {
        try checkUsable(event, "Event.activate")
        switch discipline {
        case .owned:
            checkOwner("Event.activate")
            applyActivate(event, what, calls: 1)
        case .locked:
            let running = loopThread.load(ordering: .acquiring)
            if running != 0 && running != se_thread_id() {
                // A loop runs on another thread: hand the activation over
                // without the base lock (the loop applies it under the lock
                // on its next pass), as under rcu.
                let old = event.intent.bitwiseOr(
                    UInt64(what.rawValue) & Intent.activationMask | Intent.dirty, ordering: .sequentiallyConsistent
                ).oldValue
                if old & Intent.activationMask != 0 {
                    coalescedActivations.add(1, ordering: .relaxed)
                }
                if old & Intent.dirty == 0 {
                    if handoff.push(event) && loopRunning.load(ordering: .sequentiallyConsistent) {
                        notifier.notify()
                    }
                    // The loop stopped meanwhile: apply it ourselves.
                    if !loopRunning.load(ordering: .sequentiallyConsistent) {
                        baseLock.withLock { drainHandoff() }
                    }
                }
            } else {
                baseLock.lock()
                defer { baseLock.unlock() }
                applyActivate(event, what, calls: 1)
                wakeLoopIfNeeded()
            }
        case .readCopyUpdate:
            if isWriter {
                applyActivate(event, what, calls: 1)
            } else {
                let old = event.intent.bitwiseOr(
                    UInt64(what.rawValue) & Intent.activationMask | Intent.dirty, ordering: .sequentiallyConsistent
                ).oldValue
                if old & Intent.activationMask != 0 {
                    coalescedActivations.add(1, ordering: .relaxed)
                }
                if old & Intent.dirty == 0 { pushRequest(event) }
            }
        }
    }

    func finalize(_ event: Event, _ finalizer: @escaping @Sendable (Event) -> Void) throws(EventError) {
        try checkUsable(event, "Event.finalize")
        switch discipline {
        case .owned:
            checkOwner("Event.finalize")
        case .locked:
            baseLock.lock()
        case .readCopyUpdate:
            break
        }
        // Exactly one finalize wins the exchange; only the winner stores the
        // finalizer, before handing the event to the writer.
        let claimed = event.lifecycle.compareExchange(
            expected: Lifecycle.normal, desired: Lifecycle.finalizing, ordering: .acquiringAndReleasing
        ).exchanged
        switch discipline {
        case .owned:
            guard claimed else { throw .eventFinalized(call: "Event.finalize") }
            event.finalizer = finalizer
            applyFinalize(event)
        case .locked:
            defer { baseLock.unlock() }
            guard claimed else { throw .eventFinalized(call: "Event.finalize") }
            event.finalizer = finalizer
            applyFinalize(event)
            wakeLoopIfNeeded()
        case .readCopyUpdate:
            guard claimed else { throw .eventFinalized(call: "Event.finalize") }
            event.finalizer = finalizer
            if isWriter {
                bumpGeneration(event, request: 0)
                applyFinalize(event)
            } else {
                request(event, Intent.finalize, bumpingGeneration: true)
            }
        }
    }

    /// What the event is pending or active for; lock-free under rcu.
    func pending(_ event: Event) -> Event.Flags {
        switch discipline {
        case .owned:
            checkOwner("Event.pending")
            return writerFlags(event)
        case .locked:
            baseLock.lock()
            defer { baseLock.unlock() }
            // With an activation handed over to the loop but not yet applied.
            let handedOver = event.intent.load(ordering: .acquiring) & Intent.activationMask
            return writerFlags(event).union(Event.Flags(rawValue: UInt32(handedOver)))
        case .readCopyUpdate:
            let intent = event.intent.load(ordering: .acquiring)
            var flags = publishedFlags(event)
            switch intent & Intent.requestMask {
            case Intent.add:
                flags.formUnion(event.flags.intersection([.read, .write, .closed, .signal]))
                if event.rcuState.requestedTimeout.load(ordering: .relaxed) >= 0
                    || event.rcuState.requestedCommonQueue.load(ordering: .relaxed) != nil
                {
                    flags.insert(.timeout)
                }
            case Intent.delete, Intent.finalize:
                flags = []
            default:
                break
            }
            if intent & Intent.removeTimer != 0 { flags.remove(.timeout) }
            flags.formUnion(Event.Flags(rawValue: UInt32(intent & Intent.activationMask)))
            return flags
        }
    }

    func timeoutRemaining(of event: Event) -> Duration? {
        let deadline: Int64?
        switch discipline {
        case .owned:
            checkOwner("Event.timeoutRemaining")
            deadline = event.hasTimeout ? event.deadline : nil
        case .locked:
            deadline = baseLock.withLock { event.hasTimeout ? event.deadline : nil }
        case .readCopyUpdate:
            deadline = pending(event).contains(.timeout) ? event.rcuState.publishedDeadline.load(ordering: .acquiring) : nil
        }
        return deadline.map { .nanoseconds(max(0, $0 - MonotonicClock.now())) }
    }

    func readPriority(of event: Event) -> Int {
        switch discipline {
        case .owned:
            checkOwner("Event.priority")
            return event.priorityValue
        case .locked:
            return baseLock.withLock { event.priorityValue }
        case .readCopyUpdate:
            return (try? withWriter("Event.priority") { event.priorityValue }) ?? event.priorityValue
        }
    }

    func setPriority(_ priority: Int, of event: Event) throws(EventError) {
        try checkUsable(event, "Event.setPriority")
        guard (0..<priorityCount).contains(priority) else {
            throw .invalidPriority(priority, count: priorityCount)
        }
        try withWriter("Event.setPriority") { () throws(EventError) in
            guard !event.isActive else { throw .eventActive(call: "Event.setPriority") }
            event.priorityValue = priority
        }
    }

    // MARK: checks

    func checkUsable(_ event: Event, _ call: StaticString, allowShutDown: Bool = false) throws(EventError) {
        guard event.base === self else { throw .wrongBase(call: "\(call)") }
        if !allowShutDown && shutDown.load(ordering: .acquiring) { throw .baseShutDown(call: "\(call)") }
        if event.lifecycle.load(ordering: .acquiring) != Lifecycle.normal { throw .eventFinalized(call: "\(call)") }
    }

    func resolve(_ timeout: TimeoutRequest) throws(EventError) -> ResolvedTimeout {
        switch timeout {
        case .none:
            return .none
        case .relative(let duration):
            guard duration.isValidTimeout else { throw .invalidTimeout(duration) }
            return .relative(duration.nanosecondsRoundedUp)
        case .common(let common):
            guard common.queue.base === self else { throw .wrongBase(call: "Event.add(timeout: CommonTimeout)") }
            return .common(common.queue)
        }
    }

    /// Refuses flags the backend cannot honour (libevent would accept them
    /// and never report them).
    func checkFeatures(_ event: Event) throws(EventError) {
        if event.flags.contains(.closed) && !backend.features.contains(.earlyClose) {
            throw .unsupportedByBackend(feature: .earlyClose, backend: backendKind, fd: event.fd)
        }
        if event.flags.contains(.edgeTriggered) && !backend.features.contains(.edgeTriggered) {
            throw .unsupportedByBackend(feature: .edgeTriggered, backend: backendKind, fd: event.fd)
        }
    }

    /// What the writer's own state says the event is pending or active for.
    func writerFlags(_ event: Event) -> Event.Flags {
        var flags: Event.Flags = event.isInserted ? event.flags.intersection([.read, .write, .closed, .signal]) : []
        if event.isActive { flags.formUnion(event.result) }
        if event.hasTimeout { flags.insert(.timeout) }
        return flags
    }

    func publishedFlags(_ event: Event) -> Event.Flags {
        let word = event.published.load(ordering: .acquiring)
        var flags = Event.Flags(rawValue: word & Published.flagMask)
        flags.formUnion(Event.Flags(rawValue: (word >> Published.activeShift) & Published.flagMask))
        if word & Published.timeoutScheduled != 0 { flags.insert(.timeout) }
        return flags
    }

    // MARK: rcu requests from threads other than the writer

    /// Records an add request and hands the event to the writer. Descriptor
    /// problems the backend would report later are checked here, so the
    /// caller still gets its error.
    private func requestAdd(_ event: Event, _ timeout: ResolvedTimeout) throws(EventError) {
        if !event.flags.intersection(.io).isEmpty { try precheckDescriptor(event.fd) }
        switch timeout {
        case .none:
            event.rcuState.requestedTimeout.store(-1, ordering: .relaxed)
            event.rcuState.requestedCommonQueue.store(nil, ordering: .relaxed)
        case .relative(let nanoseconds):
            event.rcuState.requestedTimeout.store(nanoseconds, ordering: .relaxed)
            event.rcuState.requestedCommonQueue.store(nil, ordering: .relaxed)
            _ = event.intent.bitwiseAnd(~Intent.removeTimer, ordering: .relaxed)
        case .common(let queue):
            event.rcuState.requestedTimeout.store(-1, ordering: .relaxed)
            event.rcuState.requestedCommonQueue.store(Unmanaged.passUnretained(queue), ordering: .relaxed)
            _ = event.intent.bitwiseAnd(~Intent.removeTimer, ordering: .relaxed)
        }
        request(event, Intent.add, bumpingGeneration: false)
    }

    /// Descriptor checks for a request the writer applies later: open, and
    /// watchable by this backend (epoll refuses regular files and directories).
    private func precheckDescriptor(_ fd: Int32) throws(EventError) {
        var info = stat()
        if fstat(fd, &info) < 0 { throw .badFileDescriptor(fd: fd, call: "Event.add") }
        let type = info.st_mode & S_IFMT
        if backendKind == .epoll && (type == S_IFREG || type == S_IFDIR) {
            throw .unsupportedFileDescriptor(
                fd: fd, backend: backendKind, reason: "epoll cannot watch regular files or directories")
        }
    }

    /// Sets the request field (last request wins), marks the event dirty and
    /// pushes it if it was not already waiting.
    private func request(_ event: Event, _ kind: UInt64, bumpingGeneration: Bool) {
        var old = event.intent.load(ordering: .relaxed)
        while true {
            var new = (old & ~Intent.requestMask) | kind | Intent.dirty
            if bumpingGeneration {
                new &= ~Intent.activationMask
                new = new &+ (1 << Intent.generationShift)
            }
            let (exchanged, original) = event.intent.compareExchange(
                expected: old, desired: new, ordering: .sequentiallyConsistent)
            if exchanged { break }
            old = original
        }
        if old & Intent.dirty == 0 { pushRequest(event) }
    }

    /// The writer's own delete or finalize: a new generation (so nothing
    /// activated before runs), dropping requests and activations pending from
    /// other threads, which this call supersedes.
    private func bumpGeneration(_ event: Event, request: UInt64) {
        var old = event.intent.load(ordering: .relaxed)
        while true {
            let kept = old & Intent.dirty
            let new = ((old >> Intent.generationShift) &+ 1) << Intent.generationShift | kept | request
            let (exchanged, original) = event.intent.compareExchange(
                expected: old, desired: new, ordering: .sequentiallyConsistent)
            if exchanged {
                event.rcuState.appliedGeneration = Intent.generation(new)
                return
            }
            old = original
        }
    }

    /// Hands `event` to the writer: wakes a running loop on the push that
    /// made the stack non-empty, or applies it here when no loop runs. The
    /// push and the loop's start are both sequentially consistent: either we
    /// see the loop running, or its first drain sees our push.
    private func pushRequest(_ event: Event) {
        if handoff.push(event) && loopRunning.load(ordering: .sequentiallyConsistent) { notifier.notify() }
        drainIfNoLoop()
    }

    /// The writer applies what other threads requested of `event`. It
    /// applies first and clears the request after, so a lock-free reader of
    /// ``pending(_:)`` always sees either the request or its effect; a request
    /// arriving meanwhile makes the clearing exchange fail and is applied next.
    func applyIntent(_ event: Event) {
        var old = event.intent.load(ordering: .acquiring)
        while true {
            // Activations from here on belong to the current generation.
            if discipline == .readCopyUpdate { event.rcuState.appliedGeneration = Intent.generation(old) }
            switch old & Intent.requestMask {
            case Intent.delete:
                applyDelete(event)
            case Intent.finalize:
                if event.finalizer != nil && !event.finalizeQueued { applyFinalize(event) }
            case Intent.add:
                applyRequestedAdd(event)
            default:
                break
            }
            if old & Intent.removeTimer != 0 { applyRemoveTimer(event) }
            let cleared = old & ~(Intent.dirty | Intent.requestMask | Intent.activationMask | Intent.removeTimer)
            let (exchanged, current) = event.intent.compareExchange(
                expected: old, desired: cleared, ordering: .acquiringAndReleasing)
            if exchanged { break }
            old = current
        }
        let activation = Event.Flags(rawValue: UInt32(old & Intent.activationMask))
        if !activation.isEmpty { applyActivate(event, activation, calls: 1) }
    }

    private func applyRequestedAdd(_ event: Event) {
        let timeout: ResolvedTimeout
        if let queue = event.rcuState.requestedCommonQueue.load(ordering: .relaxed) {
            timeout = .common(queue.takeUnretainedValue())
        } else {
            let nanoseconds = event.rcuState.requestedTimeout.load(ordering: .relaxed)
            timeout = nanoseconds >= 0 ? .relative(nanoseconds) : .none
        }
        do {
            try applyAdd(event, timeout)
        } catch {
            logFailure("SwiftEvent: add requested from another thread failed: \(error)", warning: false)
        }
    }

    // MARK: writer side (libevent's *_nolock_ functions)

    func applyAdd(_ event: Event, _ timeout: ResolvedTimeout) throws(EventError) {
        if !event.isInserted {
            if event.flags.contains(.signal) {
                try insertSignal(event)
            } else if !event.flags.intersection(.io).isEmpty {
                try insertIO(event)
            }
        }
        switch timeout {
        case .none:
            break
        case .relative(let nanoseconds):
            scheduleTimeout(event, after: nanoseconds, queue: nil)
            event.interval = event.flags.contains(.persist) ? nanoseconds : -1
            event.intervalQueue = nil
        case .common(let queue):
            scheduleTimeout(event, after: queue.duration, queue: queue)
            event.interval = event.flags.contains(.persist) ? queue.duration : -1
            event.intervalQueue = event.flags.contains(.persist) ? queue : nil
        }
        settle(event)
    }

    func applyDelete(_ event: Event) {
        // mutex: an activation handed over before this delete is cancelled
        // (one handed over after it stands). Under rcu the delete generation
        // does this.
        if discipline == .locked && event.intent.load(ordering: .relaxed) & Intent.activationMask != 0 {
            event.intent.bitwiseAnd(~Intent.activationMask, ordering: .acquiringAndReleasing)
        }
        if event.isActive { removeActive(event) }
        if event.hasTimeout { removeTimeout(event) }
        if event.isInserted { removeInserted(event) }
        event.interval = -1
        event.intervalQueue = nil
        settle(event)
    }

    /// libevent's `event_active_nolock_`: queues the callback, or merges
    /// `what` into a pending activation.
    func applyActivate(_ event: Event, _ what: Event.Flags, calls: Int) {
        if event.lifecycle.load(ordering: .relaxed) != Lifecycle.normal { return }
        if event.isActive {
            event.result.formUnion(what)
            if event.flags.contains(.signal) { event.signalCalls += calls }
            coalescedActivations.add(1, ordering: .relaxed)
            publish(event)
            return
        }
        event.result = what
        if event.flags.contains(.signal) { event.signalCalls = calls }
        event.isActive = true
        if discipline == .readCopyUpdate { event.rcuState.activationGeneration = event.rcuState.appliedGeneration }
        activeQueues[event.priorityValue].append(event)
        activeCount += 1
        // A higher-priority event became active: let it run before the rest
        // of a lower-priority pass (libevent's event_running_priority).
        if runningPriority >= 0 && event.priorityValue < runningPriority {
            continueRequested.store(true, ordering: .relaxed)
        }
        settle(event)
    }

    /// Deletes without waiting, then queues the finalizer to run on the loop
    /// once the event can no longer fire (libevent's `event_finalize`).
    func applyFinalize(_ event: Event) {
        event.finalizeQueued = true
        if event.isActive { removeActive(event) }
        if event.hasTimeout { removeTimeout(event) }
        if event.isInserted { removeInserted(event) }
        event.result = []
        event.isActive = true
        if discipline == .readCopyUpdate { event.rcuState.activationGeneration = event.rcuState.appliedGeneration }
        activeQueues[event.priorityValue].append(event)
        activeCount += 1
        settle(event)
    }

    func removeActive(_ event: Event) {
        activeQueues[event.priorityValue].remove(event)
        activeCount -= 1
        event.isActive = false
        event.result = []
        if event.flags.contains(.signal) { event.signalCalls = 0 }
    }

    func removeInserted(_ event: Event) {
        if event.flags.contains(.signal) {
            removeSignal(event)
        } else {
            removeIO(event)
        }
    }

    /// Keeps the base's reference, the user-event count and the published
    /// state in step with the event's writer state.
    @inline(__always)
    func settle(_ event: Event) {
        let linked = event.isInserted || event.hasTimeout || event.isActive
        let counted = event.keepsLoopAlive && (event.isInserted || event.hasTimeout)
        if linked != event.retainedByBase || counted != event.countedAsUserEvent {
            settleReferences(event, linked: linked, counted: counted)
        }
        publish(event)
    }

    @inline(never)
    private func settleReferences(_ event: Event, linked: Bool, counted: Bool) {
        if linked != event.retainedByBase {
            event.retainedByBase = linked
            if linked {
                if let adoptable = adoptableReference, adoptable.toOpaque() == Unmanaged.passUnretained(event).toOpaque() {
                    // The hand-off's +1 becomes the base's.
                    adoptableReference = nil
                } else {
                    _ = Unmanaged.passRetained(event)
                }
            } else if event.pinnedByDispatch {
                event.releaseWhenUnpinned = true
            } else {
                releaseBaseReference(event)
            }
        }
        if counted != event.countedAsUserEvent {
            event.countedAsUserEvent = counted
            userEventCount += counted ? 1 : -1
        }
    }

    /// Drops the base's +1 on an event that is no longer linked anywhere.
    /// Under rcu, if the event was in a descriptor or signal list since it
    /// was last retired, lock-free readers may still be walking through it:
    /// the reference moves to a batch that is retired (released after a grace
    /// period) when the writer lets go or finishes a loop iteration. An event
    /// that was only active or timed (an activation from another thread, a
    /// timer) was never reachable by readers and is released at once.
    func releaseBaseReference(_ event: Event) {
        if event.readersMayHold {
            event.readersMayHold = false
            retiredBatch.append(event)
        }
        Unmanaged.passUnretained(event).release()
    }

    /// Publishes the event's state for lock-free readers (rcu only; the
    /// other modes read the writer state under their lock or as the owner).
    @inline(__always)
    func publish(_ event: Event) {
        guard discipline == .readCopyUpdate else { return }
        var word: UInt32 = 0
        if event.isInserted { word |= event.flags.intersection([.read, .write, .closed, .signal]).rawValue }
        if event.isActive { word |= (event.result.rawValue & Published.flagMask) << Published.activeShift }
        if event.hasTimeout {
            word |= Published.timeoutScheduled
            event.rcuState.publishedDeadline.store(event.deadline, ordering: .relaxed)
        }
        event.published.store(word, ordering: .releasing)
    }

    // MARK: I/O registrations

    func insertIO(_ event: Event) throws(EventError) {
        let counts = registry.counts(event.fd)
        let edge = event.flags.contains(.edgeTriggered)
        if counts.pointee.hasEvents && (counts.pointee.edgeTriggered > 0) != edge {
            throw .mixedEdgeTriggering(fd: event.fd)
        }
        let io = event.flags
        let full = UInt16.max
        if (io.contains(.read) && counts.pointee.readers == full)
            || (io.contains(.write) && counts.pointee.writers == full)
            || (io.contains(.closed) && counts.pointee.closers == full)
        {
            throw .tooManyEvents(fd: event.fd)
        }
        let wanted = counts.pointee.wanted.union(io.ioEvents)
        if wanted != counts.pointee.interest {
            do {
                try backend.update(fd: event.fd, from: counts.pointee.interest, to: wanted, edgeTriggered: edge)
            } catch {
                throw describe(error, fd: event.fd)
            }
            counts.pointee.interest = wanted
        }
        if io.contains(.read) { counts.pointee.readers += 1 }
        if io.contains(.write) { counts.pointee.writers += 1 }
        if io.contains(.closed) { counts.pointee.closers += 1 }
        if edge { counts.pointee.edgeTriggered &+= 1 }
        ensureTableCovers(event.fd)
        table.link(event, at: Int(event.fd))
        event.isInserted = true
    }

    func removeIO(_ event: Event) {
        let counts = registry.counts(event.fd)
        let io = event.flags
        table.unlink(event, at: Int(event.fd))
        event.readersMayHold = discipline == .readCopyUpdate
        if io.contains(.read) { counts.pointee.readers -= 1 }
        if io.contains(.write) { counts.pointee.writers -= 1 }
        if io.contains(.closed) { counts.pointee.closers -= 1 }
        if io.contains(.edgeTriggered) { counts.pointee.edgeTriggered -= 1 }
        event.isInserted = false
        let wanted = counts.pointee.wanted
        if wanted != counts.pointee.interest {
            do {
                try backend.update(
                    fd: event.fd, from: counts.pointee.interest, to: wanted,
                    edgeTriggered: counts.pointee.edgeTriggered > 0)
            } catch {
                logFailure("SwiftEvent: \(error)", warning: true)
            }
            counts.pointee.interest = wanted
        }
    }

    /// Turns a backend failure into the error a caller can act on.
    func describe(_ error: SystemCallError, fd: Int32) -> EventError {
        switch error.errno {
        case EBADF:
            return .badFileDescriptor(fd: fd, call: error.call)
        case EPERM where backendKind == .epoll:
            return .unsupportedFileDescriptor(
                fd: fd, backend: backendKind, reason: "epoll cannot watch regular files or directories")
        case EOPNOTSUPP:
            return .unsupportedByBackend(feature: .earlyClose, backend: backendKind, fd: fd)
        default:
            return .system(error)
        }
    }

    /// Logs off the hot paths (reading the logger's level has a runtime
    /// exclusivity check, which the compiler otherwise hoists into loops).
    @inline(never)
    func logFailure(_ message: @autoclosure () -> String, warning: Bool) {
        if warning {
            logger.warning("\(message())")
        } else {
            logger.error("\(message())")
        }
    }
}
