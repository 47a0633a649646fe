import CEventShims
import EventBackends
import EventBuffers
import EventCore
import EventLocking
import Glibc

/// What a lookup found: the records of the asked type on the question's
/// CNAME chain, and how it was answered.
public struct DNSAnswer: Sendable, Hashable {
    /// The name that was finally asked (after search domains), and the type.
    public let question: DNSQuestion
    public let records: [DNSRecord]
    /// CNAME targets followed, in order.
    public let cnameChain: [DNSName]
    public let isAuthoritative: Bool
    /// Where the answer came from.
    public let source: Source
    /// The nameserver that answered (nil for cache and hosts).
    public let nameserver: SocketAddress?

    public enum Source: Sendable, Hashable { case network, cache, hostsFile }

    /// The addresses of A and AAAA records, in answer order.
    public var addresses: [[UInt8]] {
        records.compactMap { record in
            switch record.data {
            case .a(let bytes), .aaaa(let bytes): bytes
            default: nil
            }
        }
    }
}

/// Why a lookup failed. Every request ends with exactly one answer or one of these.
public enum DNSLookupError: Error, Sendable, Hashable, CustomStringConvertible {
    /// NXDOMAIN: the name does not exist (after every search domain).
    case nameError(DNSName)
    /// Every nameserver asked answered SERVFAIL.
    case serverFailure
    /// Every nameserver asked answered REFUSED.
    case refused
    /// Another response code.
    case responseCode(DNSResponseCode)
    /// No answer within timeout × attempts.
    case timeout
    case cancelled
    case badName(DNSError)
    case noNameservers
    /// The resolver was freed.
    case shutdown
    /// A local failure (socket, connect) on every attempt.
    case system(Int32)

    public var description: String {
        switch self {
        case .nameError(let name): "\(name): no such name (NXDOMAIN)"
        case .serverFailure: "server failure (SERVFAIL) from every nameserver"
        case .refused: "query refused (REFUSED) by every nameserver"
        case .responseCode(let code): "response code \(code)"
        case .timeout: "timed out: no nameserver answered"
        case .cancelled: "cancelled"
        case .badName(let error): "\(error)"
        case .noNameservers: "no nameservers configured"
        case .shutdown: "the resolver was shut down"
        case .system(let error): "system error: \(String(cString: strerror(error)))"
        }
    }
}

/// An asynchronous DNS resolver (libevent's `evdns_base`). In a shared base
/// any thread may start or cancel lookups; callbacks run on the loop thread,
/// exactly once per request, without the resolver's lock held. In an owned
/// base it takes no lock.
///
/// Stricter than libevent 2.1 against spoofing: ids from the system's secure
/// random source, a fresh socket (random source port) per query, connected
/// to the nameserver so only its address and port are heard; 0x20 case
/// randomisation checked byte for byte; answers kept only for the question's
/// name and its CNAME chain; a reply with the right id but the wrong question
/// is dropped while the real answer is still awaited.
public final class DNSResolver: @unchecked Sendable {
    // Confinement: every `var` here, in `Request` and in `Nameserver` is
    // guarded by `lock` (a recursive lock from the base's provider; a no-op
    // lock in an owned base, whose one thread confines it).

    public typealias Callback = @Sendable (Result<DNSAnswer, DNSLookupError>) -> Void

    public let base: EventBase
    public let configuration: Configuration
    let lock: any EventLock
    private var nameservers: [Nameserver]
    private var inflight = 0
    private var waiting: [Request] = []
    private var cache: [CacheKey: CacheEntry] = [:]
    private var hosts: HostsTable
    private var rotation = 0
    private var isShutDown = false

    /// Statistics for tests and tools.
    public private(set) var cacheHits = 0
    public private(set) var queriesSent = 0

    public init(base: EventBase, configuration: Configuration) throws(DNSConfigurationError) {
        guard !configuration.nameservers.isEmpty else { throw .noNameservers }
        self.base = base
        self.configuration = configuration
        lock = base.lockProvider.makeLock(.recursive)
        nameservers = configuration.nameservers.map { Nameserver(address: $0) }
        hosts = configuration.hostsFile.map { HostsTable(path: $0) } ?? HostsTable()
    }

