import Dispatch
import Glibc
import EventLocking
import Synchronization
import Testing
import EventTestSupport

/// A read-mostly domain under test, made fresh (or the process's URCU domain).
struct DomainCase: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable (ViolationLog) -> any ReadMostlyDomain
    var testDescription: String { name }

    static let all: [DomainCase] = [
        DomainCase(name: "rcu (liburcu memb)") { _ in RCULockProvider().makeReadMostlyDomain() },
        DomainCase(name: "mutex default (LockedReadMostlyDomain)") { _ in MutexLockProvider().makeReadMostlyDomain() },
        DomainCase(name: "LockedReadMostlyDomain over debug locks") { log in
            let debug = DebugLockProvider(wrapping: MutexLockProvider(), onViolation: log.record)
            return LockedReadMostlyDomain(lock: debug.makeReadWriteLock(), guardLock: debug.makeLock(.plain))
        },
    ]
}

@Suite("Read-mostly domains: RCU and its plain-lock emulation")
struct ReadMostlyDomainTests {
    @Test("a reader inside a section keeps a retired object alive until it leaves", arguments: DomainCase.all)
    func readerKeepsRetiredObjectAlive(_ domainCase: DomainCase) {
        let log = ViolationLog()
        let domain = domainCase.make(log)
        let inside = Latch()
        let leave = Latch()
        let reader = TestThread {
            domain.enterReadSection()
            inside.open()
            leave.wait()
            domain.exitReadSection()
        }
        #expect(inside.wait())
        let flag = ReclaimFlag()
        let retired = runOnThread(timeout: .seconds(10)) {
            domain.retire(Tracked(flag))
        }
        #expect(retired, "retire blocked while a reader was inside a section")
        pause(quietWindow)
        #expect(!flag.isSet, "the object was reclaimed while a reader could still see it")
        leave.open()
        #expect(reader.join())
        expectFinishes("barrier did not return") { domain.barrier() }
        #expect(flag.isSet, "the object was not reclaimed after the reader left and barrier returned")
        #expect(log.all.isEmpty)
    }

    @Test("an object retired with no reader inside is reclaimed by barrier()", arguments: DomainCase.all)
    func retireThenBarrier(_ domainCase: DomainCase) {
        let log = ViolationLog()
        let domain = domainCase.make(log)
        let flags = (0..<10).map { _ in ReclaimFlag() }
        expectFinishes {
            for flag in flags { domain.retire(Tracked(flag)) }
            domain.barrier()
        }
        #expect(flags.allSatisfy { $0.isSet })
        #expect(log.all.isEmpty)
    }

    @Test("retire inside the retiring thread's own section neither blocks nor reclaims early", arguments: DomainCase.all)
    func retireInsideOwnSection(_ domainCase: DomainCase) {
        let log = ViolationLog()
        let domain = domainCase.make(log)
        let flag = ReclaimFlag()
        let aliveInside = AtomicFlag(false)
        expectFinishes {
            domain.withReadSection {
                domain.retire(Tracked(flag))
                pause(.milliseconds(20))
                aliveInside.value = !flag.isSet
            }
            domain.barrier()
        }
        #expect(aliveInside.value)
        #expect(flag.isSet)
        #expect(log.all.isEmpty)
    }

    @Test("synchronize returns with no reader, and waits for a reader already inside", arguments: DomainCase.all)
    func synchronizeWaitsForReaders(_ domainCase: DomainCase) {
        let log = ViolationLog()
        let domain = domainCase.make(log)
        expectFinishes(timeout: .seconds(10), "synchronize with no reader did not return") { domain.synchronize() }

        let inside = Latch()
        let leave = Latch()
        let reader = TestThread {
            domain.withReadSection {
                inside.open()
                leave.wait()
            }
        }
        #expect(inside.wait())
        let synchronizer = TestThread { domain.synchronize() }
        #expect(!synchronizer.finishes(within: quietWindow), "synchronize returned while a reader was still inside")
        leave.open()
        #expect(reader.join())
        #expect(synchronizer.join(), "synchronize did not return after the reader left")
        #expect(log.all.isEmpty)
    }

