import EventBackends
import EventCore
import EventLocking
import Glibc
import Testing
import EventTestSupport

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
