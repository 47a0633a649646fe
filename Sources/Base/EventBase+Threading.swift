import CEventShims
import EventLocking
import Glibc
import Synchronization

extension EventBase {
    // MARK: owned bases

    /// Stops the program when an owned base is used from a thread other than
    /// its owner (a programming error, caught rather than left undefined).
    /// An owned base whose owner released it is adopted by the next caller.
    @inline(__always)
    func checkOwner(_ call: StaticString) {
        let me = se_thread_id()
        let current = owner.load(ordering: .relaxed)
        if current == me { return }
        ownerMismatch(call, me: me, current: current)
    }

    @inline(never)
    private func ownerMismatch(_ call: StaticString, me: UInt64, current: UInt64) {
        if current == 0 && owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
            return
        }
        let owning = owner.load(ordering: .relaxed)
        fatalError(
            "SwiftEvent: \(call) called from \(ThreadIdentity.currentDescription) on an owned event base "
                + "owned by thread \(owning). Owned bases are used from their owner thread only; "
                + "use post(_:) to run work on it, releaseOwnership() to hand it over, or a shared base.")
    }

    /// Gives up ownership of an owned base; the next thread to use it becomes
    /// its owner. Call it before handing the base to the thread that will run it.
    public func releaseOwnership() {
        guard discipline == .owned else { return }
        checkOwner("EventBase.releaseOwnership()")
        owner.store(0, ordering: .releasing)
    }

    /// The owner thread of an owned base (nil for shared bases or when released).
    public var ownerThread: ThreadIdentity? {
        guard discipline == .owned else { return nil }
        let id = owner.load(ordering: .acquiring)
        return id == 0 ? nil : ThreadIdentity(rawValue: id)
    }

    // MARK: shared bases

    /// Whether the caller is the thread running the loop.
    @inline(__always)
    var onLoopThread: Bool { loopThread.load(ordering: .relaxed) == se_thread_id() }

    /// Whether the caller holds the rcu writer role.
    @inline(__always)
    var isWriter: Bool { writerThread.load(ordering: .relaxed) == se_thread_id() }

    /// Wakes the loop if another thread runs it (libevent's `EVBASE_NEED_NOTIFY`).
    @inline(__always)
    func wakeLoopIfNeeded() {
        let running = loopThread.load(ordering: .sequentiallyConsistent)
        if running != 0 && running != se_thread_id() { notifier.notify() }
    }

    /// Runs `body` with writer access to the base's state, whatever the mode:
    /// as the owner (owned), under the base lock (mutex, debug), or with the
    /// writer role (rcu), borrowing it from the loop by posting `body` to it
    /// and waiting when the loop runs on another thread. For the rare
    /// operations (introspection, loop exit timers, priorities); the hot ones
    /// have their own lock-free paths under rcu.
    func withWriter<T: Sendable>(
        _ call: StaticString, _ body: @escaping @Sendable () throws(EventError) -> T
    ) throws(EventError) -> T {
        switch discipline {
        case .owned:
            checkOwner(call)
            return try body()
        case .locked:
            baseLock.lock()
            defer { baseLock.unlock() }
            return try body()
        case .readCopyUpdate:
            if isWriter { return try body() }
            if let result = try withBorrowedWriterRole(body) { return result }
            return try runOnLoopAndWait(call, body)
        }
    }

    /// rcu: takes the writer role if no loop holds it, applies pending
    /// requests, runs `body`. Returns nil if the role is taken.
    private func withBorrowedWriterRole<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T? {
        guard !loopRunning.load(ordering: .sequentiallyConsistent), baseLock.tryLock() else { return nil }
        let me = se_thread_id()
        writerThread.store(me, ordering: .relaxed)
        defer {
            flushRetired()
            writerThread.store(0, ordering: .relaxed)
            baseLock.unlock()
            drainIfNoLoop()
        }
        drainHandoff()
        return try body()
    }

    /// rcu: runs `body` as the writer, when the caller is the writer or no
    /// loop holds the role (then borrowing it); returns false, without
    /// running `body`, when a loop on another thread holds it.
    @inline(__always)
    func withWriterRole<E: Error>(_ body: () throws(E) -> Void) throws(E) -> Bool {
        if isWriter {
            try body()
            return true
        }
        return try withBorrowedWriterRole(body) != nil
    }

    /// rcu: hands the events unlinked since the last flush to the domain, to
    /// be released after a grace period: one reclamation per batch.
    func flushRetired() {
        guard !retiredBatch.isEmpty else { return }
        domain.retire(RetiredBatch(retiredBatch))
        retiredBatch.removeAll(keepingCapacity: true)
    }

    /// rcu: posts `body` to the running loop and waits for its result. If
    /// the loop stops first, whoever drains the hand-off next runs it (the
    /// loop on its way out, or this thread in `postWork`).
    private func runOnLoopAndWait<T: Sendable>(
        _ call: StaticString, _ body: @escaping @Sendable () throws(EventError) -> T
    ) throws(EventError) -> T {
        let box = WriterResultBox<T>()
        let work = PostedWork { box.fulfil(Result { () throws(EventError) -> T in try body() }) }
        if writerWork.push(work) { notifier.notify() }
        drainIfNoLoop()
        return try box.wait().get()
    }

    /// rcu: after a push, if no loop runs, become the writer and apply
    /// everything pending. Also called by the loop after it lets go of the
    /// role, so a request pushed just then is not stranded.
    func drainIfNoLoop() {
        while !loopRunning.load(ordering: .sequentiallyConsistent) && !(handoff.isEmpty && writerWork.isEmpty) {
            guard baseLock.tryLock() else { return }
            writerThread.store(se_thread_id(), ordering: .relaxed)
            drainHandoff()
            flushRetired()
            writerThread.store(0, ordering: .relaxed)
            baseLock.unlock()
        }
    }

    /// Applies what other threads handed over: under rcu every request,
    /// under mutex/debug the activations (called with the base lock held).
    /// The hand-off's reference on each event is adopted as the base's when
    /// the event becomes linked, so an activation costs no extra retain.
    func drainHandoff() {
        guard discipline != .owned else { return }
        if discipline == .readCopyUpdate { writerWork.drain { work in work.body() } }
        handoff.drainUnmanaged { node in
            adoptableReference = node
            node._withUnsafeGuaranteedRef { applyIntent($0) }
            if adoptableReference != nil {
                adoptableReference = nil
                node.release()
            }
        }
    }

    /// The loop runs closures posted with ``post(_:)``, without the base lock.
    func runPosted() {
        posted.drain { work in
            if discipline == .locked {
                baseLock.unlock()
                work.body()
                baseLock.lock()
            } else {
                work.body()
            }
        }
    }

    /// Runs `work` on the loop thread during its next iteration (the one
    /// thread-safe door of an owned base; any thread may call it on any base).
    /// Work posted while no loop runs waits for the next ``loop(_:)``.
    public func post(_ work: @escaping @Sendable () -> Void) throws(EventError) {
        if shutDown.load(ordering: .acquiring) { throw .baseShutDown(call: "EventBase.post") }
        // A loop that is not running drains posted work when it starts.
        if posted.push(PostedWork(work)) && loopRunning.load(ordering: .sequentiallyConsistent) {
            notifier.notify()
        }
    }

    // MARK: waiting for a running callback

    /// After a delete from a thread other than the loop's: returns once
    /// `event`'s callback is not running. Under rcu the delete already bumped
    /// the event's generation, so it cannot start again; this waits for the
    /// loop's next quiescent state (its callback epoch) if it was mid-call.
    func waitUntilNotRunning(_ event: Event) {
        let node = Unmanaged.passUnretained(event)
        switch discipline {
        case .owned:
            return
        case .locked:
            // Called with the base lock held.
            guard runningEvent.load(ordering: .relaxed)?.toOpaque() == node.toOpaque(), !onLoopThread else { return }
            deleteWaiters += 1
            while runningEvent.load(ordering: .relaxed)?.toOpaque() == node.toOpaque() {
                callbackDone.wait(on: baseLock)
            }
            deleteWaiters -= 1
        case .readCopyUpdate:
            guard runningEvent.load(ordering: .sequentiallyConsistent)?.toOpaque() == node.toOpaque(),
                !onLoopThread
            else { return }
            let epoch = callbackEpoch.load(ordering: .acquiring)
            var spins = 0
            while runningEvent.load(ordering: .acquiring)?.toOpaque() == node.toOpaque()
                && callbackEpoch.load(ordering: .acquiring) == epoch
            {
                spins += 1
                if spins < 64 {
                    continue
                } else if spins < 256 {
                    sched_yield()
                } else {
                    var pause = timespec(tv_sec: 0, tv_nsec: spins < 1024 ? 20_000 : 200_000)
                    nanosleep(&pause, nil)
                }
            }
        }
    }
}

/// Objects released together after one grace period.
final class RetiredBatch {
    let objects: [AnyObject]
    init(_ objects: [AnyObject]) { self.objects = objects }
}

/// Carries a result from the loop thread back to a thread waiting in
/// ``EventBase/withWriter(_:_:)``.
final class WriterResultBox<T: Sendable>: @unchecked Sendable {
    // `result` is guarded by `lock`. A plain pthread pair: this box is never
    // part of a base's lock order.
    private let lock = PthreadMutexLock()
    private let ready = PthreadCondition()
    private var result: Result<T, EventError>?

    func fulfil(_ value: Result<T, EventError>) {
        lock.withLock { result = value }
        ready.broadcast()
    }

    func wait() -> Result<T, EventError> {
        lock.withLock {
            while true {
                if let result { return result }
                ready.wait(on: lock)
            }
        }
    }
}
