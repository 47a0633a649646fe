import EventBuffers
import EventCore
import EventHTTP
import EventLocking

/// Why an RPC call failed (libevent's `EVRPC_STATUS_*`).
public enum RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No reply within the pool's timeout.
    case timeout
    /// The reply did not decode as the reply type, or the server answered another status.
    case badReply(String)
    /// The request never reached the server (connection refused, resolution failed).
    case unstarted(String)
    /// The request could not be encoded.
    case badRequest(String)

    public var description: String {
        switch self {
        case .timeout: "RPC timed out"
        case .badReply(let why): "bad RPC reply: \(why)"
        case .unstarted(let why): "RPC not started: \(why)"
        case .badRequest(let why): "RPC request not encodable: \(why)"
        }
    }
}

/// The reply side of one served call; `send` once, from any thread.
public final class RPCReply<Reply: Encodable & Sendable>: @unchecked Sendable {
    // Immutable; the HTTP request and the hook context guard their own state.
    let request: HTTPServerRequest
    /// The call's hook context: the same metadata the input hooks saw.
    public let context: RPCHookContext
    private let hooks: RPCHookSet
    init(_ request: HTTPServerRequest, context: RPCHookContext, hooks: RPCHookSet) {
        self.request = request
        self.context = context
        self.hooks = hooks
    }

    /// The peer that called.
    public var peer: SocketAddress { request.peer }

    /// Sends the reply through the server's output hooks (a terminating hook makes it a 503).
    public func send(_ reply: Reply) {
        let bytes: [UInt8]
        do {
            bytes = try EVTagCoder.encode(reply)
        } catch {
            request.respond(.internalServerError, body: "reply not encodable\n")
            return
        }
        context.body = bytes
        context.headers = HTTPHeaders([("Content-Type", "application/octet-stream")])
        let request = self.request
        let context = self.context
        context.run(hooks.hooks(.output)) { result in
            if result == .terminate {
                request.respond(.serviceUnavailable, body: "terminated by an output hook\n")
            } else {
                request.respond(.ok, headers: context.headers, body: context.body)
            }
        }
    }

    /// Fails the call (the client sees a bad reply).
    public func fail(_ status: HTTPStatus = .internalServerError, _ reason: String = "") {
        request.respond(status, body: reason)
    }
}

/// RPCs served on an HTTP server (libevent's `evrpc_base`): each named RPC
/// answers POST `/.rpc.NAME` with an evtag-encoded request body and replies
/// with an evtag-encoded body, as libevent's evrpc does, so libevent clients
/// can call us and we can call them.
public final class RPCServer: Sendable {
    public let http: HTTPServer
    let hooks = RPCHookSet()

    public init(http: HTTPServer) { self.http = http }

    /// Adds a hook on every call's request (`.input`, before decoding) or
    /// reply (`.output`, before sending) (libevent's `evrpc_add_hook`). A
    /// terminating hook answers 503; a pausing one resumes the call later.
    public func addHook(_ point: RPCHookPoint, _ hook: @escaping RPCHook) { hooks.add(point, hook) }

    /// Serves `name`: the handler gets the decoded request and a reply to
    /// send, now or later, from any thread (libevent's `EVRPC_REGISTER`).
    public func register<Request: Decodable & Sendable, Reply: Encodable & Sendable>(
        _ name: String, request: Request.Type, reply: Reply.Type,
        handler: @escaping @Sendable (Request, RPCReply<Reply>) -> Void
    ) {
        http.route("/.rpc.\(name)") { httpRequest in
            guard httpRequest.method == .post else {
                httpRequest.respond(.methodNotAllowed, headers: HTTPHeaders([("Allow", "POST")]), body: "RPCs are POSTed\n")
                return
            }
            let body = (try? httpRequest.body.remove(upTo: httpRequest.body.count)) ?? []
            let context = RPCHookContext(name: name, body: body, headers: httpRequest.headers)
            let hooks = self.hooks
            context.run(hooks.hooks(.input)) { result in
                guard result == .continue else {
                    httpRequest.respond(.serviceUnavailable, body: "terminated by an input hook\n")
                    return
                }
                let decoded: Request
                do {
                    decoded = try EVTagCoder.decode(Request.self, from: context.body)
                } catch {
                    httpRequest.respond(.badRequest, body: "bad RPC request: \(error)\n")
                    return
                }
                handler(decoded, RPCReply<Reply>(httpRequest, context: context, hooks: hooks))
            }
        }
    }

