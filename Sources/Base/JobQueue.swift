@_spi(ExperimentalCustomExecutors) import _Concurrency
import Synchronization

/// What a job was enqueued as, so the loop runs it in the right context.
enum JobRole: UInt {
    /// Enqueued on the base's ``EventBaseExecutor`` (an actor's executor).
    case serial = 0
    /// Enqueued on the base's ``EventBaseTaskExecutor`` (a task's preference).
    case task = 1
}

/// Jobs waiting for the loop: a lock-free multi-producer, single-consumer
/// list that allocates nothing. Each job carries its own link in the two
/// words of executor-private storage the runtime gives every job
/// (`ExecutorJob.withUnsafeExecutorPrivateData`, `@_spi` in Swift 6.3):
/// word 0 is the next (older) job's storage, word 1 the job itself with its
/// ``JobRole`` in bit 0 (jobs are heap objects, so that bit is free).
///
/// Producers push with one compare-and-swap; the consumer takes every job at
/// once with one exchange and runs them in push order (FIFO per producer), as
/// ``HandoffStack`` does for posted work. A queue can be closed (at
/// shutdown): pushes then fail and leave the job to the caller.
///
/// This file is the only place that touches a job's private words.
struct JobQueue: ~Copyable {
    /// The newest job's private storage, nil when empty, or `closedMark`.
    private let top = Atomic<UnsafeMutableRawPointer?>(nil)
    /// Never a job's storage (too low an address, and odd).
    private static var closedMark: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: 1).unsafelyUnwrapped }

    init() {}

    enum PushResult {
        /// The queue was empty: the pusher wakes the consumer.
        case first
        case queued
        /// The queue is closed; the job was not taken.
        case closed
    }

    /// Pushes `job`. Sequentially consistent, so a following notify pairs
    /// with the consumer's acknowledgement, as ``HandoffStack/push(_:)``.
    @inline(__always)
    func push(_ job: consuming ExecutorJob, as role: JobRole) -> PushResult {
        let slot = job.withUnsafeExecutorPrivateData { words in
            assert(words.count >= 2 * MemoryLayout<UInt>.stride, "a job's private storage is two words")
            return words.baseAddress.unsafelyUnwrapped
        }
        let word = unsafeBitCast(UnownedJob(job), to: UInt.self) | role.rawValue
        slot.storeBytes(of: word, toByteOffset: MemoryLayout<UInt>.stride, as: UInt.self)
        var expected = top.load(ordering: .relaxed)
        while true {
            if expected == Self.closedMark { return .closed }
            slot.storeBytes(of: expected, as: UnsafeMutableRawPointer?.self)
            let (exchanged, original) = top.compareExchange(
                expected: expected, desired: slot, ordering: .sequentiallyConsistent)
            if exchanged { return original == nil ? .first : .queued }
            expected = original
        }
    }

    /// Whether no job waits (a sequentially consistent look; a closed queue is empty).
    var isEmpty: Bool {
        let current = top.load(ordering: .sequentiallyConsistent)
        return current == nil || current == Self.closedMark
    }

    /// Takes every waiting job and hands each to `body`, oldest first. Jobs
    /// pushed meanwhile (also by `body`) wait for the next drain.
    @inline(__always)
    func drain(_ body: (UnownedJob, JobRole) -> Void) {
        guard !isEmpty, let newest = top.exchange(nil, ordering: .sequentiallyConsistent) else { return }
        // Reverse the chain (newest first) into push order.
        var reversed: UnsafeMutableRawPointer? = nil
        var node = newest
        while true {
            let next = node.load(as: UnsafeMutableRawPointer?.self)
            node.storeBytes(of: reversed, as: UnsafeMutableRawPointer?.self)
            reversed = node
            guard let following = next else { break }
            node = following
        }
        while let slot = reversed {
            // Read everything first: once run, the job may be gone or queued again.
            reversed = slot.load(as: UnsafeMutableRawPointer?.self)
            let word = slot.load(fromByteOffset: MemoryLayout<UInt>.stride, as: UInt.self)
            let role = JobRole(rawValue: word & 1).unsafelyUnwrapped
            body(unsafeBitCast(word & ~1, to: UnownedJob.self), role)
        }
    }

    /// Closes the queue if it is empty; returns false (and leaves it open)
    /// if a job is waiting.
    func closeIfEmpty() -> Bool {
        let (exchanged, original) = top.compareExchange(
            expected: nil, desired: Self.closedMark, ordering: .sequentiallyConsistent)
        return exchanged || original == Self.closedMark
    }
}
