import COpenSSL
import CSSLShim
import Glibc

/// A TLS configuration made into an OpenSSL `SSL_CTX`, shared by every TLS
/// bufferevent made with it. A libevent user builds the `SSL_CTX` by hand;
/// here the configuration states each choice and the defaults are safe and
/// set explicitly rather than left to the OpenSSL build: TLS 1.2 at least,
/// peers verified (clients check the server's name or IP), no
/// renegotiation, no compression, a handshake timeout.
public final class SSLContext: @unchecked Sendable {
    // Immutable after init. OpenSSL allows one SSL_CTX to make SSL objects
    // on many threads at once once it is configured; the session cache has
    // its own lock.

    /// Which side of the handshake connections made with this context take.
    public enum Role: Sendable, Hashable {
        case client
        case server
    }

    /// PEM text, from a file or from memory.
    public enum PEM: Sendable, Hashable {
        case file(String)
        case text(String)
    }

    /// Where trusted certificate authorities come from.
    public enum TrustRoots: Sendable, Hashable {
        /// The system store (`SSL_CTX_set_default_verify_paths`: Debian's
        /// /etc/ssl/certs).
        case system
        /// A PEM file of one or more CA certificates.
        case file(String)
        /// A hashed directory (`c_rehash`) of CA certificates.
        case directory(String)
        /// CA certificates as PEM text.
        case text(String)
    }

    /// How the peer's certificate is treated.
    public enum PeerVerification: Sendable, Hashable {
        /// Not asked for (servers), or not checked (clients: only for tests
        /// and pinned setups; the default for clients is `.require`).
        case none
        /// A server asks for a client certificate and verifies one if
        /// given, but lets a client without one in.
        case request
        /// The peer must present a certificate that verifies.
        case require
    }

    public enum ProtocolVersion: Int32, Sendable, Hashable, Comparable {
        case tls12 = 0x0303
        case tls13 = 0x0304
        public static func < (a: ProtocolVersion, b: ProtocolVersion) -> Bool { a.rawValue < b.rawValue }
    }

    /// A certificate a server presents to clients that ask for one of `names` (SNI).
    public struct NamedCertificate: Sendable, Hashable {
        /// Host names, exact ("api.example.com") or one wildcard label ("*.example.com").
        public var names: [String]
        public var certificateChain: PEM
        public var privateKey: PEM
        public init(names: [String], certificateChain: PEM, privateKey: PEM) {
            self.names = names
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }

    public struct Configuration: Sendable, Hashable {
        public var role: Role
        /// This side's certificate and the intermediates after it (leaf first).
        public var certificateChain: PEM?
        public var privateKey: PEM?
        /// What the peer's certificate must chain to.
        public var trustRoots: [TrustRoots] = [.system]
        /// Clients: `.require` (the default). Servers: `.none` (the
        /// default), or `.request`/`.require` for client certificates.
        public var peerVerification: PeerVerification
        public var minimumVersion: ProtocolVersion = .tls12
        public var maximumVersion: ProtocolVersion?
        /// ALPN: the protocols a client offers, or a server accepts, in order of preference.
        public var applicationProtocols: [String] = []
        /// Servers: further certificates picked by the name a client sends.
        public var namedCertificates: [NamedCertificate] = []
        /// Servers: keep sessions (cache and tickets) so clients can resume.
        public var sessionResumption = true
        /// A connection whose handshake has not finished by then is closed
        /// with an error (a peer that connects and stalls costs nothing longer).
        public var handshakeTimeout: Duration = .seconds(10)
        /// Treat a peer that closes without close_notify as an ordinary EOF
        /// (libevent's `bufferevent_openssl_set_allow_dirty_shutdown`); a
        /// connection may override it.
        public var allowDirtyShutdown = false
        /// TLS 1.2 cipher list and TLS 1.3 cipher suites (OpenSSL syntax);
        /// nil keeps OpenSSL's defaults.
        public var cipherList: String?
        public var cipherSuites: String?