    /// A resolver configured from /etc/resolv.conf.
    public convenience init(base: EventBase) throws(DNSConfigurationError) {
        try self.init(base: base, configuration: try .resolvConf())
    }

    /// Cancels every request (each gets `.shutdown`) and stops probing.
    public func shutdown() {
        lock.withLock {
            isShutDown = true
            for server in nameservers {
                try? server.probe?.finalize { _ in }
                server.probe = nil
                server.probeAttempt?.close()
                server.probeAttempt = nil
            }
            // Each request ends once, with its socket closed and its slot freed.
            for request in allRequests { complete(request, .failure(.shutdown)) }
            waiting = []
        }
    }

    private var allRequests: [Request] = []

    // MARK: lookups

    /// Looks up `name` for `type` (any type; A, AAAA, PTR, CNAME, MX, SRV,
    /// TXT have typed data). Search domains apply unless the name ends with
    /// a dot or `search` is false.
    @discardableResult
    public func query(_ name: String, type: DNSRecordType, search: Bool = true, callback: @escaping Callback) -> DNSRequest {
        let handle = DNSRequest()
        let request = Request(resolver: self, type: type, callback: callback, handle: handle)
        handle.cancelAction = { [weak request] in
            guard let request else { return }
            request.resolver?.cancel(request)
        }
        let parsed: DNSName
        do {
            parsed = try DNSName(name)
        } catch {
            request.finishSoon(.failure(.badName(error)))
            return handle
        }
        let absolute = name.hasSuffix(".")
        lock.withLock {
            request.candidates = search && !absolute ? candidates(for: parsed) : [parsed]
            start(request)
        }
        return handle
    }

    /// IPv4 addresses of `host` (libevent's `evdns_base_resolve_ipv4`).
    @discardableResult
    public func resolveIPv4(_ host: String, callback: @escaping Callback) -> DNSRequest { query(host, type: .a, callback: callback) }

    /// IPv6 addresses of `host` (libevent's `evdns_base_resolve_ipv6`).
    @discardableResult
    public func resolveIPv6(_ host: String, callback: @escaping Callback) -> DNSRequest { query(host, type: .aaaa, callback: callback) }

    /// The names of an IPv4 or IPv6 address (PTR in in-addr.arpa / ip6.arpa).
    @discardableResult
    public func reverse(_ address: String, callback: @escaping Callback) -> DNSRequest {
        guard let name = Self.reverseName(address) else {
            let handle = DNSRequest()
            let request = Request(resolver: self, type: .ptr, callback: callback, handle: handle)
            request.finishSoon(.failure(.badName(.badName(address, "not an IPv4 or IPv6 address"))))
            return handle
        }
        return query(name + ".", type: .ptr, search: false, callback: callback)
    }

