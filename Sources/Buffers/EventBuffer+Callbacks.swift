import EventCore

extension EventBuffer {
    /// What a change did to a buffer (libevent's `evbuffer_cb_info`).
    public struct Change: Sendable, Hashable {
        /// The length before the change (the first one, for merged changes).
        public var originalLength = 0
        public var added = 0
        public var removed = 0

        public var isEmpty: Bool { added == 0 && removed == 0 }
    }

    /// Identifies a callback for ``removeCallback(_:)``.
    public struct CallbackID: Sendable, Hashable {
        let value: Int
    }

    public typealias Callback = @Sendable (_ buffer: EventBuffer, _ change: Change) -> Void

    struct CallbackEntry {
        let id: Int
        var enabled: Bool
        let body: Callback
    }

    /// Calls `body` after every change that adds or removes bytes
    /// (libevent's `evbuffer_add_cb`). It runs on the thread that made the
    /// change, with the buffer's lock held, unless callbacks are deferred to
    /// a base (``deferCallbacks(to:)``).
    @discardableResult
    public func addCallback(_ body: @escaping Callback) -> CallbackID {
        withLock {
            nextCallbackID += 1
            callbacks.append(CallbackEntry(id: nextCallbackID, enabled: true, body: body))
            return CallbackID(value: nextCallbackID)
        }
    }

    /// Removes a callback; false if it was not there (libevent's `evbuffer_remove_cb_entry`).
    @discardableResult
    public func removeCallback(_ id: CallbackID) -> Bool {
        withLock {
            guard let index = callbacks.firstIndex(where: { $0.id == id.value }) else { return false }
            callbacks.remove(at: index)
            return true
        }
    }

    /// Turns one callback off or on (libevent's `evbuffer_cb_set_flags`).
    public func setCallback(_ id: CallbackID, enabled: Bool) {
        withLock {
            if let index = callbacks.firstIndex(where: { $0.id == id.value }) { callbacks[index].enabled = enabled }
        }
    }

    /// Holds callbacks back: changes made meanwhile are merged and reported
    /// once, by ``resumeCallbacks()``. Calls nest.
    public func suspendCallbacks() {
        withLock { callbacksSuspended += 1 }
    }

    public func resumeCallbacks() {
        withLock {
            guard callbacksSuspended > 0 else { return }
            callbacksSuspended -= 1
            if callbacksSuspended == 0 { deliverPendingChange() }
        }
    }

    /// Whether any callback is registered (a buffer that will be reused must have none).
    package var hasCallbacks: Bool { withLock { !callbacks.isEmpty } }

    /// Runs callbacks on `base`'s loop, merged, instead of inside the call
    /// that made the change (libevent's `evbuffer_defer_callbacks`).
    public func deferCallbacks(to base: EventBase) throws(EventError) {
        let event = try Event(base: base, fd: -1, flags: [.finalize]) { [weak self] _, _ in
            self?.withLock { self?.deliverPendingChange() }
        }
        withLock { deferral = event }
    }

    /// Records a change: tells the observer (a bufferevent) at once, and
    /// the callbacks now, later, or merged.
    @inline(__always)
    func changed(added: Int = 0, removed: Int = 0) {
        guard added != 0 || removed != 0 else { return }
        reservation = nil
        let change = Change(originalLength: total - added + removed, added: added, removed: removed)
        observer?(change)
        guard !callbacks.isEmpty else { return }
        if pendingChange.isEmpty { pendingChange.originalLength = change.originalLength }
        pendingChange.added += added
        pendingChange.removed += removed
        if callbacksSuspended > 0 { return }
        if let deferral {
            try? deferral.activate()
        } else {
            deliverPendingChange()
        }
    }

    /// Runs the callbacks with the merged change; the lock is held.
    func deliverPendingChange() {
        let change = pendingChange
        pendingChange = Change()
        guard !change.isEmpty else { return }
        for entry in callbacks where entry.enabled { entry.body(self, change) }
    }
}