        /// A client: verifies the server against the system store by default.
        public static func client(
            trustRoots: [TrustRoots] = [.system], applicationProtocols: [String] = []
        ) -> Configuration {
            var configuration = Configuration(role: .client, peerVerification: .require)
            configuration.trustRoots = trustRoots
            configuration.applicationProtocols = applicationProtocols
            return configuration
        }

        /// A server presenting `certificateChain` with `privateKey`.
        public static func server(
            certificateChain: PEM, privateKey: PEM, applicationProtocols: [String] = []
        ) -> Configuration {
            var configuration = Configuration(role: .server, peerVerification: PeerVerification.none)
            configuration.certificateChain = certificateChain
            configuration.privateKey = privateKey
            configuration.applicationProtocols = applicationProtocols
            return configuration
        }

        public init(role: Role, peerVerification: PeerVerification? = nil) {
            self.role = role
            self.peerVerification = peerVerification ?? (role == .client ? .require : PeerVerification.none)
        }
    }

    public let configuration: Configuration
    /// The `SSL_CTX`, for settings this type does not cover. Change it only
    /// before the first connection is made.
    public let handle: OpaquePointer
    private let namedContexts: [OpaquePointer]
    private let sniTable: OpaquePointer?
    private let alpnSelections: [UnsafeMutablePointer<UInt8>?]
    /// ALPN in wire format, for clients.
    let alpnWire: [UInt8]

    public init(_ configuration: Configuration) throws(SSLError) {
        self.configuration = configuration
        ERR_clear_error()
        if let maximum = configuration.maximumVersion, maximum < configuration.minimumVersion {
            throw SSLError(kind: .configuration, reason: "maximum TLS version is below the minimum")
        }
        var wire: [UInt8] = []
        for name in configuration.applicationProtocols {
            let bytes = Array(name.utf8)
            guard !bytes.isEmpty, bytes.count <= 255 else {
                throw SSLError(kind: .configuration, reason: "ALPN protocol names are 1 to 255 bytes: \(name.debugDescription)")
            }
            wire.append(UInt8(bytes.count))
            wire += bytes
        }
        alpnWire = wire
        let server = configuration.role == .server
        if server && configuration.certificateChain == nil && configuration.namedCertificates.isEmpty {
            throw SSLError(kind: .configuration, reason: "a server needs a certificate chain and a private key")
        }
        let main = try Self.makeContext(configuration, chain: configuration.certificateChain, key: configuration.privateKey)
        var named: [OpaquePointer] = []
        var table: OpaquePointer?
        do throws(SSLError) {
            if server && !configuration.namedCertificates.isEmpty {
                let entries = configuration.namedCertificates.flatMap { certificate in
                    certificate.names.map { (name: $0, certificate: certificate) }
                }
                table = se_sni_table_new(Int32(entries.count))
                var contexts: [NamedCertificate: OpaquePointer] = [:]
                for (index, entry) in entries.enumerated() {
                    let context: OpaquePointer
                    if let made = contexts[entry.certificate] {
                        context = made
                    } else {
                        context = try Self.makeContext(
                            configuration, chain: entry.certificate.certificateChain, key: entry.certificate.privateKey)
                        contexts[entry.certificate] = context
                        named.append(context)
                    }
                    se_sni_table_set(table, Int32(index), entry.name, context)
                }
                se_ssl_ctx_install_sni(main, table)
            }
        } catch {
            for context in named { SSL_CTX_free(context) }
            se_sni_table_free(table)
            SSL_CTX_free(main)
            throw error
        }
        handle = main
        namedContexts = named
        sniTable = table
        // Every context a server may switch to by SNI selects ALPN too
        // (OpenSSL asks the context in use after the switch).
        if server && !wire.isEmpty {
            alpnSelections = ([main] + named).map { context in
                wire.withUnsafeBufferPointer { se_ssl_ctx_install_alpn(context, $0.baseAddress, UInt32($0.count)) }
            }
        } else {
            alpnSelections = []
        }
    }

