// Change callbacks (evbuffer_add_cb, evbuffer_remove_cb_entry,
// evbuffer_cb_set_flags, evbuffer_defer_callbacks) and their merging.
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

/// The changes a callback saw, in order, each as
/// [originalLength, added, removed].
final class EBChangeLog: @unchecked Sendable {
    // `items` is guarded by `lock`.
    private let lock = PthreadMutexLock()
    private var items: [[Int]] = []
    init() {}
    func append(_ change: EventBuffer.Change) {
        lock.withLock { items.append([change.originalLength, change.added, change.removed]) }
    }
    var all: [[Int]] { lock.withLock { items } }
    func take() -> [[Int]] {
        lock.withLock {
            defer { items = [] }
            return items
        }
    }
}

@Suite struct EventBufferCallbackTests {
    private func change(_ original: Int, added: Int = 0, removed: Int = 0) -> [Int] {
        [original, added, removed]
    }

    private func logging(_ buffer: EventBuffer) -> EBChangeLog {
        let log = EBChangeLog()
        buffer.addCallback { _, change in log.append(change) }
        return log
    }

    @Test func everyOperationReportsWhatItAddedAndRemoved() throws {
        let buffer = EventBuffer()
        let log = logging(buffer)
        try buffer.add("0123456789")
        #expect(log.take() == [change(0, added: 10)])
        try buffer.prepend(Array("ab".utf8))
        #expect(log.take() == [change(10, added: 2)])
        try buffer.drain(3)
        #expect(log.take() == [change(12, removed: 3)])
        _ = try buffer.remove(upTo: 4)
        #expect(log.take() == [change(9, removed: 4)])
        var target = [UInt8](repeating: 0, count: 2)
        _ = try target.withUnsafeMutableBytes { try buffer.remove(into: $0) }
        #expect(log.take() == [change(5, removed: 2)])
        try buffer.add("\nrest")
        _ = log.take()
        #expect(try buffer.readLineString(.lf) == "789")
        #expect(log.take() == [change(8, removed: 4)])
        let space = try buffer.reserve(6)
        Array("commit".utf8).withUnsafeBytes { space[0].copyMemory(from: $0) }
        #expect(log.all.isEmpty, "reserving adds nothing")
        try buffer.commit(6)
        #expect(log.take() == [change(4, added: 6)])
        let memory = EBFixture.LentMemory(Array("ref".utf8))
        try buffer.add(reference: memory.base, count: 3)
        #expect(log.take() == [change(10, added: 3)])
        try buffer.drain(1_000)
        #expect(log.take() == [change(13, removed: 13)])
    }

    @Test func movesReportOnBothBuffers() throws {
        let source = EventBuffer()
        let destination = EventBuffer()
        try source.add("abcdef")
        try destination.add("xy")
        let sourceLog = logging(source)
        let destinationLog = logging(destination)
        try source.move(upTo: 4, into: destination)
        #expect(sourceLog.take() == [change(6, removed: 4)])
        #expect(destinationLog.take() == [change(2, added: 4)])
        try destination.add(buffer: source)
        #expect(sourceLog.take() == [change(2, removed: 2)])
        #expect(destinationLog.take() == [change(6, added: 2)])
        try source.add("12")
        _ = sourceLog.take()
        try destination.prepend(buffer: source)
        #expect(sourceLog.take() == [change(2, removed: 2)])
        #expect(destinationLog.take() == [change(8, added: 2)])
        let referring = EventBuffer()
        let referringLog = logging(referring)
        try referring.add(bufferReference: destination)
        #expect(referringLog.take() == [change(0, added: 10)])
        #expect(destinationLog.all.isEmpty, "the referenced buffer is unchanged")
    }

    @Test func ioReportsTheBytesTransferred() throws {
        let pair = SocketPair()
        let buffer = EventBuffer()
        let log = logging(buffer)
        pair.send("hello")
        #expect(try buffer.read(from: pair.left) == .transferred(5))
        #expect(log.take() == [change(0, added: 5)])
        #expect(try buffer.read(from: pair.left) == .wouldBlock)
        #expect(log.all.isEmpty)
        #expect(try buffer.write(to: pair.left, maxBytes: 2) == .transferred(2))
        #expect(log.take() == [change(5, removed: 2)])
    }

    @Test func operationsThatChangeNothingReportNothing() throws {
        let buffer = EventBuffer()
        let log = logging(buffer)
        try buffer.add("")
        try buffer.add([UInt8]())
        try buffer.drain(0)
        try buffer.drain(5)
        _ = try buffer.remove(upTo: 3)
        _ = try buffer.reserve(10)
        try buffer.commit(0)
        try buffer.move(upTo: 5, into: EventBuffer())
        try buffer.add(buffer: EventBuffer())
        #expect(try buffer.readLine(.lf) == nil)
        try buffer.add("abc")
        _ = try buffer.copyOut(count: 3)
        _ = try buffer.peek()
        _ = try buffer.pullUp()
        _ = buffer.search(Array("b".utf8))
        #expect(log.all == [change(0, added: 3)])
    }

