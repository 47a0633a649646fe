// Buffers shared between threads with enableLocking
// (evbuffer_enable_locking, evbuffer_lock/evbuffer_unlock).
import EventBuffers
import EventLocking
import EventTestSupport
import Glibc
import Synchronization
import Testing

@Suite struct EventBufferThreadTests {
    /// A 16-byte record: writer, sequence number, and a check of both.
    private static func record(writer: Int, sequence: Int) -> [UInt8] {
        let check = UInt32(truncatingIfNeeded: (writer &* 2_654_435_761) ^ (sequence &* 40_503))
        var bytes: [UInt8] = []
        for value in [UInt32(writer), UInt32(sequence), check, ~check] {
            withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
        }
        return bytes
    }

    private static func decode(_ bytes: ArraySlice<UInt8>) -> (writer: Int, sequence: Int)? {
        let words = stride(from: bytes.startIndex, to: bytes.endIndex, by: 4).map { start in
            bytes[start..<start + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        }
        let (writer, sequence) = (Int(words[0]), Int(words[1]))
        guard record(writer: writer, sequence: sequence) == Array(bytes) else { return nil }
        return (writer, sequence)
    }

    private func lockedBuffer() -> EventBuffer {
        let buffer = EventBuffer()
        buffer.enableLocking(PthreadMutexLock(kind: .recursive))
        return buffer
    }

    /// Writers add records while readers remove whole records: every record
    /// arrives exactly once, intact, and each writer's records in order.
    @Test func concurrentAddsAndRemovesAccountForEveryByte() throws {
        let buffer = lockedBuffer()
        let writers = 3
        let perWriter = 20_000
        let readers = 2
        let added = Counter()
        let callbackBytes = Atomic<Int>(0)
        buffer.addCallback { changed, change in
            // Runs with the buffer's lock held: the recursive lock lets it look.
            _ = changed.count
            callbackBytes.add(change.added, ordering: .relaxed)
        }
        let writersDone = Counter()
        var threads: [TestThread] = []
        for writer in 0..<writers {
            threads.append(
                TestThread {
                    for sequence in 0..<perWriter {
                        let bytes = Self.record(writer: writer, sequence: sequence)
                        // Alternate the ways in.
                        if sequence % 3 == 0 {
                            try? bytes.withUnsafeBytes { try buffer.add($0) }
                        } else if sequence % 3 == 1 {
                            try? buffer.add(bytes)
                        } else {
                            let chunk = EventBuffer()
                            try? chunk.add(bytes)
                            try? buffer.add(buffer: chunk)
                        }
                        added.increment(by: 16)
                    }
                    writersDone.increment()
                })
        }
        let seen = (0..<readers).map { _ in Box<[Int]>() }
        let corrupt = AtomicCounter()
        let reader = { @Sendable (index: Int) in
            var random = EBFixture.Random(seed: UInt64(index + 1))
            var sequences: [Int] = []
            let deadline = now() + .seconds(60)
            while now() < deadline {
                let finished = writersDone.value == writers
                let wanted = 16 * random.next(1...40)
                let bytes: [UInt8]
                if random.next(0...1) == 0 {
                    bytes = (try? buffer.remove(upTo: wanted)) ?? []
                } else {
                    let sink = EventBuffer()
                    _ = try? buffer.move(upTo: wanted, into: sink)
                    bytes = (try? sink.remove(upTo: sink.count)) ?? []
                }
                if bytes.count % 16 != 0 { corrupt.increment() }
                for start in stride(from: 0, to: bytes.count - 15, by: 16) {
                    guard let (writer, sequence) = Self.decode(bytes[start..<start + 16]) else {
                        corrupt.increment()
                        continue
                    }
                    sequences.append(writer * 1_000_000 + sequence)
                }
                if bytes.isEmpty {
                    if finished { break }
                    sched_yield()
                }
            }
            seen[index].value = sequences
        }
        let readerThreads = (0..<readers).map { index in TestThread { reader(index) } }
        for thread in threads + readerThreads { thread.join(timeout: .seconds(90)) }
        #expect(corrupt.value == 0)
        #expect(buffer.isEmpty)
        #expect(added.value == writers * perWriter * 16)
        #expect(callbackBytes.load(ordering: .relaxed) == writers * perWriter * 16)
        let perReader = seen.compactMap(\.value)
        #expect(perReader.count == readers)
        // Within one reader, each writer's sequence numbers only grow.
        for sequences in perReader {
            var last = [Int](repeating: -1, count: writers)
            for value in sequences {
                let (writer, sequence) = (value / 1_000_000, value % 1_000_000)
                #expect(sequence > last[writer])
                last[writer] = sequence
            }
        }
        let all = perReader.flatMap { $0 }.sorted()
        let expected = (0..<writers).flatMap { writer in (0..<perWriter).map { writer * 1_000_000 + $0 } }
        #expect(all.count == expected.count)
        #expect(all.elementsEqual(expected), "the records seen are not exactly the records written")
    }

    /// withLock makes several calls one step for every other thread.
    @Test func withLockGroupsOperations() throws {
        let buffer = lockedBuffer()
        let rounds = 20_000
        let writer = TestThread {
            for _ in 0..<rounds {
                buffer.withLock {
                    try? buffer.add("a")
                    try? buffer.add("b")
                }
            }
        }
        let torn = AtomicCounter()
        var taken = 0
        let deadline = now() + .seconds(60)
        while taken < 2 * rounds && now() < deadline {
            let bytes: [UInt8] = buffer.withLock {
                // Between the two, no writer can sneak in.
                if buffer.count % 2 != 0 { torn.increment() }
                let n = buffer.count
                let bytes = (try? buffer.remove(upTo: n)) ?? []
                if bytes.count != n { torn.increment() }
                return bytes
            }
            if bytes.count % 2 != 0 || !stride(from: 0, to: bytes.count, by: 2).allSatisfy({
                bytes[$0] == UInt8(ascii: "a") && bytes[$0 + 1] == UInt8(ascii: "b")
            }) {
                torn.increment()
            }
            taken += bytes.count
            if bytes.isEmpty { sched_yield() }
        }
        writer.join(timeout: .seconds(60))
        #expect(torn.value == 0)
        #expect(taken == 2 * rounds)
    }

    /// Two threads moving bytes between the same two buffers in opposite
    /// directions take the locks in one order: no deadlock, no byte lost.
    @Test func movesInBothDirectionsDoNotDeadlock() throws {
        let a = lockedBuffer()
        let b = lockedBuffer()
        let data = EBFixture.pattern(100_000, seed: 90)
        try a.add(data)
        try b.add(data)
        let stop = AtomicFlag()
        let forward = TestThread {
            while !stop.value {
                _ = try? a.move(upTo: 3_000, into: b)
                try? a.add(buffer: EventBuffer())
            }
        }
        let backward = TestThread {
            while !stop.value {
                _ = try? b.move(upTo: 5_000, into: a)
                _ = try? a.prepend(buffer: EventBuffer())
            }
        }
        pause(.milliseconds(500))
        stop.value = true
        #expect(forward.finishes(within: .seconds(20)), "a thread moving bytes is stuck")
        #expect(backward.finishes(within: .seconds(20)), "a thread moving bytes is stuck")
        #expect(a.count + b.count == 2 * data.count)
    }

    @Test func callbacksOfALockedBufferSeeEveryChangeFromEveryThread() throws {
        let buffer = lockedBuffer()
        let added = Atomic<Int>(0)
        let removed = Atomic<Int>(0)
        let inconsistent = AtomicCounter()
        buffer.addCallback { changed, change in
            // The lock is held: the length is exactly what the change says.
            if changed.count != change.originalLength + change.added - change.removed { inconsistent.increment() }
            added.add(change.added, ordering: .relaxed)
            removed.add(change.removed, ordering: .relaxed)
        }
        let threads = (0..<4).map { index in
            TestThread {
                for round in 0..<5_000 {
                    if (round + index) % 2 == 0 {
                        try? buffer.add(EBFixture.pattern(1 + round % 50, seed: UInt64(round)))
                    } else {
                        try? buffer.drain(1 + round % 60)
                    }
                }
            }
        }
        for thread in threads { thread.join(timeout: .seconds(60)) }
        #expect(inconsistent.value == 0)
        #expect(added.load(ordering: .relaxed) - removed.load(ordering: .relaxed) == buffer.count)
    }
}