    deinit {
        for context in namedContexts { SSL_CTX_free(context) }
        SSL_CTX_free(handle)
        se_sni_table_free(sniTable)
        for selection in alpnSelections { free(selection) }
    }

    /// A fresh key and a self-signed certificate for `name` (and `ipAddress`
    /// as an IP SAN), as PEM text: for tests, examples and benchmarks. A
    /// client trusts it with `trustRoots: [.text(certificate)]`.
    public static func selfSignedCertificate(
        name: String = "localhost", ipAddress: String? = "127.0.0.1", days: Int = 30
    ) throws(SSLError) -> (certificate: String, privateKey: String) {
        var certificate: UnsafeMutablePointer<CChar>?
        var key: UnsafeMutablePointer<CChar>?
        defer {
            free(certificate)
            free(key)
        }
        guard se_make_self_signed(name, ipAddress, Int32(days), &certificate, &key) == 1, let certificate, let key else {
            throw .configuration("self-signed certificate for \(name)")
        }
        return (String(cString: certificate), String(cString: key))
    }

    /// Server-side session cache statistics: sessions held and resumptions served.
    public var sessionCacheStatistics: (sessions: Int, hits: Int) {
        (se_ssl_ctx_sess_number(handle), se_ssl_ctx_sess_hits(handle))
    }

    // MARK: building an SSL_CTX

    private static func makeContext(_ configuration: Configuration, chain: PEM?, key: PEM?) throws(SSLError) -> OpaquePointer {
        let server = configuration.role == .server
        guard let context = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw .configuration("SSL_CTX_new")
        }
        do throws(SSLError) {
            try configure(context, configuration, chain: chain, key: key)
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        return context
    }

