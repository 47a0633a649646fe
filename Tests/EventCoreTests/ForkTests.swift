import CEventShims
import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

/// Reinit after fork (libevent's test_fork): the child reinitializes the
/// inherited base and runs its own loop; the parent keeps receiving its own
/// events. Each case runs in a process of its own, so the fork happens in a
/// process with few threads.
@Suite struct ForkTests {
    @Test(arguments: BackendKind.allCases, ["none", "mutex", "rcu"])
    func theChildReinitializesAndRunsItsLoopWhileTheParentKeepsItsEvents(_ kind: BackendKind, _ locking: String) async {
        let method = kind.rawValue
        await #expect(processExitsWith: .success) { [method = method as String, locking = locking as String] in
            let provider = try! LockProviders.named(locking)
            let base = try! makeBase(BackendKind(rawValue: method)!, provider)
            let parentPair = SocketPair()
            let childPair = SocketPair()
            let parentFired = Counter()
            let parentEvent = try! Event(base: base, fd: parentPair.left, flags: [.read, .persist]) { _, _ in
                parentPair.drain()
                parentFired.increment()
            }
            try! parentEvent.add()
            // Something pending in the parent's loop when it forks.
            let timer = try! Event.timer(base: base) { _, _ in }
            try! timer.add(timeout: .milliseconds(30))

            let pid = se_fork()
            if pid == 0 {
                var status: Int32 = 0
                do {
                    try base.reinitAfterFork()
                    // The parent's descriptor event survived reinit, as in libevent.
                    guard parentEvent.isPending else { _exit(3) }
                    try parentEvent.delete()
                    let childFired = Counter()
                    let childEvent = try Event(base: base, fd: childPair.left, flags: [.read]) { _, _ in
                        childFired.increment()
                    }
                    try childEvent.add(timeout: .seconds(5))
                    // Wakes a loop in this process only.
                    try base.post {}
                    try base.loop()
                    status = childFired.value == 1 ? 0 : 4
                } catch {
                    status = 5
                }
                _exit(status)
            }
            #expect(pid > 0)
            childPair.send()
            var status: Int32 = 0
            #expect(waitpid(pid, &status, 0) == pid)
            let exitCode = (status >> 8) & 0xff
            #expect(status & 0x7f == 0 && exitCode == 0, "child status \(status)")
            parentPair.send()
            try! base.loop([.once])
            #expect(parentFired.value == 1)
            try! parentEvent.delete()
            try! base.loop()
            if parentFired.value != 1 || (status & 0x7f) != 0 || exitCode != 0 { exit(1) }
        }
    }
}