    @Test("a section that starts after synchronize began does not hold it up forever", arguments: DomainCase.all)
    func readersComeAndGo(_ domainCase: DomainCase) {
        let log = ViolationLog()
        let domain = domainCase.make(log)
        let stop = AtomicFlag(false)
        let readers = (0..<2).map { _ in
            TestThread {
                while !stop.value {
                    domain.withReadSection {}
                }
            }
        }
        expectFinishes("synchronize starved by short read-side sections") {
            for _ in 0..<20 { domain.synchronize() }
        }
        stop.value = true
        for reader in readers { #expect(reader.join()) }
        #expect(log.all.isEmpty)
    }

    @Test("readers never see a published version reclaimed while they are inside", arguments: DomainCase.all)
    func publishAndRetireUnderReaders(_ domainCase: DomainCase) {
        let log = ViolationLog()
        let domain = domainCase.make(log)
        let versions = 400
        // Version i's flag is set when version i is reclaimed; the flags
        // outlive the versions, so readers can check them after loading i.
        let flags = (0...versions).map { _ in ReclaimFlag() }
        let published = Atomic<Int>(0)
        let stop = AtomicFlag(false)
        let earlyReclaims = AtomicCounter()
        let reads = AtomicCounter()
        let latest = Unguarded<Tracked?>(nil)
        let readers = (0..<2).map { _ in
            TestThread {
                while !stop.value {
                    domain.withReadSection {
                        let version = published.load(ordering: .sequentiallyConsistent)
                        for _ in 0..<50 {
                            if flags[version].isSet { earlyReclaims.increment() }
                        }
                        reads.increment()
                    }
                }
            }
        }
        let writer = TestThread {
            // Start publishing once the readers are inside the loop, so the
            // run always overlaps them (threads start in any order).
            let start = DispatchTime.now().uptimeNanoseconds
            while reads.value < 2 && DispatchTime.now().uptimeNanoseconds - start < 5_000_000_000 { sched_yield() }
            var current = Tracked(flags[0])
            for version in 1...versions {
                let next = Tracked(flags[version])
                published.store(version, ordering: .sequentiallyConsistent)
                domain.retire(current)
                current = next
                if version % 50 == 0 { domain.synchronize() }
            }
            stop.value = true
            domain.barrier()
            // The last version stays published: readers may still be inside.
            latest.value = current
        }
        #expect(writer.join(timeout: .seconds(60)))
        stop.value = true
        for reader in readers { #expect(reader.join()) }
        #expect(latest.value != nil)
        #expect(earlyReclaims.value == 0)
        #expect(reads.value > 0)
        #expect(flags[0..<versions].allSatisfy { $0.isSet }, "every replaced version is reclaimed after barrier")
        #expect(log.all.isEmpty)
    }

    @Test("URCU: a new thread is registered on its first section, and only inside it is in a section")
    func urcuImplicitRegistration() {
        let domain = URCUDomain.shared
        let observed = Mutex<[Bool]>([])
        expectFinishes {
            let before = domain.isInReadSection
            domain.enterReadSection()
            let during = domain.isInReadSection
            domain.exitReadSection()
            let after = domain.isInReadSection
            observed.withLock { $0 = [before, during, after] }
        }
        #expect(observed.withLock { $0 } == [false, true, false])
    }

    @Test("URCU: explicit registration is idempotent and a thread can unregister and read again")
    func urcuExplicitRegistration() {
        let domain = URCUDomain.shared
        let observed = Mutex<[Bool]>([])
        expectFinishes {
            domain.registerCurrentThread()
            domain.registerCurrentThread()
            domain.withReadSection { observed.withLock { $0.append(domain.isInReadSection) } }
            domain.unregisterCurrentThread()
            observed.withLock { $0.append(domain.isInReadSection) }
            domain.unregisterCurrentThread()
            domain.withReadSection { observed.withLock { $0.append(domain.isInReadSection) } }
        }
        #expect(observed.withLock { $0 } == [true, false, true])
    }

    @Test("URCU: a thread that read and exited does not hold up grace periods")
    func urcuExitedReaderDoesNotBlock() {
        let domain = URCUDomain.shared
        for _ in 0..<8 {
            expectFinishes { domain.withReadSection {} }
        }
        expectFinishes(timeout: .seconds(10)) { domain.synchronize() }
    }

    @Test("URCU: reclamation is counted")
    func urcuReclaimedCount() {
        let domain = URCUDomain.shared
        let before = domain.reclaimedCount
        let flag = ReclaimFlag()
        expectFinishes {
            domain.retire(Tracked(flag))
            domain.barrier()
        }
        #expect(flag.isSet)
        #expect(domain.reclaimedCount >= before + 1)
    }
}
