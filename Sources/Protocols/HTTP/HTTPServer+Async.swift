import EventCore

/// A whole response, as an async handler returns it.
public struct HTTPServerResponse: Sendable {
    public var status: HTTPStatus
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(_ status: HTTPStatus = .ok, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public init(_ status: HTTPStatus = .ok, headers: HTTPHeaders = HTTPHeaders(), body: String) {
        self.init(status, headers: headers, body: Array(body.utf8))
    }
}

extension HTTPServer {
    /// An `async` handler: it returns the response (or throws: 500).
    public typealias AsyncHandler = @Sendable (HTTPServerRequest) async throws -> HTTPServerResponse

    /// Routes `path` to an async handler (a thin layer over ``route(_:_:)``).
    /// Each request runs as a task whose executor is the base
    /// (`base.taskExecutor`), started immediately (`Task.immediate`): it runs
    /// inside the read callback up to its first suspension (a handler that
    /// never suspends answers in that same pass, as a callback would) and
    /// comes back to the loop thread after every suspension, so the handler
    /// shares the loop's thread with the callbacks and the response is
    /// written there. A client that disconnects before the answer cancels
    /// the task.
    public func route(_ path: String, async handler: @escaping AsyncHandler) {
        route(path, Self.bridge(base, handler))
    }

    /// The generic handler as an async handler.
    public func setGenericHandler(async handler: @escaping AsyncHandler) {
        setGenericHandler(Self.bridge(base, handler))
    }

    static func bridge(_ base: EventBase, _ handler: @escaping AsyncHandler) -> Handler {
        let executor = base.taskExecutor
        return { request in
            let task = Task.immediate(executorPreference: executor) {
                let response: HTTPServerResponse
                do {
                    response = try await handler(request)
                } catch is CancellationError {
                    return  // the connection is gone: nobody to answer
                } catch {
                    response = HTTPServerResponse(.internalServerError, body: "internal server error\n")
                }
                request.respond(response.status, headers: response.headers, body: response.body)
            }
            request.cancelOnConnectionClose(task)
        }
    }
}
