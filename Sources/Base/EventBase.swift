import CEventShims
import EventBackends
import EventLocking
import Glibc
import Logging
import Synchronization

/// The event loop (libevent's `struct event_base`): watches descriptors,
/// signals and timers through a backend and runs each event's closure.
///
/// A base is *owned* (one thread uses it and no lock is ever taken; calls
/// from other threads stop the program with a message naming the call and
/// the owner) or *shared* (any thread may add, delete and activate events,
/// add timers and stop the loop; the lock provider guards it). The lock
/// provider decides: `NoLockProvider` makes an owned base, any other provider
/// a shared one. See ARCHITECTURE.md for what each provider does on each path.
public final class EventBase: @unchecked Sendable {
    // Confinement: immutable `let`s are safe anywhere; `Atomic`s are the
    // cross-thread state; every `var` is writer state, touched only by the
    // writer: the owner thread (owned), the holder of `baseLock` (mutex and
    // debug providers), or the holder of `baseLock` as the writer role, which
    // the loop thread keeps while it runs (rcu provider).

    enum Discipline {
        case owned
        case locked
        case readCopyUpdate
    }

    let discipline: Discipline
    /// Owned or shared.
    public let threadingMode: ThreadingMode
    /// The provider guarding this base.
    public let lockProvider: any LockProvider
    /// The backend method in use (libevent's `event_base_get_method`).
    public let backendKind: BackendKind
    let backend: any Backend
    let notifier: Notifier
    /// The base lock (mutex, debug) or the writer role (rcu); unused when owned.
    let baseLock: any EventLock
    /// Lets a cross-thread delete wait for the running callback (mutex, debug).
    let callbackDone: any EventCondition
    /// Read-side sections and reclamation (rcu).
    let domain: any ReadMostlyDomain
    let logger = Logger(label: "SwiftEvent")
    /// Number of priorities (libevent's `event_base_get_npriorities`).
    public let priorityCount: Int
    let maxDispatchNanoseconds: Int64
    let maxCallbacksPerPass: Int
    let limitsFromPriority: Int

    // MARK: cross-thread state

    /// Owner thread of an owned base (0: none yet, adopted by the next caller).
    let owner = Atomic<UInt64>(0)
    /// The thread running the loop, 0 when none.
    let loopThread = Atomic<UInt64>(0)
    /// The thread holding the writer role (rcu).
    let writerThread = Atomic<UInt64>(0)
    let loopRunning = Atomic<Bool>(false)
    /// The loop was asked to break, to exit, or to continue.
    let breakRequested = Atomic<Bool>(false)
    let exitRequested = Atomic<Bool>(false)
    let continueRequested = Atomic<Bool>(false)
    /// The event whose callback runs now.
    let runningEvent = Atomic<Unmanaged<Event>?>(nil)
    /// Callbacks completed (rcu): the loop's quiescent states, which a
    /// cross-thread delete waits on.
    let callbackEpoch = Atomic<UInt64>(0)
    let shutDown = Atomic<Bool>(false)
    /// The base as an actor executor and as a task executor, made at the end of init.
    let executorSlot = ExecutorSlot()
    /// Requests from other threads to the rcu writer: events with pending
    /// intents, and closures needing writer access (any writer runs them).
    let handoff = HandoffStack<Event>()
    let writerWork = HandoffStack<PostedWork>()
    /// Closures posted with ``post(_:)``; only the loop runs them.
    let posted = HandoffStack<PostedWork>()
    /// Jobs enqueued on the base's executors; only the loop runs them.
    let jobs = JobQueue()
    /// The descriptor table lock-free readers use (rcu).
    let publishedTable: Atomic<Unmanaged<EventListTable>>
    /// Activations merged into an already pending one.
    let coalescedActivations = Atomic<Int>(0)
    /// Why the last loop ended (``LastExit``).
    let lastExitState = Atomic<UInt8>(0)

    // MARK: writer state
    //
    // Marked @exclusivity(unchecked): the threading discipline (owner
    // thread, base lock or rcu writer role) already keeps accesses from
    // overlapping, and the runtime's dynamic exclusivity checks cost ~75
    // instructions per access on the dispatch path (measured with callgrind).

    /// The events on each descriptor, and what each descriptor asks of the backend.
    @exclusivity(unchecked) var table: EventListTable
    let registry = IORegistry()
    /// The events on each signal, and how many.
    let signalTable: EventListTable
    @exclusivity(unchecked) var signalCounts: [Int]
    /// The base's own descriptors: the notifier's and the signal pipe's read ends.
    @exclusivity(unchecked) var notifierFD: Int32 = -1
    @exclusivity(unchecked) var signalFD: Int32 = -1
    let timers = TimerHeap()
    /// One queue per priority. A fixed buffer: no copy-on-write or
    /// exclusivity checks on the dispatch path.
    let activeQueues: UnsafeMutableBufferPointer<ActiveQueue>
    @exclusivity(unchecked) var activeCount = 0
    /// Non-internal events that are inserted or have a timeout.
    @exclusivity(unchecked) var userEventCount = 0
    /// Priority of the callback running now, -1 outside callbacks.
    @exclusivity(unchecked) var runningPriority = -1
    /// Waiters for the running callback to finish (mutex, debug).
    @exclusivity(unchecked) var deleteWaiters = 0
    /// Cached loop time (monotonic ns), 0 when not cached.
    @exclusivity(unchecked) var cachedNow: Int64 = 0
    /// Wall clock minus monotonic clock, refreshed at most every 5 s.
    @exclusivity(unchecked) var wallClockOffset: Int64 = 0
    @exclusivity(unchecked) var wallClockOffsetUpdated: Int64 = Int64.min
    /// Signal delivery: a pipe the handler writes signal numbers into.
    @exclusivity(unchecked) var signalPipe: (read: Int32, write: Int32)?
    @exclusivity(unchecked) var installedSignals = 0
    /// Common timeout queues by duration.
    @exclusivity(unchecked) var commonQueues: [Int64: CommonTimeoutQueue] = [:]
    /// The common queues by id (``TimerSlot``), unretained: `commonQueues` keeps them.
    @exclusivity(unchecked) var commonQueueList: [Unmanaged<CommonTimeoutQueue>] = []
    /// The pending `loopExit(after:)` timer.
    @exclusivity(unchecked) var exitTimer: Event?
    /// Events unlinked since the last flush, released after a grace period (rcu).
    @exclusivity(unchecked) var retiredBatch: [AnyObject] = []
    /// While the writer applies a handed-over event: the hand-off's +1 on
    /// it, which ``settle(_:)`` takes over instead of retaining (writer).
    @exclusivity(unchecked) var adoptableReference: Unmanaged<Event>?