    @Test func theCallbackGetsTheBufferAndMayReadIt() throws {
        let buffer = EventBuffer()
        let seen = Box<Int>()
        let same = AtomicFlag()
        buffer.addCallback { changed, _ in
            same.value = changed === buffer
            seen.value = changed.count
        }
        try buffer.add("four")
        #expect(same.value)
        #expect(seen.value == 4)
    }

    @Test func severalCallbacksAllHearEachChange() throws {
        let buffer = EventBuffer()
        let first = logging(buffer)
        let second = logging(buffer)
        try buffer.add("x")
        #expect(first.all == [change(0, added: 1)])
        #expect(second.all == [change(0, added: 1)])
    }

    @Test func aRemovedCallbackIsNotCalledAgain() throws {
        let buffer = EventBuffer()
        let removedLog = EBChangeLog()
        let id = buffer.addCallback { _, change in removedLog.append(change) }
        let keptLog = logging(buffer)
        try buffer.add("a")
        #expect(buffer.removeCallback(id))
        #expect(!buffer.removeCallback(id), "already removed")
        try buffer.add("b")
        #expect(removedLog.all == [change(0, added: 1)])
        #expect(keptLog.all == [change(0, added: 1), change(1, added: 1)])
    }

    @Test func aDisabledCallbackMissesChangesUntilEnabled() throws {
        let buffer = EventBuffer()
        let log = EBChangeLog()
        let id = buffer.addCallback { _, change in log.append(change) }
        buffer.setCallback(id, enabled: false)
        try buffer.add("ab")
        try buffer.drain(1)
        #expect(log.all.isEmpty)
        buffer.setCallback(id, enabled: true)
        try buffer.add("c")
        #expect(log.all == [change(1, added: 1)], "changes made while disabled are not replayed")
    }

    @Test func suspendedCallbacksGetOneMergedReport() throws {
        let buffer = EventBuffer()
        try buffer.add("12345")
        let log = logging(buffer)
        buffer.suspendCallbacks()
        try buffer.add("678")
        try buffer.drain(2)
        try buffer.add("9")
        _ = try buffer.remove(upTo: 1)
        #expect(log.all.isEmpty)
        buffer.resumeCallbacks()
        #expect(log.take() == [change(5, added: 4, removed: 3)])
        // Resuming again with nothing pending reports nothing.
        buffer.resumeCallbacks()
        #expect(log.all.isEmpty)
        // Suspensions nest.
        buffer.suspendCallbacks()
        buffer.suspendCallbacks()
        try buffer.add("x")
        buffer.resumeCallbacks()
        #expect(log.all.isEmpty)
        buffer.resumeCallbacks()
        #expect(log.take() == [change(6, added: 1)])
        // Back to one report per change.
        try buffer.add("y")
        try buffer.add("z")
        #expect(log.take() == [change(7, added: 1), change(8, added: 1)])
    }

    @Test func deferredCallbacksRunOnlyFromTheLoopMerged() throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: NoLockProvider()))
        let buffer = EventBuffer()
        try buffer.deferCallbacks(to: base)
        let inLoop = AtomicFlag()
        let outsideLoop = AtomicFlag()
        let log = EBChangeLog()
        buffer.addCallback { _, change in
            if !inLoop.value { outsideLoop.value = true }
            log.append(change)
        }
        try buffer.add("abc")
        try buffer.add("defg")
        try buffer.drain(2)
        #expect(log.all.isEmpty, "nothing runs inside the calls")
        inLoop.value = true
        try base.loop(.nonBlocking)
        inLoop.value = false
        #expect(log.take() == [change(0, added: 7, removed: 2)])
        // A second round is reported on its own.
        try buffer.add("h")
        #expect(log.all.isEmpty)
        inLoop.value = true
        try base.loop(.nonBlocking)
        inLoop.value = false
        #expect(log.take() == [change(5, added: 1)])
        // With nothing changed, the loop reports nothing.
        try base.loop(.nonBlocking)
        #expect(log.all.isEmpty)
        #expect(!outsideLoop.value)
        try base.shutdown()
    }

    @Test func aBufferWithDeferredCallbacksCanBeFreedBeforeTheLoopRuns() throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: NoLockProvider()))
        let log = EBChangeLog()
        do {
            let buffer = EventBuffer()
            try buffer.deferCallbacks(to: base)
            buffer.addCallback { _, change in log.append(change) }
            try buffer.add("gone")
        }
        try base.loop(.nonBlocking)
        #expect(log.all.isEmpty, "a freed buffer's callbacks do not run (libevent cancels them)")
        try base.shutdown()
    }
}