    /// "4.3.2.1.in-addr.arpa" or the nibble form in ip6.arpa.
    public static func reverseName(_ address: String) -> String? {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            let bytes = withUnsafeBytes(of: v4) { Array($0) }
            return bytes.reversed().map(String.init).joined(separator: ".") + ".in-addr.arpa"
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, address, &v6) == 1 {
            let bytes = withUnsafeBytes(of: v6) { Array($0) }
            let nibbles = bytes.reversed().flatMap { [String($0 & 0xF, radix: 16), String($0 >> 4, radix: 16)] }
            return nibbles.joined(separator: ".") + ".ip6.arpa"
        }
        return nil
    }

    /// The names to try for `name`, in order, as libevent and glibc do:
    /// with at least `ndots` dots the name as given first, then each search
    /// domain; with fewer, the search domains first.
    func candidates(for name: DNSName) -> [DNSName] {
        let searched = configuration.searchDomains.compactMap { try? name.appending($0) }
        if searched.isEmpty { return [name] }
        return name.labels.count - 1 >= configuration.ndots ? [name] + searched : searched + [name]
    }

    // MARK: cache

    struct CacheKey: Hashable {
        let name: DNSName
        let type: DNSRecordType
    }

    struct CacheEntry {
        let result: Result<DNSAnswer, DNSLookupError>
        let expires: Duration
    }

    /// Empties the cache.
    public func clearCache() { lock.withLock { cache = [:] } }

    public var cacheCount: Int { lock.withLock { cache.count } }

    private func cached(_ name: DNSName, _ type: DNSRecordType) -> Result<DNSAnswer, DNSLookupError>? {
        guard configuration.cacheEnabled else { return nil }
        let key = CacheKey(name: name, type: type)
        guard let entry = cache[key] else { return nil }
        guard entry.expires > DNSResolver.monotonicNow() else {
            cache[key] = nil
            return nil
        }
        cacheHits += 1
        if case .success(let answer) = entry.result {
            return .success(DNSAnswer(
                question: answer.question, records: answer.records, cnameChain: answer.cnameChain,
                isAuthoritative: false, source: .cache, nameserver: nil))
        }
        return entry.result
    }

    private func store(_ name: DNSName, _ type: DNSRecordType, _ result: Result<DNSAnswer, DNSLookupError>, ttl: UInt32) {
        guard configuration.cacheEnabled, ttl > 0 else { return }
        if cache.count >= configuration.cacheCapacity {
            let now = DNSResolver.monotonicNow()
            cache = cache.filter { $0.value.expires > now }
            if cache.count >= configuration.cacheCapacity, let victim = cache.keys.first { cache[victim] = nil }
        }
        cache[CacheKey(name: name, type: type)] = CacheEntry(result: result, expires: DNSResolver.monotonicNow() + .seconds(Int64(ttl)))
    }

    // MARK: running requests (the lock is held)

    private func start(_ request: Request) {
        guard !isShutDown else {
            request.finishSoon(.failure(.shutdown))
            return
        }
        allRequests.append(request)
        // The whole request ends within timeout × attempts per name tried,
        // queued or not, whatever the nameservers do.
        let budget = configuration.timeout * configuration.attempts * max(1, request.candidates.count) + .milliseconds(50)
        request.deadline = try? Event(base: base, fd: -1, flags: [.finalize]) { [weak request] _, _ in
            request?.expire()
        }
        try? request.deadline?.add(timeout: budget)
        beginCandidate(request)
    }

    /// Answers the current candidate from the hosts file or the cache, or sends it.
    private func beginCandidate(_ request: Request) {
        let name = request.candidates[request.candidateIndex]
        if let addresses = hosts.lookup(name, request.type) {
            let records = addresses.map { DNSRecord(name: name, type: request.type, ttl: 0, data: request.type == .a ? .a($0) : .aaaa($0)) }
            complete(request, .success(DNSAnswer(
                question: DNSQuestion(name: name, type: request.type), records: records, cnameChain: [],
                isAuthoritative: false, source: .hostsFile, nameserver: nil)))
            return
        }
        if request.type == .ptr, let hostName = hosts.reverse(name) {
            complete(request, .success(DNSAnswer(
                question: DNSQuestion(name: name, type: .ptr),
                records: [DNSRecord(name: name, type: .ptr, ttl: 0, data: .ptr(hostName))], cnameChain: [],
                isAuthoritative: false, source: .hostsFile, nameserver: nil)))
            return
        }
        if let hit = cached(name, request.type) {
            candidateFinished(request, hit)
            return
        }
        request.tries = 0
        request.failedServers = []
        request.lastFailure = nil
        if inflight >= configuration.maxInflight {
            waiting.append(request)
            request.isQueued = true
            return
        }
        inflight += 1
        request.holdsSlot = true
        send(request)
    }

    /// The order nameservers are tried in for this request.
    private func serverOrder(_ request: Request) -> [Int] {
        let count = nameservers.count
        if request.serverOffset == nil {
            request.serverOffset = configuration.rotate ? rotation % count : 0
            if configuration.rotate { rotation &+= 1 }
        }
        let offset = request.serverOffset ?? 0
        let all = (0..<count).map { ($0 + offset) % count }
        let up = all.filter { nameservers[$0].isUp }
        // With every nameserver down, try them all anyway.
        return up.isEmpty ? all : up
    }

    /// Sends the current candidate to the next nameserver to try.
    private func send(_ request: Request) {
        let order = serverOrder(request).filter { !request.failedServers.contains($0) }
        let limit = configuration.attempts * nameservers.count
        guard request.tries < limit, !order.isEmpty else {
            candidateFinished(request, .failure(request.lastFailure ?? .timeout))
            return
        }
        let serverIndex = order[request.tries % order.count]
        request.tries += 1
        let server = nameservers[serverIndex]
        let sentName = configuration.randomizeCase
            ? request.candidates[request.candidateIndex].randomizingCase { UInt64.random(in: 0...UInt64.max) }
            : request.candidates[request.candidateIndex]
        var message = DNSMessage()
        message.id = UInt16.random(in: 0...UInt16.max)
        message.recursionDesired = true
        message.questions = [DNSQuestion(name: sentName, type: request.type)]
        message.ednsUDPSize = request.withoutEDNS ? nil : configuration.ednsUDPSize
        guard let bytes = try? message.serialized() else {
            candidateFinished(request, .failure(.badName(.badName("\(sentName)", "does not fit a query"))))
            return
        }
        let attempt = Attempt(
            resolver: self, request: request, serverIndex: serverIndex, address: server.address, id: message.id,
            question: message.questions[0], query: bytes)
        request.attempt?.close()
        request.attempt = attempt
        queriesSent += 1
        let error = configuration.forceTCP ? attempt.startTCP() : attempt.startUDP()
        if let error {
            attempt.close()
            request.attempt = nil
            request.lastFailure = .system(error)
            send(request)
        }
    }

    /// What came back for one attempt.
    enum Outcome {
        case answer(DNSMessage)
        case truncated
        case timedOut
        case failed(Int32)
    }

    func attemptEnded(_ attempt: Attempt, _ outcome: Outcome) {
        lock.withLock {
            guard let request = attempt.request, request.attempt === attempt, !request.isDone else {
                attempt.close()
                return
            }
            let server = nameservers[attempt.serverIndex]
            switch outcome {
            case .truncated:
                // The answer did not fit UDP: the same question over TCP, same nameserver.
                attempt.closeSocket()
                if let error = attempt.startTCP() {
                    attempt.close()
                    request.attempt = nil
                    request.lastFailure = .system(error)
                    send(request)
                }
                return
            case .timedOut:
                attempt.close()
                request.attempt = nil
                noteTimeout(server)
                request.lastFailure = request.lastFailure ?? .timeout
                send(request)
            case .failed(let error):
                attempt.close()
                request.attempt = nil
                request.lastFailure = .system(error)
                send(request)
            case .answer(let message):
                attempt.close()
                request.attempt = nil
                noteAlive(server)
                switch message.responseCode {
                case .serverFailure, .refused:
                    // Next nameserver at once; when every one said so, that is the answer.
                    request.failedServers.insert(attempt.serverIndex)
                    request.lastFailure = message.responseCode == .refused ? .refused : .serverFailure
                    send(request)
                case .noError, .nameError:
                    let asked = request.candidates[request.candidateIndex]
                    candidateFinished(request, answer(message, asked: asked, attempt: attempt, server: server.address), from: message)
                case .formatError where !request.withoutEDNS && configuration.ednsUDPSize != nil:
                    // An old server that does not know EDNS0: the same question
                    // to the same nameserver without the OPT record.
                    request.withoutEDNS = true
                    request.tries -= 1
                    send(request)
                default:
                    candidateFinished(request, .failure(.responseCode(message.responseCode)))
                }
            }
        }
    }

    /// The records on the question's CNAME chain.
    private func answer(_ message: DNSMessage, asked: DNSName, attempt: Attempt, server: SocketAddress) -> Result<DNSAnswer, DNSLookupError> {
        let question = attempt.question
        if message.responseCode == .nameError { return .failure(.nameError(asked)) }
        var owners: [DNSName] = [asked]
        var chain: [DNSName] = []
        // Follow CNAMEs whose owner is on the chain (in any order, bounded).
        var changed = true
        var rounds = 0
        while changed && rounds < 16 {
            changed = false
            rounds += 1
            for record in message.answers where record.type == .cname && owners.contains(record.name) {
                if case .cname(let target) = record.data, !owners.contains(target) {
                    owners.append(target)
                    chain.append(target)
                    changed = true
                }
            }
        }
        let records = message.answers.filter { record in
            owners.contains(record.name) && (question.type == .any || record.type == question.type)
                && record.type != .opt
        }
        return .success(DNSAnswer(
            question: DNSQuestion(name: asked, type: question.type), records: records, cnameChain: chain,
            isAuthoritative: message.isAuthoritative, source: .network, nameserver: server))
    }

    /// One candidate name got its result: cache it, try the next search
    /// name after NXDOMAIN, or complete.
    private func candidateFinished(_ request: Request, _ result: Result<DNSAnswer, DNSLookupError>, from message: DNSMessage? = nil) {
        let name = request.candidates[request.candidateIndex]
        if let message {
            switch result {
            case .success(let answer):
                let ttl = answer.records.map(\.ttl).min() ?? Self.negativeTTL(message)
                store(name, request.type, result, ttl: ttl)
            case .failure(.nameError):
                store(name, request.type, result, ttl: Self.negativeTTL(message))
            default: break
            }
        }
        releaseSlot(request)
        if case .failure(.nameError) = result, request.candidateIndex + 1 < request.candidates.count {
            request.candidateIndex += 1
            request.firstNameError = request.firstNameError ?? result
            beginCandidate(request)
            return
        }
        if case .failure(.nameError) = result, let first = request.firstNameError {
            complete(request, first)
            return
        }
        complete(request, result)
    }

    /// RFC 2308: the SOA's TTL, capped by its minimum field; 0 (no caching) without one.
    static func negativeTTL(_ message: DNSMessage) -> UInt32 {
        for record in message.authorities where record.type == .soa {
            if case .other(let bytes) = record.data, bytes.count >= 4 {
                let minimum = bytes.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                return min(record.ttl, minimum)
            }
        }
        return 0
    }

    private func releaseSlot(_ request: Request) {
        if request.isQueued {
            waiting.removeAll { $0 === request }
            request.isQueued = false
        }
        guard request.holdsSlot else { return }
        request.holdsSlot = false
        inflight -= 1
        while inflight < configuration.maxInflight, !waiting.isEmpty {
            let next = waiting.removeFirst()
            next.isQueued = false
            guard !next.isDone else { continue }
            inflight += 1
            next.holdsSlot = true
            send(next)
        }
    }

    /// Ends a request with `result` (delivered on the loop, once).
    func complete(_ request: Request, _ result: Result<DNSAnswer, DNSLookupError>) {
        guard !request.isDone else { return }
        request.attempt?.close()
        request.attempt = nil
        releaseSlot(request)
        allRequests.removeAll { $0 === request }
        request.finishSoon(result)
    }

    func cancel(_ request: Request) {
        lock.withLock { complete(request, .failure(.cancelled)) }
    }

    func expire(_ request: Request) {
        lock.withLock { complete(request, .failure(request.lastFailure == .serverFailure || request.lastFailure == .refused ? request.lastFailure! : .timeout)) }
    }

    // MARK: nameserver health (the lock is held)

    private func noteTimeout(_ server: Nameserver) {
        server.timeouts += 1
        guard server.isUp, server.timeouts >= configuration.maxNameserverTimeouts else { return }
        server.isUp = false
        server.probeDelay = configuration.initialProbeTimeout
        scheduleProbe(server)
    }

    private func noteAlive(_ server: Nameserver) {
        server.timeouts = 0
        guard !server.isUp else { return }
        server.isUp = true
        try? server.probe?.delete()
    }

    /// Probes a down nameserver after its back-off (doubling, at most an hour).
    private func scheduleProbe(_ server: Nameserver) {
        guard !isShutDown else { return }
        if server.probe == nil {
            server.probe = try? Event(base: base, fd: -1, flags: [.finalize]) { [weak self, weak server] _, _ in
                guard let self, let server else { return }
                self.probe(server)
            }
        }
        try? server.probe?.add(timeout: server.probeDelay)
    }

    private func probe(_ server: Nameserver) {
        lock.withLock {
            guard !server.isUp, !isShutDown else { return }
            var message = DNSMessage()
            message.id = UInt16.random(in: 0...UInt16.max)
            message.questions = [DNSQuestion(name: .root, type: .ns)]
            guard let bytes = try? message.serialized() else { return }
            let attempt = Attempt(
                resolver: self, request: nil, serverIndex: nameservers.firstIndex { $0 === server } ?? 0,
                address: server.address, id: message.id, question: message.questions[0], query: bytes)
            attempt.onProbeResult = { [weak self, weak server] alive in
                guard let self, let server else { return }
                self.lock.withLock {
                    server.probeAttempt = nil
                    if alive {
                        self.noteAlive(server)
                    } else {
                        server.probeDelay = min(server.probeDelay * 2, .seconds(3600))
                        self.scheduleProbe(server)
                    }
                }
            }
            server.probeAttempt?.close()
            server.probeAttempt = attempt
            if attempt.startUDP() != nil {
                attempt.close()
                server.probeDelay = min(server.probeDelay * 2, .seconds(3600))
                scheduleProbe(server)
            }
        }
    }

    /// Whether each nameserver is considered up (for tests and tools).
    public var nameserverStates: [(address: SocketAddress, isUp: Bool)] {
        lock.withLock { nameservers.map { ($0.address, $0.isUp) } }
    }
}

