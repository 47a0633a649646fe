import EventBuffers
import EventCore

extension DNSResolver {
    /// `query(_:type:search:callback:)` as an async call; cancelling the task cancels the lookup.
    public func query(_ name: String, type: DNSRecordType, search: Bool = true) async throws -> DNSAnswer {
        try await withCancellableCallback { (complete: @escaping @Sendable (Result<DNSAnswer, DNSLookupError>) -> Void) in
            let request = query(name, type: type, search: search, callback: complete)
            return { request.cancel() }
        }
    }

    /// `addresses(host:service:family:callback:)` as an async call.
    public func addresses(host: String, service: String, family: AddressFamily = .any) async throws -> [SocketAddress] {
        try await withCancellableCallback { (complete: @escaping @Sendable (Result<[SocketAddress], DNSLookupError>) -> Void) in
            let request = addresses(host: host, service: service, family: family, callback: complete)
            return { request.cancel() }
        }
    }
}
