import EventCore

extension RPCClientPool {
    /// `call(_:_:reply:completion:)` as an async call. A cancelled task stops
    /// waiting (throws `CancellationError`); the call itself ends at its timeout.
    public func call<Request: Encodable, Reply: Decodable & Sendable>(
        _ name: String, _ request: Request, reply: Reply.Type
    ) async throws -> Reply {
        try await withCancellableCallback { (complete: @escaping @Sendable (Result<Reply, RPCError>) -> Void) in
            call(name, request, reply: reply, completion: complete)
            return nil
        }
    }
}
