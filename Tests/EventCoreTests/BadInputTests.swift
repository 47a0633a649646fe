import CEventShims
import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Bad input gets a clear error and loses nothing: no crash, hang or leak.
@Suite struct BadInputTests {
    @Test func negativeDescriptorsAreRefused() throws {
        let base = try makeBase(.epoll)
        #expect(throws: EventError.badFileDescriptor(fd: -5, call: "Event.init")) {
            _ = try Event(base: base, fd: -5, flags: [.read]) { _, _ in }
        }
        #expect(throws: EventError.invalidFlags([.read], fd: -1, reason: "I/O flags need a descriptor")) {
            _ = try Event(base: base, fd: -1, flags: [.read]) { _, _ in }
        }
        #expect(throws: EventError.badFileDescriptor(fd: -2, call: "EventBase.activate(fd:)")) {
            try base.activate(fd: -2, flags: .read)
        }
        #expect(base.events(forFD: -1).isEmpty)
    }

    @Test(arguments: BackendKind.allCases, Provider.all)
    func aClosedDescriptorIsRefusedWhenAdded(_ kind: BackendKind, _ provider: Provider) throws {
        let base = try makeBase(kind, provider.make())
        // A descriptor number far above what parallel tests open (they get
        // the lowest free ones), so nothing reopens it under this test.
        let closed: Int32 = 19_001 - Int32(provider.name.count * 10) - Int32(kind.rawValue.count)
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        #expect(dup2(fds[0], closed) == closed)
        close(fds[0])
        close(fds[1])
        close(closed)
        #expect(fcntl(closed, F_GETFD) == -1)
        let event = try Event(base: base, fd: closed, flags: [.read]) { _, _ in }
        #expect {
            try event.add()
        } throws: { error in
            guard case .badFileDescriptor(let fd, _) = error as? EventError else { return false }
            return fd == closed
        }
        #expect(!event.isPending)
        #expect(try base.loop() == .noEvents)
    }

    @Test(arguments: Provider.all)
    func aRegularFileUnderEpollIsRefusedWithAClearError(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let fd = open("/proc/self/exe", O_RDONLY)
        defer { close(fd) }
        let event = try Event(base: base, fd: fd, flags: [.read]) { _, _ in }
        #expect {
            try event.add()
        } throws: { error in
            guard case .unsupportedFileDescriptor(let badFD, .epoll, _) = error as? EventError else { return false }
            return badFD == fd
        }
        #expect(!event.isPending)
    }

    @Test(arguments: [BackendKind.poll, .select])
    func aRegularFileIsAlwaysReadableUnderPollAndSelect(_ kind: BackendKind) throws {
        let base = try makeBase(kind)
        let fd = open("/proc/self/exe", O_RDONLY)
        defer { close(fd) }
        let fired = Counter()
        let event = try Event(base: base, fd: fd, flags: [.read]) { _, _ in fired.increment() }
        try event.add()
        try base.loop()
        #expect(fired.value == 1)
    }

    @Test(arguments: Provider.all)
    func negativeAndAbsurdTimeoutsAreRefused(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let event = try Event.timer(base: base) { _, _ in }
        for bad in [Duration.milliseconds(-1), .seconds(-3600), .seconds(200 * 365 * 24 * 3600), .seconds(Int64.max)] {
            #expect(throws: EventError.invalidTimeout(bad)) { try event.add(timeout: bad) }
            #expect(throws: EventError.invalidTimeout(bad)) { _ = try base.commonTimeout(bad) }
        }
        #expect(throws: EventError.invalidTimeout(.seconds(-1))) { try base.loopExit(after: .seconds(-1)) }
        #expect(!event.isPending)
        try event.add(timeout: EventBase.maximumTimeout)
        #expect(event.pending(.timeout) == .timeout)
        try event.delete()
    }

    @Test func signalNumbersOutOfRangeAreRefused() throws {
        let base = try makeBase(.epoll)
        for bad: Int32 in [0, -1, 65, 1000] {
            #expect {
                _ = try Event(base: base, signal: bad) { _, _ in }
            } throws: { error in
                guard case .invalidSignal(let signal, _) = error as? EventError else { return false }
                return signal == bad
            }
        }
        for uncatchable in [SIGKILL, SIGSTOP] {
            #expect {
                _ = try Event(base: base, signal: uncatchable) { _, _ in }
            } throws: { error in
                guard case .invalidSignal(let signal, _) = error as? EventError else { return false }
                return signal == uncatchable
            }
        }
        #expect(throws: EventError.self) { try base.activate(signal: 99) }
    }

    @Test func invalidFlagCombinationsAreRefused() throws {
        let base = try makeBase(.epoll)
        let pair = SocketPair()
        #expect(throws: EventError.self) { _ = try Event(base: base, fd: pair.left, flags: [.timeout]) { _, _ in } }
        #expect(throws: EventError.self) { _ = try Event(base: base, fd: SIGUSR1, flags: [.signal, .read]) { _, _ in } }
        #expect(throws: EventError.self) { _ = try Event(base: base, fd: -1, flags: [.edgeTriggered]) { _, _ in } }
        #expect(throws: EventError.self) { try base.once(fd: pair.left, flags: [.read, .persist]) { _ in } }
        #expect(throws: EventError.invalidPriority(5, count: 1)) {
            _ = try Event(base: base, fd: pair.left, flags: [.read], priority: 5) { _, _ in }
        }
    }

    @Test(arguments: Provider.all)
    func anEventUsedAfterItsFinalizerRanFailsClearly(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let finalized = Counter()
        let event = try Event.timer(base: base) { _, _ in }
        try event.add(timeout: .seconds(10))
        try event.finalize { _ in finalized.increment() }
        #expect(event.isFinalized)
        #expect(!event.isPending)
        try base.loop()
        #expect(finalized.value == 1)
        #expect(throws: EventError.eventFinalized(call: "Event.add")) { try event.add() }
        #expect(throws: EventError.eventFinalized(call: "Event.activate")) { try event.activate() }
        #expect(throws: EventError.eventFinalized(call: "Event.delete")) { try event.delete() }
        #expect(throws: EventError.eventFinalized(call: "Event.setPriority")) { try event.setPriority(0) }
        #expect(finalized.value == 1)
    }

    @Test(arguments: Provider.all)
    func aBaseUsedAfterShutdownFailsClearly(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let pair = SocketPair()
        let event = try Event(base: base, fd: pair.left, flags: [.read]) { _, _ in }
        try event.add()
        let finalized = Counter()
        let doomed = try Event.timer(base: base) { _, _ in }
        try doomed.finalize { _ in finalized.increment() }
        try base.shutdown()
        #expect(finalized.value == 1, "shutdown runs pending finalizers")
        #expect(!event.isPending)
        #expect(base.isShutDown)
        #expect(throws: EventError.baseShutDown(call: "EventBase.loop")) { try base.loop() }
        #expect(throws: EventError.baseShutDown(call: "Event.add")) { try event.add() }
        #expect(throws: EventError.baseShutDown(call: "Event.activate")) { try event.activate() }
        #expect(throws: EventError.baseShutDown(call: "EventBase.post")) { try base.post {} }
        #expect(throws: EventError.baseShutDown(call: "EventBase.loopExit")) { try base.loopExit() }
        #expect(throws: EventError.baseShutDown(call: "EventBase.loopBreak")) { try base.loopBreak() }
        try event.delete()
        try base.shutdown()
    }

    @Test(arguments: Provider.shared)
    func shutdownWhileTheLoopRunsIsRefused(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let thread = runLoopInBackground(base, .noExitOnEmpty)
        #expect(eventually { base.isRunning })
        #expect(throws: EventError.loopRunning(call: "EventBase.shutdown")) { try base.shutdown() }
        try base.loopBreak()
        thread.join()
        try base.shutdown()
    }

    @Test func shutdownFromInsideACallbackIsRefused() throws {
        let base = try makeBase(.epoll)
        let refused = Box<Bool>(false)
        let timer = try Event.timer(base: base) { ev, _ in
            refused.value = (try? ev.base.shutdown()) == nil
        }
        try timer.add(timeout: .zero)
        try base.loop()
        #expect(refused.value == true)
        try base.shutdown()
    }

    /// Counted in a process of its own (other tests open descriptors in
    /// parallel), after a first round, so descriptors the runtime opens
    /// lazily (Dispatch's timerfd, liburcu's threads) are already there: the
    /// second and third rounds must not leave a single descriptor behind.
    @Test func creatingUsingAndShuttingDownBasesLeaksNoDescriptors() async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            var before = Set<String>()
            for round in 0..<3 {
                if round == 1 { before = openDescriptors() }
                for kind in BackendKind.allCases {
                    for provider in Provider.all {
                        for precise in [false, true] {
                            let base = try! makeBase(kind, provider.make()) { $0.preciseTimer = precise }
                            let pair = SocketPair()
                            let event = try! Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in }
                            try! event.add(timeout: .milliseconds(1))
                            try! base.loop([.once])
                            try! base.shutdown()
                        }
                        // A base dropped without shutdown closes its descriptors too.
                        _ = try! makeBase(kind, provider.make())
                    }
                }
            }
            let leaked = openDescriptors().subtracting(before)
            var message = leaked.isEmpty ? "no leak\n" : "leaked: \(leaked.sorted())\n"
            _ = message.withUTF8 { write(2, $0.baseAddress, $0.count) }
        }
        let text = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(text.contains("no leak"), "\(text)")
    }

    @Test(arguments: Provider.all)
    func deletedEventsAreReleased(_ provider: Provider) throws {
        let base = try makeBase(.epoll, provider.make())
        let pair = SocketPair()
        weak var weakEvent: Event?
        do {
            let event = try Event(base: base, fd: pair.left, flags: [.read, .persist]) { _, _ in }
            weakEvent = event
            try event.add(timeout: .seconds(5))
            try event.activate(.write)
            try event.delete()
        }
        if base.lockProvider.readPath == .readCopyUpdate {
            base.lockProvider.makeReadMostlyDomain().barrier()
        }
        #expect(eventually { weakEvent == nil }, "a deleted event stayed alive")
    }

    @Test func anUnknownLockingNameInTheEnvironmentIsAnError() throws {
        var configuration = EventBase.Configuration()
        configuration.environment = ["EVENT_LOCKING": "spinlock"]
        #expect(throws: EventError.locking(.unknownProvider(name: "spinlock", source: "EVENT_LOCKING"))) {
            _ = try EventBase(configuration)
        }
        configuration.environment = ["EVENT_LOCKING": "rcu"]
        #expect(try EventBase(configuration).lockProvider.name == "rcu")
        configuration.ignoreEnvironment = true
        configuration.environment = ["EVENT_LOCKING": "spinlock"]
        #expect(try EventBase(configuration).lockProvider.name == "mutex")
    }

    @Test func environmentDisablesBackendsUnlessIgnored() throws {
        var configuration = EventBase.Configuration()
        configuration.environment = ["EVENT_NOEPOLL": "1"]
        #expect(try EventBase(configuration).backendKind == .poll)
        configuration.environment = ["EVENT_NOEPOLL": "", "EVENT_NOPOLL": "yes"]
        #expect(try EventBase(configuration).backendKind == .select)
        configuration.environment = ["EVENT_NOEPOLL": "1", "EVENT_NOPOLL": "1", "EVENT_NOSELECT": "1"]
        #expect(throws: EventError.self) { _ = try EventBase(configuration) }
        configuration.ignoreEnvironment = true
        #expect(try EventBase(configuration).backendKind == .epoll)
        configuration.ignoreEnvironment = false
        configuration.environment = [:]
        configuration.requiredFeatures = [.arbitraryFileDescriptors]
        #expect(try EventBase(configuration).backendKind == .poll)
        configuration.requiredFeatures = [.edgeTriggered, .arbitraryFileDescriptors]
        #expect(throws: EventError.self) { _ = try EventBase(configuration) }
    }

    @Test func invalidConfigurationsAreRefused() throws {
        for broken: (inout EventBase.Configuration) -> Void in [
            { $0.priorityCount = 0 }, { $0.priorityCount = 1000 },
            { $0.maxCallbacksPerPass = 0 }, { $0.maxDispatchInterval = .seconds(-1) },
        ] {
            var configuration = EventBase.Configuration()
            broken(&configuration)
            #expect(throws: EventError.self) { _ = try EventBase(configuration) }
        }
    }

    @Test func commonTimeoutsAndEventsOfAnotherBaseAreRefused() throws {
        let one = try makeBase(.epoll)
        let two = try makeBase(.poll)
        let common = try one.commonTimeout(.milliseconds(5))
        let event = try Event.timer(base: two) { _, _ in }
        #expect(throws: EventError.wrongBase(call: "Event.add(timeout: CommonTimeout)")) { try event.add(timeout: common) }
    }

    @Test func showMethodPrintsTheBackendAndLockProvider() async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            var configuration = EventBase.Configuration()
            configuration.environment = ["EVENT_SHOW_METHOD": "1", "EVENT_NOEPOLL": "1", "EVENT_LOCKING": "rcu"]
            _ = try! EventBase(configuration)
        }
        let text = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(text.contains("SwiftEvent using: poll, locking: rcu"))
    }
}
