import COpenSSL
import CSSLShim

/// Why a TLS context could not be made or a TLS connection failed. The
/// `reason` carries OpenSSL's own reason strings (libevent's
/// `bufferevent_get_openssl_error` hands out the same codes).
public struct SSLError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// A configuration OpenSSL refused (a certificate, key, CA, version).
        case configuration
        /// The handshake failed (protocol mismatch, no shared cipher, a
        /// peer that is not speaking TLS, an alert from the peer).
        case handshake
        /// The peer's certificate did not verify (`verifyResult` says why).
        case verification
        /// A protocol error after the handshake (bad record, bad MAC, a
        /// truncated stream when dirty shutdowns are not allowed).
        case `protocol`
        /// The handshake did not finish within the configured time.
        case handshakeTimeout
        /// The transport failed (an errno from the socket).
        case system
    }

    public let kind: Kind
    /// OpenSSL's reason strings, joined by "; " (or our own words when
    /// OpenSSL had none to give).
    public let reason: String
    /// The packed OpenSSL error codes, oldest first.
    public let codes: [UInt]
    /// The certificate verification result (`X509_V_*`), for `.verification`.
    public let verifyResult: Int?

    public init(kind: Kind, reason: String, codes: [UInt] = [], verifyResult: Int? = nil) {
        self.kind = kind
        self.reason = reason
        self.codes = codes
        self.verifyResult = verifyResult
    }

    public var description: String { "TLS \(kind): \(reason)" }

    /// Takes every error on this thread's OpenSSL error queue.
    static func drainQueue() -> (codes: [UInt], reasons: [String]) {
        var codes: [UInt] = []
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            codes.append(UInt(code))
            reasons.append(reasonString(code))
        }
        return (codes, reasons)
    }

    /// "library: reason" for one code, as `openssl errstr` prints it.
    static func reasonString(_ code: UInt) -> String {
        let reason = ERR_reason_error_string(code).map { String(cString: $0) }
        let library = ERR_lib_error_string(code).map { String(cString: $0) }
        switch (library, reason) {
        case let (library?, reason?): return "\(library): \(reason)"
        case let (nil, reason?): return reason
        default:
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// A configuration error from what OpenSSL queued, with `what` in front.
    static func configuration(_ what: String) -> SSLError {
        let (codes, reasons) = drainQueue()
        let detail = reasons.isEmpty ? "" : ": " + reasons.joined(separator: "; ")
        return SSLError(kind: .configuration, reason: what + detail, codes: codes)
    }
}