/// A lookup in flight; `cancel()` ends it with `.cancelled` (the callback
/// still runs, once), unless it already ended.
public final class DNSRequest: @unchecked Sendable {
    // `cancelAction` is set once, before the handle is returned to anyone.
    var cancelAction: (@Sendable () -> Void)?
    init() {}

    public func cancel() { cancelAction?() }
}

extension DNSResolver {
    final class Nameserver: @unchecked Sendable {
        // Every `var` is guarded by the resolver's lock.
        let address: SocketAddress
        var isUp = true
        var timeouts = 0
        var probe: Event?
        var probeDelay: Duration = .seconds(10)
        var probeAttempt: Attempt?
        init(address: SocketAddress) { self.address = address }
    }

    /// One request's state; guarded by the resolver's lock.
    final class Request: @unchecked Sendable {
        /// Strong until the callback has run: a resolver the user let go of
        /// still answers every request it took (exactly once).
        var resolver: DNSResolver?
        let type: DNSRecordType
        var callback: Callback?
        let handle: DNSRequest
        var candidates: [DNSName] = []
        var candidateIndex = 0
        var firstNameError: Result<DNSAnswer, DNSLookupError>?
        var tries = 0
        var failedServers: Set<Int> = []
        var lastFailure: DNSLookupError?
        var serverOffset: Int?
        /// A nameserver answered FORMERR to EDNS0: ask without it.
        var withoutEDNS = false
        var attempt: Attempt?
        var deadline: Event?
        var delivery: Event?
        var isQueued = false
        var holdsSlot = false
        var isDone = false
        var result: Result<DNSAnswer, DNSLookupError>?

        init(resolver: DNSResolver, type: DNSRecordType, callback: @escaping Callback, handle: DNSRequest) {
            self.resolver = resolver
            self.type = type
            self.callback = callback
            self.handle = handle
        }

        func expire() { resolver?.expire(self) }

        /// Records the result and has the loop deliver it (never inline, so
        /// a callback never runs inside `query` or with the lock held).
        func finishSoon(_ result: Result<DNSAnswer, DNSLookupError>) {
            guard let resolver else { return }
            resolver.lock.withLock {
                guard !isDone else { return }
                isDone = true
                self.result = result
                try? deadline?.finalize { _ in }
                deadline = nil
                delivery = try? Event(base: resolver.base, fd: -1, flags: [.finalize]) { [self] event, _ in
                    deliver()
                    try? event.finalize { _ in }
                }
                try? delivery?.activate()
            }
        }

        private func deliver() {
            guard let resolver else { return }
            let (callback, result) = resolver.lock.withLock { () -> (Callback?, Result<DNSAnswer, DNSLookupError>?) in
                let pair = (self.callback, self.result)
                self.callback = nil
                delivery = nil
                self.resolver = nil
                return pair
            }
            if let callback, let result { callback(result) }
        }
    }
}
