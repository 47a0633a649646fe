import CEventShims
import EventBackends
import Glibc

extension EventBase {
    /// Runs `callback` once when `fd` is ready for `flags` or after
    /// `timeout` (libevent's `event_base_once`); the event frees itself.
    public func once(
        fd: Int32 = -1, flags: Event.Flags = [], timeout: Duration? = nil,
        _ callback: @escaping @Sendable (Event.Flags) -> Void
    ) throws(EventError) {
        guard !flags.contains(.signal), !flags.contains(.persist) else {
            throw .invalidFlags(flags, fd: fd, reason: "a one-shot event cannot be a signal or persistent")
        }
        let event = try Event(base: self, fd: fd, flags: flags) { _, what in callback(what) }
        try event.add(timeout: timeout ?? (flags.intersection(.io).isEmpty ? .zero : nil))
    }

    /// Activates every event on `fd` whose flags meet `flags` (libevent's
    /// `event_base_active_by_fd`).
    public func activate(fd: Int32, flags: Event.Flags) throws(EventError) {
        guard fd >= 0 else { throw .badFileDescriptor(fd: fd, call: "EventBase.activate(fd:)") }
        try withWriter("EventBase.activate(fd:)") {
            self.table.forEach(at: Int(fd)) { event in
                let matched = event.flags.intersection(flags).intersection(.io)
                if !matched.isEmpty { self.applyActivate(event, matched, calls: 1) }
            }
        }
        wakeLoopIfNeeded()
    }

    /// Runs the jobs still waiting on the base's executors, deletes every
    /// event, runs pending finalizers and closes the backend (libevent's
    /// `event_base_free`). The loop must not be running. The jobs run first,
    /// on the calling thread acting as the loop thread (``isLoopThread`` is
    /// true there), until none is left; a job enqueued after that stops the
    /// program (``EventBaseExecutor``). After it, every use of the base or
    /// its events fails with `baseShutDown`.
    public func shutdown() throws(EventError) {
        if loopRunning.load(ordering: .acquiring) { throw .loopRunning(call: "EventBase.shutdown") }
        if discipline == .owned { checkOwner("EventBase.shutdown") }
        if !shutDown.load(ordering: .acquiring) { runJobsLeftAndCloseQueue() }
        try withWriter("EventBase.shutdown") { () throws(EventError) in
            guard !self.shutDown.load(ordering: .acquiring) else { return }
            if self.loopRunning.load(ordering: .acquiring) { throw .loopRunning(call: "EventBase.shutdown") }
            self.shutDown.store(true, ordering: .releasing)
            self.drainHandoff()
            var finalizing: [Event] = []
            self.visitAllIncludingInternal { event in
                if event.lifecycle.load(ordering: .relaxed) == Lifecycle.finalizing { finalizing.append(event) }
                self.applyDelete(event)
            }
            for event in finalizing {
                let finalizer = event.finalizer
                event.finalizer = nil
                finalizer?(event)
                event.lifecycle.store(Lifecycle.finalized, ordering: .releasing)
            }
            self.exitTimer = nil
            for queue in self.commonQueues.values { queue.timer = nil }
            self.commonQueues.removeAll()
            self.commonQueueList.removeAll()
            self.releaseResources()
        }
        if discipline == .readCopyUpdate { domain.barrier() }
    }

    func visitAllIncludingInternal(_ body: (Event) -> Void) {
        var events: [Event] = []
        for fd in 0..<table.capacity { table.forEach(at: fd) { events.append($0) } }
        for signal in 0..<signalTable.capacity { signalTable.forEach(at: signal) { events.append($0) } }
        timers.forEach { event in
            events.append(event)
            event.expiresQueue?.forEach { events.append($0) }
        }
        for queue in activeQueues { queue.forEach { events.append($0) } }
        var seen = Set<ObjectIdentifier>()
        for event in events where seen.insert(ObjectIdentifier(event)).inserted { body(event) }
    }

    /// After `fork()`, in the child: gives the base its own backend, wake-up
    /// and signal descriptors and registers every event again, so the child
    /// can run its loop and the parent's is unaffected (libevent's
    /// `event_reinit`). The loop must not be running.
    public func reinitAfterFork() throws(EventError) {
        try withWriter("EventBase.reinitAfterFork") { () throws(EventError) in
            if self.shutDown.load(ordering: .acquiring) { throw .baseShutDown(call: "EventBase.reinitAfterFork") }
            do throws(SystemCallError) {
                try self.backend.reinitialize()
                try self.notifier.reinitialize()
            } catch {
                throw .system(error)
            }
            self.registry.clearInterest()
            try self.watchInternal(fd: self.notifier.readFD)
            self.notifierFD = self.notifier.readFD
            if let old = self.signalPipe {
                close(old.read)
                close(old.write)
                var fds: [Int32] = [-1, -1]
                if se_pipe_nonblocking(&fds) < 0 { throw .system(.last("pipe2")) }
                self.signalPipe = (fds[0], fds[1])
                self.signalFD = fds[0]
                try self.watchInternal(fd: fds[0])
                SignalRouter.shared.redirect(for: self, writeFD: fds[1])
            }
            for fd in self.registry.watchedDescriptors() {
                let counts = self.registry.counts(fd)
                let wanted = counts.pointee.wanted
                do throws(SystemCallError) {
                    try self.backend.update(fd: fd, from: [], to: wanted, edgeTriggered: counts.pointee.edgeTriggered > 0)
                } catch {
                    throw self.describe(error, fd: fd)
                }
                counts.pointee.interest = wanted
            }
        }
    }
}
