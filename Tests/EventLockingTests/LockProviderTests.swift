import EventLocking
import Synchronization
import Testing
import EventTestSupport

@Suite("Lock providers: exclusive, recursive and read/write locks")
struct LockProviderTests {
    @Test("a lock excludes: T threads incrementing N times each end at N*T", arguments: ProviderCase.exclusive)
    func mutualExclusionUnderContention(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        #expect(provider.providesMutualExclusion)
        for kind in [LockKind.plain, .recursive] {
            let lock = provider.makeLock(kind)
            let threads = 4
            let iterations = 20_000
            let counter = Unguarded(0)
            let holders = Unguarded(0)
            let overlaps = AtomicCounter()
            let start = Latch()
            let workers = (0..<threads).map { _ in
                TestThread {
                    start.wait()
                    for _ in 0..<iterations {
                        lock.lock()
                        holders.value += 1
                        if holders.value != 1 { overlaps.increment() }
                        counter.value += 1
                        holders.value -= 1
                        lock.unlock()
                    }
                }
            }
            start.open()
            for worker in workers { #expect(worker.join(timeout: .seconds(60))) }
            #expect(counter.value == threads * iterations, "\(kind)")
            #expect(overlaps.value == 0, "\(kind)")
        }
        #expect(log.all.isEmpty)
    }

    @Test("withLock runs the body under the lock, returns its value and rethrows", arguments: ProviderCase.exclusive)
    func withLockReturnsAndRethrows(_ providerCase: ProviderCase) {
        struct Expected: Error, Equatable {}
        let log = ViolationLog()
        let lock = providerCase.make(reportingTo: log).makeLock(.plain)
        let value = lock.withLock { 42 }
        #expect(value == 42)
        #expect(throws: Expected()) {
            try lock.withLock { () throws(Expected) -> Int in throw Expected() }
        }
        // Released after the throw: it can be taken again.
        #expect(lock.tryLock())
        lock.unlock()
        #expect(log.all.isEmpty)
    }

    @Test("a recursive lock is re-taken by its holder and freed only after as many unlocks", arguments: ProviderCase.exclusive)
    func recursiveLockReentry(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let lock = providerCase.make(reportingTo: log).makeLock(.recursive)
        #expect(lock.kind == .recursive)
        let heldThrice = Latch()
        let releaseTwice = Latch()
        let releasedTwice = Latch()
        let releaseLast = Latch()
        let holderTryLocked = AtomicFlag(false)
        let holder = TestThread {
            lock.lock()
            lock.lock()
            holderTryLocked.value = lock.tryLock()
            heldThrice.open()
            releaseTwice.wait()
            lock.unlock()
            lock.unlock()
            releasedTwice.open()
            releaseLast.wait()
            if holderTryLocked.value { lock.unlock() }
        }
        #expect(heldThrice.wait())
        #expect(holderTryLocked.value, "the holder may take a recursive lock with tryLock too")
        #expect(!lock.tryLock(), "another thread must not get a held recursive lock")
        releaseTwice.open()
        #expect(releasedTwice.wait())
        #expect(!lock.tryLock(), "still held once")
        releaseLast.open()
        #expect(holder.join())
        #expect(lock.tryLock(), "free after the last unlock")
        lock.unlock()
        #expect(log.all.isEmpty)
    }

    @Test("tryLock fails while another thread holds the lock and succeeds once it is released", arguments: ProviderCase.exclusive)
    func tryLockWhileHeldElsewhere(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let lock = providerCase.make(reportingTo: log).makeLock(.plain)
        #expect(lock.kind == .plain)
        let held = Latch()
        let release = Latch()
        let holder = TestThread {
            lock.lock()
            held.open()
            release.wait()
            lock.unlock()
        }
        #expect(held.wait())
        #expect(!lock.tryLock())
        #expect(!lock.tryLock())
        release.open()
        #expect(holder.join())
        #expect(lock.tryLock())
        lock.unlock()
        #expect(log.all.isEmpty)
    }

    @Test("a blocked lock() proceeds once the holder unlocks", arguments: ProviderCase.exclusive)
    func lockBlocksUntilReleased(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let lock = providerCase.make(reportingTo: log).makeLock(.plain)
        let held = Latch()
        let release = Latch()
        let acquired = Latch()
        let holder = TestThread {
            lock.lock()
            held.open()
            release.wait()
            lock.unlock()
        }
        #expect(held.wait())
        let waiter = TestThread {
            lock.lock()
            acquired.open()
            lock.unlock()
        }
        #expect(!acquired.wait(timeout: quietWindow), "lock() returned while another thread held the lock")
        release.open()
        #expect(acquired.wait())
        #expect(holder.join())
        #expect(waiter.join())
        #expect(log.all.isEmpty)
    }

