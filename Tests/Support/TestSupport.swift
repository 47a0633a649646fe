// Helpers shared by every test target: threads that cannot hang a test,
// counters and boxes safe across threads, socket pairs.
import EventLocking
import Foundation
import Glibc
import Synchronization
import Testing

/// A one-shot event a thread can wait for with a deadline.
public final class Latch: @unchecked Sendable {
    // `isOpen` is guarded by `condition`.
    private let condition = NSCondition()
    private var isOpen = false

    public init() {}

    public func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until opened; `false` if `timeout` passed first.
    @discardableResult
    public func wait(timeout: Duration = .seconds(10)) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while !isOpen {
            if !condition.wait(until: deadline) { return isOpen }
        }
        return true
    }

    public var isOpenNow: Bool {
        condition.lock()
        defer { condition.unlock() }
        return isOpen
    }
}

/// A thread started for a test; `join` waits with a deadline so a stuck
/// thread fails the test instead of hanging it.
public final class TestThread: Sendable {
    private let finished = Latch()

    public init(_ body: @escaping @Sendable () -> Void) {
        let finished = self.finished
        let thread = Thread {
            body()
            finished.open()
        }
        thread.start()
    }

    /// `true` once the body has returned; `false`, recorded as an issue, if
    /// `timeout` passed first: a stuck thread never passes silently.
    @discardableResult
    public func join(
        timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        if finished.wait(timeout: timeout) { return true }
        Issue.record("a test thread did not finish within \(timeout)", sourceLocation: sourceLocation)
        return false
    }

    /// Whether the body returns within `timeout`, without recording an issue.
    public func finishes(within timeout: Duration) -> Bool { finished.wait(timeout: timeout) }

    public var hasFinished: Bool { finished.isOpenNow }
}

/// Runs `body` on a fresh thread and waits for it; `false` if it did not
/// finish within `timeout` (a deadlock), so the test fails instead of hanging.
public func runOnThread(timeout: Duration = .seconds(20), _ body: @escaping @Sendable () -> Void) -> Bool {
    TestThread(body).finishes(within: timeout)
}

/// Polls `condition` every millisecond until it holds or `timeout` passes.
public func eventually(timeout: Duration = .seconds(10), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(1_000)
    }
    return condition()
}

public func pause(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    usleep(UInt32(seconds) * 1_000_000 + UInt32(attoseconds / 1_000_000_000_000))
}

/// Monotonic time since an arbitrary start.
public func now() -> Duration {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
}

extension Duration {
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// A Boolean shared between threads.
public final class AtomicFlag: Sendable {
    private let storage: Atomic<Bool>
    public init(_ value: Bool = false) { storage = Atomic(value) }
    public var value: Bool {
        get { storage.load(ordering: .sequentiallyConsistent) }
        set { storage.store(newValue, ordering: .sequentiallyConsistent) }
    }
}

/// A counter shared between threads.
public final class AtomicCounter: Sendable {
    private let storage = Atomic<Int>(0)
    public init() {}
    public func increment() { storage.add(1, ordering: .sequentiallyConsistent) }
    public var value: Int { storage.load(ordering: .sequentiallyConsistent) }
}

/// A counter that can be waited on.
public final class Counter: @unchecked Sendable {
    // `count` is guarded by `lock`.
    private let lock = PthreadMutexLock()
    private let changed = PthreadCondition()
    private var count = 0

    public init() {}

    public func increment(by amount: Int = 1) {
        lock.withLock { count += amount }
        changed.broadcast()
    }

    public var value: Int { lock.withLock { count } }

    /// Waits until the count reaches `target` or `timeout` passes; returns the count.
    @discardableResult
    public func wait(for target: Int, timeout: Duration = .seconds(10)) -> Int {
        let deadline = now() + timeout
        return lock.withLock {
            while count < target {
                let left = deadline - now()
                if left <= .zero { break }
                _ = changed.wait(on: lock, timeout: left)
            }
            return count
        }
    }
}

/// An ordered record of strings appended from any thread.
public final class Log: @unchecked Sendable {
    // `items` is guarded by `lock`.
    private let lock = PthreadMutexLock()
    private var items: [String] = []
    public init() {}
    public func append(_ item: String) { lock.withLock { items.append(item) } }
    public var entries: [String] { lock.withLock { items } }
}

/// A value read and written from any thread.
public final class Box<T: Sendable>: @unchecked Sendable {
    // `stored` is guarded by `lock`.
    private let lock = PthreadMutexLock()
    private var stored: T?
    public init(_ value: T? = nil) { stored = value }
    public var value: T? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// A value guarded by a pthread mutex (ThreadSanitizer understands pthread
/// locks; it has misreported `Synchronization.Mutex` here).
public final class Guarded<Value>: @unchecked Sendable {
    // `value` is guarded by `lock`.
    private let lock = PthreadMutexLock()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    public func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Collects the violations a debug lock provider reports.
public final class ViolationLog: @unchecked Sendable {
    // `items` is guarded by `lock`.
    private let lock = PthreadMutexLock()
    private var items: [LockViolation] = []
    public init() {}
    public var record: @Sendable (LockViolation) -> Void { { [self] violation in append(violation) } }
    public func append(_ violation: LockViolation) { lock.withLock { items.append(violation) } }
    public var all: [LockViolation] { lock.withLock { items } }
}

/// A connected pair of non-blocking UNIX stream sockets, closed on deinit.
public final class SocketPair: @unchecked Sendable {
    // `left` and `right` are immutable; `rightOpen` is touched by the test thread only.
    public let left: Int32
    public let right: Int32
    private var rightOpen = true

