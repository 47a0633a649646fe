import EventLocking
import Synchronization
import Testing
import EventTestSupport

/// Runs `body` holding `lock`, taking it with bounded tryLock polling so a
/// broken condition that never gives the lock back fails the test instead of
/// hanging it. Returns nil (and records an issue) if the lock stayed busy.
private func locked<T>(_ lock: any EventLock, _ body: () -> T) -> T? {
    guard eventually({ lock.tryLock() }) else {
        Issue.record("the lock stayed held for 10 s")
        return nil
    }
    defer { lock.unlock() }
    return body()
}

@Suite("Condition variables")
struct ConditionTests {
    private struct WaiterState {
        var waiting = 0
        var tokens = 0
        /// Returns from wait(), spurious or not.
        var wakeups = 0
        /// Waiters that took a token and left.
        var woken = 0
    }

    @Test("signal wakes exactly one of several waiters; broadcast wakes the rest", arguments: ProviderCase.exclusive)
    func signalWakesOneBroadcastWakesAll(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        let lock = provider.makeLock(.plain)
        let condition = provider.makeCondition()
        let state = Unguarded(WaiterState())
        let waiters = 3
        let threads = (0..<waiters).map { _ in
            TestThread {
                lock.lock()
                state.value.waiting += 1
                while state.value.tokens == 0 {
                    condition.wait(on: lock)
                    state.value.wakeups += 1
                }
                state.value.tokens -= 1
                state.value.woken += 1
                lock.unlock()
            }
        }
        // Once we hold the lock and see every waiter counted, each of them
        // has released the lock inside wait(): all are asleep on the condition.
        #expect(eventually { locked(lock) { state.value.waiting } == waiters })

        locked(lock) {
            state.value.tokens = 1
            condition.signal()
        }
        #expect(eventually { locked(lock) { state.value.woken } == 1 })
        pause(quietWindow)
        let afterSignal = locked(lock) { state.value }
        #expect(afterSignal?.woken == 1)
        #expect(afterSignal?.wakeups == 1, "signal woke more than one waiter")

        locked(lock) {
            state.value.tokens = waiters - 1
            condition.broadcast()
        }
        #expect(eventually { locked(lock) { state.value.woken } == waiters }, "broadcast did not wake every remaining waiter")
        for thread in threads { #expect(thread.join()) }
        #expect(state.value.wakeups == waiters)
        #expect(log.all.isEmpty)
    }

    @Test("a timed wait that nobody signals returns false after at least the timeout", arguments: ProviderCase.exclusive)
    func timedWaitTimesOut(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        let lock = provider.makeLock(.plain)
        let condition = provider.makeCondition()
        let result = Mutex<(signalled: Bool, elapsed: Duration, heldAfter: Bool)?>(nil)
        let timeout = Duration.milliseconds(80)
        expectFinishes {
            lock.lock()
            let start = ContinuousClock.now
            var signalled = false
            var elapsed = Duration.zero
            // A spurious wake-up may end a wait early; keep waiting out the rest.
            repeat {
                signalled = condition.wait(on: lock, timeout: timeout - elapsed)
                elapsed = ContinuousClock.now - start
            } while signalled && elapsed < timeout
            // The lock is held again on return: another thread cannot take it.
            let outcome = (signalled, elapsed)
            let probe = TestThread { result.withLock { $0 = (outcome.0, outcome.1, !lock.tryLock()) } }
            _ = probe.join()
            lock.unlock()
        }
        let outcome = result.withLock { $0 }
        #expect(outcome?.signalled == false)
        #expect((outcome?.elapsed ?? .zero) >= timeout)
        #expect((outcome?.elapsed ?? .seconds(100)) < .seconds(5))
        #expect(outcome?.heldAfter == true, "a timed-out wait must return holding the lock")
        #expect(log.all.isEmpty)
    }

    @Test("a zero or negative timeout returns false at once", arguments: ProviderCase.exclusive)
    func nonPositiveTimeout(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        let lock = provider.makeLock(.plain)
        let condition = provider.makeCondition()
        let results = Mutex<[Bool]>([])
        let start = ContinuousClock.now
        expectFinishes {
            lock.lock()
            for timeout in [Duration.zero, .milliseconds(-5)] {
                let signalled = condition.wait(on: lock, timeout: timeout)
                results.withLock { $0.append(signalled) }
            }
            lock.unlock()
        }
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(results.withLock { $0 } == [false, false])
        #expect(log.all.isEmpty)
    }

    @Test("a timed wait that is signalled returns true well before its timeout", arguments: ProviderCase.exclusive)
    func timedWaitSignalled(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        let lock = provider.makeLock(.plain)
        let condition = provider.makeCondition()
        let state = Unguarded((waiting: false, go: false, signalled: false, elapsed: Duration.zero))
        let waiter = TestThread {
            lock.lock()
            state.value.waiting = true
            let start = ContinuousClock.now
            var signalled = true
            while !state.value.go && signalled {
                signalled = condition.wait(on: lock, timeout: .seconds(30))
            }
            state.value.signalled = signalled
            state.value.elapsed = ContinuousClock.now - start
            lock.unlock()
        }
        #expect(eventually { locked(lock) { state.value.waiting } == true })
        locked(lock) {
            state.value.go = true
            condition.signal()
        }
        #expect(waiter.join(timeout: .seconds(10)), "the signalled waiter did not wake")
        #expect(state.value.signalled)
        #expect(state.value.elapsed < .seconds(10))
        #expect(log.all.isEmpty)
    }

    @Test("a condition waits on a recursive lock held once", arguments: ProviderCase.exclusive)
    func waitOnRecursiveLock(_ providerCase: ProviderCase) {
        let log = ViolationLog()
        let provider = providerCase.make(reportingTo: log)
        let lock = provider.makeLock(.recursive)
        let condition = provider.makeCondition()
        let state = Unguarded((waiting: false, go: false))
        let waiter = TestThread {
            lock.lock()
            state.value.waiting = true
            while !state.value.go { condition.wait(on: lock) }
            lock.unlock()
        }
        #expect(eventually { locked(lock) { state.value.waiting } == true })
        locked(lock) {
            state.value.go = true
            condition.broadcast()
        }
        #expect(waiter.join(timeout: .seconds(10)))
        #expect(lock.tryLock())
        lock.unlock()
        #expect(log.all.isEmpty)
    }
}
