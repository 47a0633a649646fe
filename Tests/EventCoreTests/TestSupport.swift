import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing

/// A lock provider a threading test runs under.
struct Provider: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable () -> any LockProvider

    var testDescription: String { name }

    /// Providers of shared bases.
    static let shared: [Provider] = [
        Provider(name: "mutex") { MutexLockProvider() },
        Provider(name: "rcu") { RCULockProvider() },
        Provider(name: "debug") { DebugLockProvider(wrapping: MutexLockProvider()) },
        Provider(name: "debug-rcu") { DebugLockProvider(wrapping: RCULockProvider()) },
    ]

    /// Every provider, the owned base's `none` included.
    static let all: [Provider] = [Provider(name: "none") { NoLockProvider() }] + shared
}

func makeBase(
    _ kind: BackendKind, _ provider: any LockProvider = NoLockProvider(),
    configure: (inout EventBase.Configuration) -> Void = { _ in }
) throws -> EventBase {
    var configuration = EventBase.Configuration(method: kind, lockProvider: provider)
    configuration.ignoreEnvironment = true
    configure(&configuration)
    return try EventBase(configuration)
}

/// A connected pair of non-blocking UNIX stream sockets, closed on deinit.
final class SocketPair: @unchecked Sendable {
    // Immutable after init.
    let left: Int32
    let right: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
        precondition(rc == 0, "socketpair failed")
        left = fds[0]
        right = fds[1]
    }

    deinit {
        close(left)
        close(right)
    }

    func send(_ text: String = "x", from fd: Int32? = nil) {
        let target = fd ?? right
        let written = text.utf8CString.withUnsafeBufferPointer { write(target, $0.baseAddress, $0.count - 1) }
        precondition(written == text.utf8.count)
    }

    /// Reads and discards what is waiting on `fd` (default: left); returns the byte count.
    @discardableResult
    func drain(_ fd: Int32? = nil) -> Int {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd ?? left, $0.baseAddress, $0.count) }
            if n <= 0 { return total }
            total += n
        }
    }
}

/// A thread-safe counter and log for observing callbacks from tests.
final class Counter: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = PthreadMutexLock()
    private let changed = PthreadCondition()
    private var count = 0

    func increment(by amount: Int = 1) {
        lock.withLock { count += amount }
        changed.broadcast()
    }

    var value: Int { lock.withLock { count } }

    /// Waits until the count reaches `target` or `timeout` passes; returns the count.
    @discardableResult
    func wait(for target: Int, timeout: Duration = .seconds(10)) -> Int {
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

/// An ordered record of strings appended from callbacks.
final class Log: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = PthreadMutexLock()
    private var items: [String] = []
    func append(_ item: String) { lock.withLock { items.append(item) } }
    var entries: [String] { lock.withLock { items } }
}

/// A value set once from any thread.
final class Box<T: Sendable>: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = PthreadMutexLock()
    private var stored: T?
    init(_ value: T? = nil) { stored = value }
    var value: T? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

func now() -> Duration {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
}

/// A joinable pthread running `body`.
final class TestThread: @unchecked Sendable {
    // `thread` is written once in init, read by join on the creating thread.
    private var thread = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ClosureBox(body))
        let rc = pthread_create(&thread, nil, { raw in
            let body = Unmanaged<ClosureBox>.fromOpaque(raw!).takeRetainedValue()
            body.run()
            return nil
        }, box.toOpaque())
        precondition(rc == 0, "pthread_create failed")
    }

    func join() { pthread_join(thread, nil) }
}

private final class ClosureBox: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Runs the loop of `base` on a new thread until it returns.
func runLoopInBackground(
    _ base: EventBase, _ options: EventBase.LoopOptions = [], done: Counter? = nil
) -> TestThread {
    TestThread {
        do {
            try base.loop(options)
        } catch {
            Issue.record("loop failed: \(error)")
        }
        done?.increment()
    }
}

/// Open descriptors of this process, each as "fd -> target".
func openDescriptors() -> Set<String> {
    guard let dir = opendir("/proc/self/fd") else { return [] }
    defer { closedir(dir) }
    var result = Set<String>()
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        guard Int32(name) != nil else { continue }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBufferPointer { raw in
            raw.withMemoryRebound(to: CChar.self) { readlink("/proc/self/fd/\(name)", $0.baseAddress!, 255) }
        }
        result.insert("\(name) -> \(n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : "?")")
    }
    return result
}

/// Waits until `condition` holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) -> Bool {
    let deadline = now() + timeout
    while now() < deadline {
        if condition() { return true }
        var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
        nanosleep(&pause, nil)
    }
    return condition()
}