    /// Stops serving `name`.
    public func unregister(_ name: String) { http.removeRoute("/.rpc.\(name)") }
}

/// Calls RPCs over a pool of kept-alive HTTP connections to one server
/// (libevent's `evrpc_pool`): a call goes to the connection with the fewest
/// calls outstanding, queued there when all are busy; each call has the
/// pool's timeout.
public final class RPCClientPool: @unchecked Sendable {
    // Confinement: `outstanding` is guarded by `lock`; the rest is set once.
    public let base: EventBase
    private let connections: [HTTPClientConnection]
    private var outstanding: [Int]
    private let lock: any EventLock
    let hooks = RPCHookSet()

    /// Adds a hook on every call's request (`.output`, before sending) or
    /// reply (`.input`, before decoding). A terminating output hook ends the
    /// call as unstarted, a terminating input hook as a bad reply.
    public func addHook(_ point: RPCHookPoint, _ hook: @escaping RPCHook) { hooks.add(point, hook) }

    public init(base: EventBase, host: String, port: UInt16, connections count: Int = 1, timeout: Duration = .seconds(10)) {
        self.base = base
        var configuration = HTTPClientConnection.Configuration()
        configuration.timeout = timeout
        configuration.retries = 0
        connections = (0..<max(1, count)).map { _ in
            HTTPClientConnection(base: base, host: host, port: port, configuration: configuration)
        }
        outstanding = Array(repeating: 0, count: max(1, count))
        lock = base.lockProvider.makeLock(.plain)
    }

    /// Calls `name` with `request`; `completion` runs on the loop once
    /// (libevent's `EVRPC_MAKE_REQUEST`).
    public func call<Request: Encodable, Reply: Decodable & Sendable>(
        _ name: String, _ request: Request, reply: Reply.Type,
        completion: @escaping @Sendable (Result<Reply, RPCError>) -> Void
    ) {
        let body: [UInt8]
        do {
            body = try EVTagCoder.encode(request)
        } catch {
            completion(.failure(.badRequest("\(error)")))
            return
        }
        let context = RPCHookContext(name: name, body: body, headers: HTTPHeaders([("Content-Type", "application/octet-stream")]))
        context.run(hooks.hooks(.output)) { [self] decision in
            guard decision == .continue else {
                completion(.failure(.unstarted("terminated by an output hook")))
                return
            }
            send(name, context, reply: reply, completion: completion)
        }
    }

    private func send<Reply: Decodable & Sendable>(
        _ name: String, _ context: RPCHookContext, reply: Reply.Type,
        completion: @escaping @Sendable (Result<Reply, RPCError>) -> Void
    ) {
        let index = lock.withLock { () -> Int in
            let chosen = outstanding.indices.min { outstanding[$0] < outstanding[$1] } ?? 0
            outstanding[chosen] += 1
            return chosen
        }
        connections[index].request(.post, "/.rpc.\(name)", headers: context.headers, body: context.body) { [self] result in
            lock.withLock { outstanding[index] -= 1 }
            switch result {
            case .success(let response) where response.status.code == 200:
                context.body = response.body
                context.headers = response.headers
                context.run(hooks.hooks(.input)) { decision in
                    guard decision == .continue else {
                        completion(.failure(.badReply("terminated by an input hook")))
                        return
                    }
                    do {
                        completion(.success(try EVTagCoder.decode(Reply.self, from: context.body)))
                    } catch {
                        completion(.failure(.badReply("\(error)")))
                    }
                }
            case .success(let response):
                completion(.failure(.badReply("HTTP \(response.status)")))
            case .failure(.timeout):
                completion(.failure(.timeout))
            case .failure(.connect(let error)):
                completion(.failure(.unstarted("connect: errno \(error)")))
            case .failure(.resolution(let error)):
                completion(.failure(.unstarted("\(error)")))
            case .failure(let error):
                completion(.failure(.badReply("\(error)")))
            }
        }
    }

    /// Closes every connection; calls in flight end with an error.
    public func free() { for connection in connections { connection.free() } }
}