    private static func configure(
        _ context: OpaquePointer, _ configuration: Configuration, chain: PEM?, key: PEM?
    ) throws(SSLError) {
        let server = configuration.role == .server
        se_ssl_ctx_apply_defaults(context, server ? 1 : 0)
        guard se_ssl_ctx_set_min_proto(context, configuration.minimumVersion.rawValue) == 1 else {
            throw .configuration("minimum protocol version")
        }
        if let maximum = configuration.maximumVersion, se_ssl_ctx_set_max_proto(context, maximum.rawValue) != 1 {
            throw .configuration("maximum protocol version")
        }
        if let list = configuration.cipherList, SSL_CTX_set_cipher_list(context, list) != 1 {
            throw .configuration("cipher list \(list.debugDescription)")
        }
        if let suites = configuration.cipherSuites, SSL_CTX_set_ciphersuites(context, suites) != 1 {
            throw .configuration("cipher suites \(suites.debugDescription)")
        }
        switch (chain, key) {
        case (let chain?, let key?):
            try useCertificateChain(context, chain)
            try usePrivateKey(context, key)
            guard SSL_CTX_check_private_key(context) == 1 else {
                throw .configuration("the private key does not match the certificate")
            }
        case (nil, nil): break
        default: throw SSLError(kind: .configuration, reason: "a certificate chain needs its private key, and a key its chain")
        }
        if configuration.peerVerification != .none || server {
            try loadTrustRoots(context, configuration.trustRoots)
        }
        switch configuration.peerVerification {
        case .none: SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        case .request: SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        case .require: SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
        if server {
            // Sessions are only resumed within this application.
            let id = Array("SwiftEvent".utf8)
            _ = SSL_CTX_set_session_id_context(context, id, UInt32(id.count))
            if configuration.sessionResumption {
                _ = se_ssl_ctx_set_session_cache_mode(context, Int(SSL_SESS_CACHE_SERVER))
            } else {
                _ = se_ssl_ctx_set_session_cache_mode(context, Int(SSL_SESS_CACHE_OFF))
                se_ssl_ctx_disable_tickets(context)
            }
        }
    }

    private static func useCertificateChain(_ context: OpaquePointer, _ pem: PEM) throws(SSLError) {
        switch pem {
        case .file(let path):
            guard SSL_CTX_use_certificate_chain_file(context, path) == 1 else {
                throw .configuration("certificate chain file \(path)")
            }
        case .text(let text):
            let certificates = try readCertificates(text, what: "certificate chain")
            defer { for certificate in certificates { X509_free(certificate) } }
            guard SSL_CTX_use_certificate(context, certificates[0]) == 1 else { throw .configuration("certificate") }
            for certificate in certificates.dropFirst() where se_ssl_ctx_add_chain_cert(context, certificate) != 1 {
                throw .configuration("intermediate certificate")
            }
        }
    }

    private static func usePrivateKey(_ context: OpaquePointer, _ pem: PEM) throws(SSLError) {
        switch pem {
        case .file(let path):
            guard SSL_CTX_use_PrivateKey_file(context, path, SSL_FILETYPE_PEM) == 1 else {
                throw .configuration("private key file \(path)")
            }
        case .text(let text):
            let key = try withMemoryBIO(text) { bio in PEM_read_bio_PrivateKey(bio, nil, nil, nil) }
            guard let key else { throw .configuration("private key PEM") }
            defer { EVP_PKEY_free(key) }
            guard SSL_CTX_use_PrivateKey(context, key) == 1 else { throw .configuration("private key") }
        }
    }

    private static func loadTrustRoots(_ context: OpaquePointer, _ roots: [TrustRoots]) throws(SSLError) {
        for root in roots {
            switch root {
            case .system:
                guard SSL_CTX_set_default_verify_paths(context) == 1 else { throw .configuration("system trust store") }
            case .file(let path):
                guard SSL_CTX_load_verify_locations(context, path, nil) == 1 else {
                    throw .configuration("CA file \(path)")
                }
            case .directory(let path):
                guard SSL_CTX_load_verify_locations(context, nil, path) == 1 else {
                    throw .configuration("CA directory \(path)")
                }
            case .text(let text):
                let certificates = try readCertificates(text, what: "CA certificates")
                defer { for certificate in certificates { X509_free(certificate) } }
                let store = SSL_CTX_get_cert_store(context)
                for certificate in certificates where X509_STORE_add_cert(store, certificate) != 1 {
                    throw .configuration("adding a CA certificate")
                }
            }
        }
        ERR_clear_error()
    }

    /// Every certificate in `text`, at least one.
    private static func readCertificates(_ text: String, what: String) throws(SSLError) -> [OpaquePointer] {
        let certificates = try withMemoryBIO(text) { bio -> [OpaquePointer] in
            var found: [OpaquePointer] = []
            while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) { found.append(certificate) }
            return found
        }
        // The end of the text leaves a "no start line" error behind.
        ERR_clear_error()
        guard !certificates.isEmpty else {
            throw SSLError(kind: .configuration, reason: "\(what): no PEM certificate found")
        }
        return certificates
    }

    private static func withMemoryBIO<T>(_ text: String, _ body: (OpaquePointer) -> T) throws(SSLError) -> T {
        let bytes = Array(text.utf8)
        let result: T? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return body(bio)
        }
        guard let result else { throw .configuration("BIO_new_mem_buf") }
        return result
    }
}

/// A TLS session a client can offer again to resume (`SSL_SESSION`).
public final class SSLSession: @unchecked Sendable {
    // The SSL_SESSION is immutable once handed out; OpenSSL counts its
    // references atomically.
    let handle: OpaquePointer

    init(adopting handle: OpaquePointer) { self.handle = handle }
    deinit { SSL_SESSION_free(handle) }

    /// Whether the server may still accept it (it carries a ticket or an id).
    public var isResumable: Bool { SSL_SESSION_is_resumable(handle) == 1 }
}
