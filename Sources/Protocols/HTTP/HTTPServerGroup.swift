import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventSSL
import Glibc

/// libevent's maintainers' model for many cores: one owned base and one
/// server per thread, all listening on the same port through SO_REUSEPORT
/// (the kernel spreads connections); no locks anywhere. One call.
public final class HTTPServerGroup: @unchecked Sendable {
    // `bases` and `threads` are written once, in `make`, before it returns.
    public let address: SocketAddress
    private var bases: [EventBase] = []
    private var threads: [pthread_t] = []

    init(address: SocketAddress) { self.address = address }

    /// Waits until every loop has ended (after `stop()`, or a signal handler's `loopExit`).
    public func wait() {
        for thread in threads { pthread_join(thread, nil) }
        threads = []
    }

    /// Ends every loop (from its own thread: the bases are owned) and waits for the threads.
    public func stop() {
        for base in bases { try? base.post { try? base.loopExit() } }
        wait()
    }

    fileprivate func adopt(_ base: EventBase, _ thread: pthread_t) {
        bases.append(base)
        threads.append(thread)
    }
}

extension HTTPServer {
    /// Starts `count` threads, each with its own owned base and server
    /// bound to `address` with SO_REUSEPORT (port 0: the first picks, the
    /// others follow); `configure` sets each server's routes on its thread
    /// before it serves.
    public static func reusePortGroup(
        count: Int, address: SocketAddress, tls: SSLContext? = nil, configuration: Configuration = Configuration(),
        configure: @escaping @Sendable (HTTPServer) -> Void
    ) throws -> HTTPServerGroup {
        var bound = address
        var group: HTTPServerGroup?
        for index in 0..<max(1, count) {
            let started = StartLatch()
            let target = bound
            let thread = try spawn {
                do {
                    let base = try EventBase(.init(method: nil, lockProvider: NoLockProvider()))
                    let server = HTTPServer(base: base, configuration: configuration)
                    configure(server)
                    let address = try server.bind(target, tls: tls, reusePort: true)
                    started.open(.success((base, address)))
                    // Serve until the base's loop is told to exit.
                    _ = try? base.loop(.noExitOnEmpty)
                    server.free()
                    _ = try? base.loop(.nonBlocking)
                } catch {
                    started.open(.failure(error))
                }
            }
            let (base, address) = try started.wait().get()
            if index == 0 {
                bound = address
                group = HTTPServerGroup(address: address)
            }
            group?.adopt(base, thread)
        }
        guard let group else { throw EventError.system(SystemCallError(call: "reusePortGroup", errno: EINVAL)) }
        return group
    }
}

/// A one-shot hand-over of a thread's start-up result.
private final class StartLatch: @unchecked Sendable {
    // `result` is guarded by `mutex`.
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var result: Result<(EventBase, SocketAddress), any Error>?

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    func open(_ value: Result<(EventBase, SocketAddress), any Error>) {
        pthread_mutex_lock(&mutex)
        result = value
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
    }

    func wait() -> Result<(EventBase, SocketAddress), any Error> {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while result == nil { pthread_cond_wait(&condition, &mutex) }
        return result!
    }
}

/// Starts a joinable pthread running `body`.
private func spawn(_ body: @escaping @Sendable () -> Void) throws -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { argument in
        let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    guard rc == 0 else {
        Unmanaged<Box>.fromOpaque(box).release()
        throw EventError.system(SystemCallError(call: "pthread_create", errno: rc))
    }
    return thread
}