    @Test("a read/write lock lets readers in together", arguments: ProviderCase.exclusive)
    func concurrentReaders(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let rwlock = providerCase.make(reportingTo: log).makeReadWriteLock()
        let readers = 3
        let inside = (0..<readers).map { _ in Latch() }
        let leave = Latch()
        let threads = (0..<readers).map { index in
            TestThread {
                rwlock.readLock(at: CallSite())
                inside[index].open()
                leave.wait()
                rwlock.unlock(at: CallSite())
            }
        }
        // Every reader is inside at the same time: none waited for another to leave.
        for latch in inside { #expect(latch.wait()) }
        #expect(!rwlock.tryWriteLock(at: CallSite()), "a writer got in while readers were inside")
        leave.open()
        for thread in threads { #expect(thread.join()) }
        #expect(rwlock.tryWriteLock(at: CallSite()), "the write side is free once every reader left")
        rwlock.unlock(at: CallSite())
        #expect(log.all.isEmpty)
    }

    @Test("readers exclude a writer, and a writer excludes readers and other writers", arguments: ProviderCase.exclusive)
    func writersAreExclusive(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let rwlock = providerCase.make(reportingTo: log).makeReadWriteLock()

        // A reader holds it: a writer waits.
        let readerInside = Latch()
        let readerLeave = Latch()
        let reader = TestThread {
            rwlock.withReadLock {
                readerInside.open()
                readerLeave.wait()
            }
        }
        #expect(readerInside.wait())
        let writerInside = Latch()
        let writerLeave = Latch()
        let writer = TestThread {
            rwlock.withWriteLock {
                writerInside.open()
                writerLeave.wait()
            }
        }
        #expect(!writerInside.wait(timeout: quietWindow), "a writer got in while a reader was inside")
        readerLeave.open()
        #expect(reader.join())
        #expect(writerInside.wait(), "the writer did not get in after the reader left")

        // The writer holds it: readers and other writers wait.
        #expect(!rwlock.tryWriteLock(at: CallSite()))
        let secondReaderInside = Latch()
        let secondReader = TestThread {
            rwlock.withReadLock { secondReaderInside.open() }
        }
        let secondWriterInside = Latch()
        let secondWriter = TestThread {
            rwlock.withWriteLock { secondWriterInside.open() }
        }
        #expect(!secondReaderInside.wait(timeout: quietWindow), "a reader got in while a writer was inside")
        #expect(!secondWriterInside.isOpenNow, "two writers were inside at once")
        writerLeave.open()
        #expect(writer.join())
        #expect(secondReaderInside.wait())
        #expect(secondWriterInside.wait())
        #expect(secondReader.join())
        #expect(secondWriter.join())
        #expect(log.all.isEmpty)
    }

    @Test("withReadLock and withWriteLock return the body's value and rethrow", arguments: ProviderCase.exclusive)
    func readWriteHelpers(_ providerCase: ProviderCase) {
        struct Expected: Error, Equatable {}
        let log = ViolationLog()
        let rwlock = providerCase.make(reportingTo: log).makeReadWriteLock()
        #expect(rwlock.withReadLock { "read" } == "read")
        #expect(rwlock.withWriteLock { "write" } == "write")
        #expect(throws: Expected()) {
            try rwlock.withWriteLock { () throws(Expected) -> Void in throw Expected() }
        }
        #expect(rwlock.tryWriteLock(at: CallSite()), "released after the throw")
        rwlock.unlock(at: CallSite())
        #expect(log.all.isEmpty)
    }

    @Test("providers report their names, exclusion and read path")
    func providerProperties() {
        #expect(NoLockProvider().name == "none")
        #expect(!NoLockProvider().providesMutualExclusion)
        #expect(MutexLockProvider().name == "mutex")
        #expect(MutexLockProvider().providesMutualExclusion)
        #expect(MutexLockProvider().readPath == .baseLock)
        #expect(RCULockProvider().name == "rcu")
        #expect(RCULockProvider().providesMutualExclusion)
        #expect(RCULockProvider().readPath == .readCopyUpdate)
        #expect(RCULockProvider().makeReadMostlyDomain() === URCUDomain.shared)
        #expect(MutexLockProvider().makeReadMostlyDomain() is LockedReadMostlyDomain)

        let debugMutex = DebugLockProvider(wrapping: MutexLockProvider(), onViolation: { _ in })
        #expect(debugMutex.name == "debug(mutex)")
        #expect(debugMutex.readPath == .baseLock)
        #expect(debugMutex.providesMutualExclusion)
        let debugRCU = DebugLockProvider(wrapping: RCULockProvider(), onViolation: { _ in })
        #expect(debugRCU.name == "debug(rcu)")
        #expect(debugRCU.readPath == .readCopyUpdate)
        #expect(debugRCU.makeReadMostlyDomain() === URCUDomain.shared)
        let debugNone = DebugLockProvider(wrapping: NoLockProvider(), onViolation: { _ in })
        #expect(!debugNone.providesMutualExclusion)
        #expect(LockProviders.defaultProvider.name == "mutex")
    }

    @Test("mutex-backed providers make locks of the kind asked for", arguments: ProviderCase.exclusive)
    func lockKinds(_ providerCase: ProviderCase) {
        let provider = providerCase.make(reportingTo: ViolationLog())
        #expect(provider.makeLock(.plain).kind == .plain)
        #expect(provider.makeLock(.recursive).kind == .recursive)
    }

    @Test("the none provider never blocks and never excludes")
    func noLockProvider() {
        let provider = NoLockProvider()
        let lock = provider.makeLock(.plain)
        #expect(lock.kind == .plain)
        #expect(provider.makeLock(.recursive).kind == .recursive)
        lock.lock()
        #expect(lock.tryLock(), "the none provider's locks never refuse")
        lock.lock()
        lock.unlock()
        lock.unlock()
        lock.unlock()
        let rwlock = provider.makeReadWriteLock()
        rwlock.writeLock(at: CallSite())
        #expect(rwlock.tryWriteLock(at: CallSite()))
        rwlock.readLock(at: CallSite())
        rwlock.unlock(at: CallSite())
        let condition = provider.makeCondition()
        let start = ContinuousClock.now
        #expect(!condition.wait(on: lock, timeout: .seconds(5)), "nobody can signal a single thread: the wait gives up")
        condition.wait(on: lock)
        condition.signal()
        condition.broadcast()
        #expect(ContinuousClock.now - start < .seconds(1), "a none condition must not sleep")
        let domain = provider.makeReadMostlyDomain()
        let flag = ReclaimFlag()
        domain.withReadSection { domain.retire(Tracked(flag)) }
        domain.synchronize()
        domain.barrier()
        #expect(flag.isSet)
    }
}
