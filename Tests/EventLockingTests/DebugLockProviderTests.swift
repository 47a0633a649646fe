import EventLocking
import Synchronization
import Testing
import EventTestSupport

/// Where `line` of this file is, as the debug provider records a call site.
private func here(_ line: UInt, file: StaticString = #fileID) -> CallSite { CallSite(file: file, line: line) }

@Suite("Debug lock provider")
struct DebugLockProviderTests {
    private static let wrapped: [ProviderCase] = ProviderCase.exclusive.filter { $0.name.hasPrefix("debug") }

    private func debugProvider(over wrapped: any LockProvider = MutexLockProvider(), _ log: ViolationLog) -> DebugLockProvider {
        DebugLockProvider(wrapping: wrapped, onViolation: log.record)
    }

    @Test("unlock by a thread that does not hold the lock is reported with both sites and ignored")
    func unlockByNonHolder() {
        let log = ViolationLog()
        let lock = debugProvider(log).makeLock(.plain)
        let held = Latch()
        let release = Latch()
        let lockedAt = Mutex<UInt>(0)
        let holder = TestThread {
            let line: UInt = #line; lock.lock()
            lockedAt.withLock { $0 = line }
            held.open()
            release.wait()
            lock.unlock()
        }
        #expect(held.wait())
        let unlockedAt: UInt = #line; lock.unlock()

        let violations = log.all
        #expect(violations.count == 1)
        let violation = violations.first
        #expect(violation?.kind == .unlockByNonHolder)
        #expect(violation?.site == here(unlockedAt))
        #expect(violation?.otherSite == here(lockedAt.withLock { $0 }))
        #expect(violation?.message.contains("\(here(unlockedAt))") == true)

        // The foreign unlock was not passed on: the holder still holds it.
        #expect(!lock.tryLock())
        release.open()
        #expect(holder.join())
        #expect(lock.tryLock())
        lock.unlock()
        #expect(log.all.count == 1, "the holder's own unlock is not a violation")
    }

    @Test("unlocking a lock nobody holds is reported without another site")
    func unlockOfFreeLock() {
        let log = ViolationLog()
        let lock = debugProvider(log).makeLock(.recursive)
        let unlockedAt: UInt = #line; lock.unlock()
        let violations = log.all
        #expect(violations.count == 1)
        #expect(violations.first?.kind == .unlockByNonHolder)
        #expect(violations.first?.site == here(unlockedAt))
        #expect(violations.first?.otherSite == nil)
        // Still usable.
        #expect(lock.tryLock())
        lock.unlock()
        #expect(log.all.count == 1)
    }

    @Test("recursion on a non-recursive lock is reported with both sites and does not deadlock", arguments: Self.wrapped)
    func recursionOnPlainLock(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        let lock = provider.makeLock(.plain)
        let lines = Mutex<(first: UInt, second: UInt)>((0, 0))
        let stillHeldAfterOneUnlock = AtomicFlag(false)
        let finished = runOnThread {
            let first: UInt = #line; lock.lock()
            let second: UInt = #line; lock.lock()
            lines.withLock { $0 = (first, second) }
            lock.unlock()
            let probe = TestThread { stillHeldAfterOneUnlock.value = !lock.tryLock() }
            _ = probe.join()
            lock.unlock()
        }
        #expect(finished, "recursion on a plain debug lock deadlocked")
        let (first, second) = lines.withLock { $0 }
        let violations = log.all
        #expect(violations.count == 1)
        #expect(violations.first?.kind == .recursionOnNonRecursiveLock)
        #expect(violations.first?.site == here(second))
        #expect(violations.first?.otherSite == here(first))
        #expect(stillHeldAfterOneUnlock.value, "the lock was freed by the inner unlock")
        // Balanced unlocks freed it.
        #expect(lock.tryLock())
        lock.unlock()
        #expect(log.all.count == 1)
    }

    @Test("tryLock by the holder of a plain lock fails without a report")
    func tryLockByHolderOfPlainLock() {
        let log = ViolationLog()
        let lock = debugProvider(log).makeLock(.plain)
        let result = AtomicFlag(true)
        expectFinishes {
            lock.lock()
            result.value = lock.tryLock()
            lock.unlock()
        }
        #expect(!result.value)
        #expect(log.all.isEmpty)
        #expect(lock.tryLock())
        lock.unlock()
    }

    @Test("a condition wait without the lock is reported and returns at once", arguments: Self.wrapped)
    func conditionWaitWithoutLock(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        let lock = provider.makeLock(.plain)
        let condition = provider.makeCondition()
        let lines = Mutex<[UInt]>([])
        let start = ContinuousClock.now
        expectFinishes(timeout: .seconds(10), "a wait without the lock blocked") {
            let untimed: UInt = #line; condition.wait(on: lock)
            let timed: UInt = #line; _ = condition.wait(on: lock, timeout: .seconds(60))
            lines.withLock { $0 = [untimed, timed] }
        }
        #expect(ContinuousClock.now - start < .seconds(5))
        let violations = log.all
        #expect(violations.map(\.kind) == [.conditionWaitWithoutLock, .conditionWaitWithoutLock])
        #expect(violations.map(\.site) == lines.withLock { $0 }.map { here($0) })
        #expect(violations.allSatisfy { $0.otherSite == nil })
        // The lock was never taken by the bad waits.
        #expect(lock.tryLock())
        lock.unlock()
    }

    @Test("a condition wait while another thread holds the lock names the holder's site")
    func conditionWaitWhileOtherHolds() {
        let log = ViolationLog()
        let provider = debugProvider(log)
        let lock = provider.makeLock(.plain)
        let condition = provider.makeCondition()
        let held = Latch()
        let release = Latch()
        let lockedAt = Mutex<UInt>(0)
        let holder = TestThread {
            let line: UInt = #line; lock.lock()
            lockedAt.withLock { $0 = line }
            held.open()
            release.wait()
            lock.unlock()
        }
        #expect(held.wait())
        let waitedAt = Mutex<UInt>(0)
        expectFinishes(timeout: .seconds(10)) {
            let line: UInt = #line; _ = condition.wait(on: lock, timeout: .seconds(60))
            waitedAt.withLock { $0 = line }
        }
        release.open()
        #expect(holder.join())
        let violations = log.all
        #expect(violations.count == 1)
        #expect(violations.first?.kind == .conditionWaitWithoutLock)
        #expect(violations.first?.site == here(waitedAt.withLock { $0 }))
        #expect(violations.first?.otherSite == here(lockedAt.withLock { $0 }))
    }

    @Test("a lock-order inversion on one thread is reported with both call sites", arguments: Self.wrapped)
    func lockOrderInversionOneThread(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        let a = provider.makeLock(.plain)
        let b = provider.makeLock(.plain)
        let lines = Mutex<[String: UInt]>([:])
        expectFinishes {
            let aFirst: UInt = #line; a.lock()
            let bSecond: UInt = #line; b.lock()
            b.unlock()
            a.unlock()
            let bFirst: UInt = #line; b.lock()
            let aSecond: UInt = #line; a.lock()
            a.unlock()
            b.unlock()
            lines.withLock { $0 = ["aFirst": aFirst, "bSecond": bSecond, "bFirst": bFirst, "aSecond": aSecond] }
        }
        let line = lines.withLock { $0 }
        let violations = log.all
        #expect(violations.count == 1)
        let violation = violations.first
        #expect(violation?.kind == .lockOrderInversion)
        // Where the inverted order happened, and where the opposite order was seen.
        #expect(violation?.site == here(line["aSecond"] ?? 0))
        #expect(violation?.otherSite == here(line["bSecond"] ?? 0))
        // The message names all four takes.
        for key in ["aFirst", "bSecond", "bFirst", "aSecond"] {
            #expect(violation?.message.contains("\(here(line[key] ?? 0))") == true, "message lacks \(key)")
        }
    }

    @Test("a lock-order inversion between two threads is reported on the second")
    func lockOrderInversionTwoThreads() {
        let log = ViolationLog()
        let provider = debugProvider(log)
        let a = provider.makeLock(.plain)
        let b = provider.makeLock(.recursive)
        let firstLines = Mutex<(a: UInt, b: UInt)>((0, 0))
        expectFinishes {
            let aLine: UInt = #line; a.lock()
            let bLine: UInt = #line; b.lock()
            b.unlock()
            a.unlock()
            firstLines.withLock { $0 = (aLine, bLine) }
        }
        #expect(log.all.isEmpty, "one order alone is not a violation")
        let secondLines = Mutex<(b: UInt, a: UInt)>((0, 0))
        expectFinishes {
            let bLine: UInt = #line; b.lock()
            let aLine: UInt = #line; a.lock()
            a.unlock()
            b.unlock()
            secondLines.withLock { $0 = (bLine, aLine) }
        }
        let violations = log.all
        #expect(violations.count == 1)
        #expect(violations.first?.kind == .lockOrderInversion)
        #expect(violations.first?.site == here(secondLines.withLock { $0.a }))
        #expect(violations.first?.otherSite == here(firstLines.withLock { $0.b }))
    }

    @Test("the same order taken again and again is not an inversion, across three locks too")
    func consistentOrderIsClean() {
        let log = ViolationLog()
        let provider = debugProvider(log)
        let a = provider.makeLock(.plain)
        let b = provider.makeLock(.plain)
        let c = provider.makeLock(.recursive)
        let workers = (0..<2).map { _ in
            TestThread {
                for _ in 0..<200 {
                    a.lock()
                    b.lock()
                    c.lock()
                    c.lock()
                    c.unlock()
                    c.unlock()
                    b.unlock()
                    a.unlock()
                    a.withLock { c.withLock {} }
                    b.withLock { c.withLock {} }
                }
            }
        }
        for worker in workers { #expect(worker.join()) }
        #expect(log.all.isEmpty)
    }

    @Test("correct use of locks, read/write locks and conditions reports nothing", arguments: Self.wrapped)
    func correctUseIsClean(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        let lock = provider.makeLock(.plain)
        let recursive = provider.makeLock(.recursive)
        let rwlock = provider.makeReadWriteLock()
        let condition = provider.makeCondition()
        let state = Unguarded((produced: 0, consumed: 0))
        let rounds = 200
        let consumer = TestThread {
            for _ in 0..<rounds {
                lock.lock()
                while state.value.produced == state.value.consumed {
                    _ = condition.wait(on: lock, timeout: .seconds(10))
                }
                state.value.consumed += 1
                condition.signal()
                lock.unlock()
            }
        }
        let producer = TestThread {
            for _ in 0..<rounds {
                lock.lock()
                while state.value.produced != state.value.consumed {
                    condition.wait(on: lock)
                }
                state.value.produced += 1
                condition.signal()
                lock.unlock()
                recursive.withLock { recursive.withLock { rwlock.withReadLock { rwlock.withReadLock {} } } }
                rwlock.withWriteLock {}
                if recursive.tryLock() { recursive.unlock() }
            }
        }
        #expect(producer.join(timeout: .seconds(30)))
        #expect(consumer.join(timeout: .seconds(30)))
        #expect(state.value.consumed == rounds)
        #expect(log.all.isEmpty, "\(log.all)")
    }

    @Test("the debug read/write lock reports an unlock it does not hold and a write take over a held side")
    func readWriteLockViolations() {
        let log = ViolationLog()
        let rwlock = debugProvider(log).makeReadWriteLock()
        let lines = Mutex<[UInt]>([])
        expectFinishes("a reported read/write misuse deadlocked") {
            let foreign: UInt = #line; rwlock.unlock(at: CallSite())
            rwlock.readLock(at: CallSite())
            let writeOverRead: UInt = #line; rwlock.writeLock(at: CallSite())
            rwlock.unlock(at: CallSite())
            let writeLine: UInt = #line; rwlock.writeLock(at: CallSite())
            let writeOverWrite: UInt = #line; rwlock.writeLock(at: CallSite())
            rwlock.unlock(at: CallSite())
            lines.withLock { $0 = [foreign, writeOverRead, writeLine, writeOverWrite] }
        }
        let line = lines.withLock { $0 }
        let violations = log.all
        #expect(violations.map(\.kind) == [.unlockByNonHolder, .recursionOnNonRecursiveLock, .recursionOnNonRecursiveLock])
        if violations.count == 3, line.count == 4 {
            #expect(violations[0].site == here(line[0]))
            #expect(violations[1].site == here(line[1]))
            #expect(violations[2].site == here(line[3]))
            #expect(violations[2].otherSite == here(line[2]))
        }
        // Every side was given back.
        #expect(rwlock.tryWriteLock(at: CallSite()))
        rwlock.unlock(at: CallSite())
    }

    @Test("the debug provider keeps excluding after violations")
    func exclusionSurvivesViolations() {
        let log = ViolationLog()
        let lock = debugProvider(log).makeLock(.plain)
        lock.unlock()
        #expect(log.all.count == 1)
        let counter = Unguarded(0)
        let workers = (0..<3).map { _ in
            TestThread {
                for _ in 0..<5_000 { lock.withLock { counter.value += 1 } }
            }
        }
        for worker in workers { #expect(worker.join()) }
        #expect(counter.value == 15_000)
        #expect(log.all.count == 1)
    }
}