    public init() {
        var fds: [Int32] = [-1, -1]
        let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
        precondition(rc == 0, "socketpair: \(String(cString: strerror(errno)))")
        left = fds[0]
        right = fds[1]
    }

    deinit {
        close(left)
        if rightOpen { close(right) }
    }

    public func closeRight() {
        guard rightOpen else { return }
        rightOpen = false
        close(right)
    }

    /// Writes `text` to `fd` (default: right, so left becomes readable).
    public func send(_ text: String = "x", to fd: Int32? = nil) {
        send(Array(text.utf8), to: fd)
    }

    /// Writes `count` bytes to `fd` (default: right).
    public func send(bytes count: Int, to fd: Int32? = nil) {
        send([UInt8](repeating: 0x78, count: count), to: fd)
    }

    private func send(_ bytes: [UInt8], to fd: Int32?) {
        let written = bytes.withUnsafeBytes { write(fd ?? right, $0.baseAddress, $0.count) }
        precondition(written == bytes.count, "short write on a test socket")
    }

    /// Reads everything waiting on `fd` (default: left); returns the byte
    /// count (0 at end of file or when nothing waits).
    @discardableResult
    public func drain(_ fd: Int32? = nil) -> Int {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd ?? left, $0.baseAddress, $0.count) }
            if n <= 0 { return total }
            total += n
        }
    }

    /// Writes to `fd` (default: left) until the kernel refuses more; returns the byte count.
    @discardableResult
    public func fill(_ fd: Int32? = nil) -> Int {
        let chunk = [UInt8](repeating: 0x79, count: 65536)
        var total = 0
        while true {
            let n = chunk.withUnsafeBytes { write(fd ?? left, $0.baseAddress, $0.count) }
            if n <= 0 { return total }
            total += n
        }
    }
}

/// A command that exited non-zero.
public struct ShellError: Error, CustomStringConvertible {
    public let command: String
    public let status: Int32
    public let output: String
    public init(command: String, status: Int32, output: String) {
        self.command = command
        self.status = status
        self.output = output
    }
    public var description: String { "\(command) exited \(status): \(output)" }
}

public enum Shell {
    /// Runs a command to the end; throws on a non-zero exit. Returns stdout + stderr.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], in directory: String? = nil, input: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw ShellError(command: ([executable] + arguments).joined(separator: " "), status: process.terminationStatus, output: text)
        }
        return text
    }
}

/// A child process (openssl s_server or s_client) whose output is collected
/// and which is killed at the end of the test if still running.
public final class Child: @unchecked Sendable {
    // `collected` is guarded by `lock`; the rest is set once in init.
    private let process = Process()
    private let stdin = Pipe()
    private let lock = NSLock()
    private var collected = Data()
    private let done = Latch()

    public init(_ executable: String, _ arguments: [String], in directory: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = stdin
        let reader = output.fileHandleForReading
        try process.run()
        let done = self.done
        Thread.detachNewThread { [self] in
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                lock.lock()
                collected.append(chunk)
                lock.unlock()
            }
            done.open()
        }
    }

    public func send(_ text: String) { stdin.fileHandleForWriting.write(Data(text.utf8)) }
    public func closeInput() { try? stdin.fileHandleForWriting.close() }

    public var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: collected, as: UTF8.self)
    }

    /// Waits until the output contains `text`.
    public func waitFor(_ text: String, timeout: Duration = .seconds(5)) -> Bool {
        eventually(timeout: timeout) { output.contains(text) }
    }

    /// Waits for the process to exit (its output fully read); kills it after `timeout`.
    @discardableResult
    public func finish(timeout: Duration = .seconds(5)) -> Int32 {
        if !done.wait(timeout: timeout) { kill() }
        done.wait(timeout: .seconds(2))
        process.waitUntilExit()
        return process.terminationStatus
    }

    public func kill() {
        let pid = process.processIdentifier
        if pid > 0 && process.isRunning { _ = Glibc.kill(pid, SIGKILL) }
    }

    deinit { kill() }
}


/// A TCP port on 127.0.0.1 the kernel just handed out and nothing holds now
/// (bound to port 0, read back, closed): for a child process to listen on,
/// or for a connection that must be refused.
public func freeLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 ? getsockname(fd, $0, &length) : -1 }
    }
    guard rc == 0 else { throw ShellError(command: "bind 127.0.0.1:0", status: errno, output: "") }
    return UInt16(bigEndian: address.sin_port)
}

/// A blocking TCP connection to 127.0.0.1:`port`; the error names the call.
public func connectLoopback(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
        let error = errno
        close(fd)
        throw ShellError(command: "connect 127.0.0.1:\(port)", status: error, output: String(cString: strerror(error)))
    }
    return fd
}
