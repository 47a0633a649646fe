import EventLocking

extension EventBase {
    /// Calls `body` for every inserted, timed or active event, once each
    /// (libevent's `event_base_foreach_event`), internal events excluded.
    /// Under rcu, from a thread other than the loop's, the walk runs on the loop.
    public func forEachEvent(_ body: @escaping @Sendable (Event) -> Void) throws(EventError) {
        try withWriter("EventBase.forEachEvent") { self.visitEvents(body) }
    }

    /// All inserted, timed or active events (internal ones excluded).
    public func allEvents() throws(EventError) -> [Event] {
        try withWriter("EventBase.allEvents") {
            var events: [Event] = []
            self.visitEvents { events.append($0) }
            return events
        }
    }

    func visitEvents(_ body: (Event) -> Void) {
        var seen = Set<ObjectIdentifier>()
        func visit(_ event: Event) {
            if event.isInternal { return }
            if seen.insert(ObjectIdentifier(event)).inserted { body(event) }
        }
        for fd in 0..<table.capacity { table.forEach(at: fd, visit) }
        for signal in 0..<signalTable.capacity { signalTable.forEach(at: signal, visit) }
        timers.forEach { event in
            if let queue = event.expiresQueue { queue.forEach(visit) } else { visit(event) }
        }
        for queue in activeQueues { queue.forEach(visit) }
    }

    /// A human-readable list of inserted and active events (libevent's
    /// `event_base_dump_events`).
    public func dumpEvents() throws(EventError) -> String {
        try withWriter("EventBase.dumpEvents") {
            var text = "Inserted events:\n"
            let now = self.currentTime()
            self.visitEvents { event in
                guard event.isInserted || event.hasTimeout else { return }
                text += "  \(self.describe(event))"
                if event.hasTimeout {
                    let remaining = Double(event.deadline - now) / 1e9
                    text += " Timeout=\(remaining)s"
                }
                text += "\n"
            }
            text += "Active events:\n"
            for queue in self.activeQueues {
                queue.forEach { event in
                    guard !event.isInternal else { return }
                    text += "  \(self.describe(event)) Active=[\(event.result)]\n"
                }
            }
            return text
        }
    }

    private func describe(_ event: Event) -> String {
        let kind = event.flags.contains(.signal) ? "sig \(event.fd)" : "fd \(event.fd)"
        let address = UInt(bitPattern: ObjectIdentifier(event).hashValue)
        return "0x\(String(address, radix: 16)) [\(kind)] [\(event.flags)] priority=\(event.priorityValue)"
    }

    /// The events watching `fd` now. Under rcu this walks the published
    /// registrations inside a read-side section, taking no lock; with the
    /// mutex provider it takes the base lock.
    public func events(forFD fd: Int32) -> [Event] {
        var result: [Event] = []
        forEachEvent(onFD: fd) { result.append($0) }
        return result
    }

    /// Calls `body` for each event watching `fd`, without copying the list
    /// (lock-free under rcu: inside a read-side section; under the base lock
    /// with mutex). `body` must not add or delete events.
    public func forEachEvent(onFD fd: Int32, _ body: (Event) -> Void) {
        guard fd >= 0 else { return }
        func visit() {
            publishedTable.load(ordering: .acquiring)._withUnsafeGuaranteedRef { table in
                table.forEach(at: Int(fd), body)
            }
        }
        switch discipline {
        case .owned:
            checkOwner("EventBase.forEachEvent(onFD:)")
            visit()
        case .locked:
            baseLock.withLock(visit)
        case .readCopyUpdate:
            domain.withReadSection(visit)
        }
    }

    /// Whether any event watches `fd` (lock-free under rcu).
    public func isWatched(fd: Int32) -> Bool {
        guard fd >= 0 else { return false }
        let check: () -> Bool = { [self] in
            publishedTable.load(ordering: .acquiring)._withUnsafeGuaranteedRef { table in
                table.head(at: Int(fd)) != nil
            }
        }
        switch discipline {
        case .owned:
            checkOwner("EventBase.isWatched(fd:)")
            return check()
        case .locked:
            return baseLock.withLock(check)
        case .readCopyUpdate:
            return domain.withReadSection(check)
        }
    }

    /// Number of events inserted or timed (internal ones excluded).
    public var eventCount: Int {
        (try? withWriter("EventBase.eventCount") { self.userEventCount }) ?? 0
    }

    /// Number of events waiting for their callbacks.
    public var activeEventCount: Int {
        (try? withWriter("EventBase.activeEventCount") { self.activeCount }) ?? 0
    }
}
