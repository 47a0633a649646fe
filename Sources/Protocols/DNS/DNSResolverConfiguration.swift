import EventBuffers
import Glibc

extension DNSResolver {
    /// Nameservers and options (libevent's `evdns_base_resolv_conf_parse`
    /// and `evdns_base_set_option`), from resolv.conf or from code.
    public struct Configuration: Sendable, Hashable {
        /// Tried in this order (rotated per request with `rotate`).
        public var nameservers: [SocketAddress] = []
        /// Appended to names with fewer than `ndots` dots (resolv.conf `search`/`domain`).
        public var searchDomains: [DNSName] = []
        public var ndots = 1
        /// One attempt's wait for an answer.
        public var timeout: Duration = .seconds(5)
        /// Rounds over the nameservers before a request fails with a timeout.
        public var attempts = 2
        public var rotate = false
        /// Requests sent at once; the rest wait (libevent's max-inflight).
        public var maxInflight = 64
        /// 0x20 case randomisation; the echoed question must match byte for byte.
        public var randomizeCase = true
        /// First wait before probing a nameserver marked down (doubling, at most 1 h).
        public var initialProbeTimeout: Duration = .seconds(10)
        /// Consecutive timeouts before a nameserver is marked down.
        public var maxNameserverTimeouts = 3
        /// EDNS0 UDP payload size offered; nil sends no OPT record.
        public var ednsUDPSize: UInt16? = 1232
        /// Every query over TCP.
        public var forceTCP = false
        public var cacheEnabled = true
        public var cacheCapacity = 4096
        /// The hosts file consulted first by address lookups (nil: none).
        public var hostsFile: String? = "/etc/hosts"

        public init(nameservers: [SocketAddress] = []) { self.nameservers = nameservers }

        /// Reads resolv.conf (nameserver, domain, search, options ndots,
        /// timeout, attempts, rotate, and libevent's max-inflight,
        /// randomize-case, initial-probe-timeout, edns-udp-size, use-vc). With no
        /// nameserver line, 127.0.0.1:53, as glibc does.
        public static func resolvConf(path: String = "/etc/resolv.conf") throws(DNSConfigurationError) -> Configuration {
            guard let text = readTextFile(path) else { throw .unreadable(path, errno) }
            return try parse(resolvConf: text)
        }

        public static func parse(resolvConf text: String) throws(DNSConfigurationError) -> Configuration {
            var configuration = Configuration()
            for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = rawLine.split(whereSeparator: { $0 == "#" || $0 == ";" }).first.map(String.init) ?? ""
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
                guard let keyword = words.first else { continue }
                switch keyword {
                case "nameserver":
                    guard words.count >= 2, let address = Self.nameserver(words[1]) else {
                        throw .badLine(number + 1, String(rawLine))
                    }
                    configuration.nameservers.append(address)
                case "domain", "search":
                    // The last of domain/search wins, as in glibc.
                    configuration.searchDomains = words.dropFirst().compactMap { try? DNSName($0) }
                case "options":
                    for option in words.dropFirst() { try configuration.apply(option: option) }
                default:
                    continue
                }
            }
            if configuration.nameservers.isEmpty, let local = try? SocketAddress(ipv4: "127.0.0.1", port: 53) {
                configuration.nameservers = [local]
            }
            return configuration
        }

        /// "1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353".
        public static func nameserver(_ text: String) -> SocketAddress? {
            if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
                let host = String(text[text.index(after: text.startIndex)..<close])
                let rest = text[text.index(after: close)...]
                let port = rest.hasPrefix(":") ? UInt16(rest.dropFirst()) : (rest.isEmpty ? 53 : nil)
                guard let port else { return nil }
                return try? SocketAddress(ipv6: host, port: port)
            }
            if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
                guard let port = UInt16(text[text.index(after: colon)...]) else { return nil }
                return try? SocketAddress(ipv4: String(text[..<colon]), port: port)
            }
            return try? SocketAddress(ip: text, port: 53)
        }

        /// One option, "name:value" or "name" (libevent's `evdns_base_set_option`).
        public mutating func apply(option: String) throws(DNSConfigurationError) {
            let parts = option.split(separator: ":", maxSplits: 1).map(String.init)
            let name = parts[0]
            let value = parts.count > 1 ? parts[1] : nil
            func number(_ range: ClosedRange<Int>) throws(DNSConfigurationError) -> Int {
                guard let value, let parsed = Int(value), range.contains(parsed) else { throw .badOption(option) }
                return parsed
            }
            func seconds() throws(DNSConfigurationError) -> Duration {
                guard let value, let parsed = Double(value), parsed > 0, parsed <= 3600 else { throw .badOption(option) }
                return .nanoseconds(Int64(parsed * 1e9))
            }
            switch name {
            case "ndots": ndots = try number(0...15)
            case "timeout": timeout = try seconds()
            case "attempts": attempts = try number(1...20)
            case "rotate": rotate = true
            case "max-inflight": maxInflight = try number(1...65_535)
            case "randomize-case": randomizeCase = try number(0...1) == 1
            case "initial-probe-timeout": initialProbeTimeout = try seconds()
            case "max-timeouts": maxNameserverTimeouts = try number(1...255)
            case "edns-udp-size":
                let size = try number(0...65_535)
                ednsUDPSize = size == 0 ? nil : UInt16(max(512, size))
            case "use-vc", "tcp": forceTCP = true
            case "cache": cacheEnabled = try number(0...1) == 1
            case "debug", "inet6", "edns0", "single-request", "single-request-reopen", "no-check-names", "trust-ad":
                // glibc's options that do not apply here.
                break
            default:
                throw .badOption(option)
            }
        }
    }
}

public enum DNSConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    case unreadable(String, Int32)
    case badLine(Int, String)
    case badOption(String)
    case noNameservers

    public var description: String {
        switch self {
        case .unreadable(let path, let error): "cannot read \(path): \(String(cString: strerror(error)))"
        case .badLine(let number, let line): "resolv.conf line \(number) is not understood: \(line.debugDescription)"
        case .badOption(let option): "unknown or bad resolver option \(option.debugDescription)"
        case .noNameservers: "no nameservers configured"
        }
    }
}

/// A whole text file, or nil (errno says why) when it cannot be read.
func readTextFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var text = ""
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(line) }
    while getline(&line, &capacity, file) > 0, let line { text += String(cString: line) }
    return text
}
