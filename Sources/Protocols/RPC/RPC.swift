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
    // Immutable; the HTTP request guards its own state.
    let request: HTTPServerRequest
    init(_ request: HTTPServerRequest) { self.request = request }

    /// The peer that called.
    public var peer: SocketAddress { request.peer }

    public func send(_ reply: Reply) {
        do {
            let bytes = try EVTagCoder.encode(reply)
            request.respond(.ok, headers: HTTPHeaders([("Content-Type", "application/octet-stream")]), body: bytes)
        } catch {
            request.respond(.internalServerError, body: "reply not encodable\n")
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

    public init(http: HTTPServer) { self.http = http }

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
            let decoded: Request
            do {
                decoded = try EVTagCoder.decode(Request.self, from: body)
            } catch {
                httpRequest.respond(.badRequest, body: "bad RPC request: \(error)\n")
                return
            }
            handler(decoded, RPCReply<Reply>(httpRequest))
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
        let index = lock.withLock { () -> Int in
            let chosen = outstanding.indices.min { outstanding[$0] < outstanding[$1] } ?? 0
            outstanding[chosen] += 1
            return chosen
        }
        let headers = HTTPHeaders([("Content-Type", "application/octet-stream")])
        connections[index].request(.post, "/.rpc.\(name)", headers: headers, body: body) { [self] result in
            lock.withLock { outstanding[index] -= 1 }
            switch result {
            case .success(let response) where response.status.code == 200:
                do {
                    completion(.success(try EVTagCoder.decode(Reply.self, from: response.body)))
                } catch {
                    completion(.failure(.badReply("\(error)")))
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