    /// Creates a base (libevent's `event_base_new_with_config`).
    public init(_ configuration: Configuration = Configuration()) throws(EventError) {
        let resolved = try ResolvedConfiguration(configuration)
        lockProvider = resolved.provider
        backendKind = resolved.backend
        if !resolved.provider.providesMutualExclusion {
            discipline = .owned
        } else if resolved.provider.readPath == .readCopyUpdate {
            discipline = .readCopyUpdate
        } else {
            discipline = .locked
        }
        threadingMode = discipline == .owned ? .owned : .shared
        priorityCount = configuration.priorityCount
        maxDispatchNanoseconds = configuration.maxDispatchInterval?.nanosecondsRoundedUp ?? -1
        maxCallbacksPerPass = configuration.maxCallbacksPerPass ?? Int.max
        limitsFromPriority = configuration.limitsFromPriority
        baseLock = resolved.provider.makeLock(.plain)
        callbackDone = resolved.provider.makeCondition()
        domain = resolved.provider.makeReadMostlyDomain()
        activeQueues = .allocate(capacity: configuration.priorityCount)
        activeQueues.initialize(repeating: ActiveQueue())
        signalTable = EventListTable(capacity: Int(se_signal_count()))
        signalCounts = Array(repeating: 0, count: Int(se_signal_count()))
        let initialTable = EventListTable(capacity: 64)
        table = initialTable
        publishedTable = Atomic(Unmanaged.passUnretained(initialTable))
        do {
            backend = try resolved.backend.make(preciseTimer: resolved.preciseTimer)
        } catch {
            throw .system(error)
        }
        do {
            notifier = try Notifier(prefer: configuration.notifier)
        } catch {
            backend.close()
            throw .system(error)
        }
        if discipline == .owned { owner.store(ThreadIdentity.current.rawValue, ordering: .relaxed) }
        do {
            try watchInternal(fd: notifier.readFD)
            notifierFD = notifier.readFD
        } catch {
            backend.close()
            throw error
        }
        if resolved.showMethod {
            var line = "SwiftEvent using: \(backendKind), locking: \(lockProvider.name)\n"
            _ = line.withUTF8 { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
        executorSlot.executor = EventBaseExecutor(base: self)
        executorSlot.taskExecutor = EventBaseTaskExecutor(base: self)
    }

    deinit {
        if !shutDown.load(ordering: .relaxed) { releaseResources() }
        activeQueues.deallocate()
    }

    /// Name of the backend (libevent's `event_base_get_method`).
    public var method: String { backendKind.rawValue }

    /// Features of the backend (libevent's `event_base_get_features`).
    public var features: BackendFeatures { backend.features }

    /// How other threads wake the loop.
    public var notifierMechanism: Notifier.Mechanism { notifier.mechanism }

    /// Writes made to the wake-up descriptor so far.
    public var wakeUpWrites: Int { notifier.writeCount }

    /// Activations that found the event already active and were merged.
    public var coalescedActivationCount: Int { coalescedActivations.load(ordering: .relaxed) }

    /// Whether the loop is running now.
    public var isRunning: Bool { loopRunning.load(ordering: .acquiring) }

    /// Whether ``shutdown()`` was called.
    public var isShutDown: Bool { shutDown.load(ordering: .acquiring) }

    // MARK: descriptor table (writer)

    /// Makes sure the table covers `fd`: grows it by publishing a copy and
    /// retiring the old one after a grace period (rcu readers may hold it).
    func ensureTableCovers(_ fd: Int32) {
        let index = Int(fd)
        guard index >= table.capacity else { return }
        var capacity = table.capacity
        while capacity <= index { capacity *= 2 }
        let grown = EventListTable(capacity: capacity, copying: table)
        let old = table
        table = grown
        publishedTable.store(Unmanaged.passUnretained(grown), ordering: .releasing)
        if discipline == .readCopyUpdate { domain.retire(old) } else { withExtendedLifetime(old) {} }
    }

    /// Registers one of the base's own descriptors with the backend.
    func watchInternal(fd: Int32) throws(EventError) {
        do {
            try backend.update(fd: fd, from: [], to: .read, edgeTriggered: false)
        } catch {
            throw .system(error)
        }
    }

    /// Closes the backend, the notifier's and signal pipe's descriptors.
    func releaseResources() {
        backend.close()
        if let pipe = signalPipe {
            close(pipe.read)
            close(pipe.write)
            signalPipe = nil
        }
    }
}

/// A closure posted to run on the loop (``EventBase/post(_:)``).
final class PostedWork: HandoffNode, @unchecked Sendable {
    // `handoffNext` is confined by the hand-off stack protocol (pusher, then
    // the consumer); `body` is immutable.
    let body: @Sendable () -> Void
    var handoffNext: Unmanaged<PostedWork>?

    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

extension Event: HandoffNode {}
