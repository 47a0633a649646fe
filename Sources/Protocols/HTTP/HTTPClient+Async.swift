import EventCore

extension HTTPClientConnection {
    /// `request(_:_:headers:body:completion:)` as an async call; cancelling
    /// the task cancels the request (and drops the connection if it was in flight).
    public func send(
        _ method: HTTPMethod, _ target: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []
    ) async throws -> HTTPClientResponse {
        try await withCancellableCallback { (complete: @escaping @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void) in
            let request = request(method, target, headers: headers, body: body, completion: complete)
            return { request.cancel() }
        }
    }
}
