import EventBuffers
import EventHTTP
import EventLocking

/// What a hook decides (libevent's `EVRPC_CONTINUE`, `EVRPC_TERMINATE`, `EVRPC_PAUSE`).
public enum RPCHookResult: Sendable, Hashable {
    case `continue`
    case terminate
    /// The hook answers later with `RPCHookContext.resume(_:)`.
    case pause
}

/// Where a hook runs (libevent's `EVRPC_INPUT` / `EVRPC_OUTPUT`, on the server or a pool).
public enum RPCHookPoint: Sendable, Hashable {
    /// Server: a request arrived, before it is decoded. Pool: a reply arrived, before it is decoded.
    case input
    /// Server: a reply is encoded, before it is sent. Pool: a request is encoded, before it is sent.
    case output
}

/// One message passing through hooks: the RPC's name, its encoded bytes
/// (hooks may change them), the HTTP headers going with it, and metadata
/// the hooks share across input and output of the same call (libevent's
/// `evrpc_hook_add_meta` / `evrpc_hook_find_meta`).
public final class RPCHookContext: @unchecked Sendable {
    // Confinement: every `var` is guarded by `lock` (a pthread mutex; no base involved).
    public let name: String
    private let lock = PthreadMutexLock()
    private var storedBody: [UInt8]
    private var storedHeaders: HTTPHeaders
    private var storedMetadata: [String: String] = [:]
    private var paused: ((RPCHookResult) -> Void)?

    init(name: String, body: [UInt8], headers: HTTPHeaders) {
        self.name = name
        storedBody = body
        storedHeaders = headers
    }

    public var body: [UInt8] {
        get { lock.withLock { storedBody } }
        set { lock.withLock { storedBody = newValue } }
    }

    public var headers: HTTPHeaders {
        get { lock.withLock { storedHeaders } }
        set { lock.withLock { storedHeaders = newValue } }
    }

    public func setMetadata(_ key: String, _ value: String) { lock.withLock { storedMetadata[key] = value } }
    public func metadata(_ key: String) -> String? { lock.withLock { storedMetadata[key] } }

    /// Resumes a chain a hook paused (libevent's `evrpc_resume_request`), from any thread, once.
    public func resume(_ result: RPCHookResult) {
        let continuation = lock.withLock { () -> ((RPCHookResult) -> Void)? in
            let continuation = paused
            paused = nil
            return continuation
        }
        continuation?(result == .pause ? .terminate : result)
    }

    /// Runs `hooks` from `index`; `done` gets `.continue` when every hook
    /// continued, `.terminate` when one terminated.
    func run(_ hooks: [RPCHook], from index: Int = 0, done: @escaping @Sendable (RPCHookResult) -> Void) {
        var position = index
        while position < hooks.count {
            let result = hooks[position](self)
            switch result {
            case .continue:
                position += 1
            case .terminate:
                done(.terminate)
                return
            case .pause:
                let next = position + 1
                lock.withLock {
                    paused = { [self] resumed in
                        if resumed == .continue { run(hooks, from: next, done: done) } else { done(.terminate) }
                    }
                }
                return
            }
        }
        done(.continue)
    }
}

public typealias RPCHook = @Sendable (RPCHookContext) -> RPCHookResult

/// Hook chains for one side (server or pool).
final class RPCHookSet: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = PthreadMutexLock()
    private var input: [RPCHook] = []
    private var output: [RPCHook] = []

    func add(_ point: RPCHookPoint, _ hook: @escaping RPCHook) {
        lock.withLock {
            if point == .input { input.append(hook) } else { output.append(hook) }
        }
    }

    func hooks(_ point: RPCHookPoint) -> [RPCHook] { lock.withLock { point == .input ? input : output } }
}
