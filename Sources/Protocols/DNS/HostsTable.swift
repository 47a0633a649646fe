import Glibc

/// The hosts file (/etc/hosts format): addresses by name, names by address.
struct HostsTable: Sendable {
    private var ipv4: [DNSName: [[UInt8]]] = [:]
    private var ipv6: [DNSName: [[UInt8]]] = [:]
    /// Reverse names ("4.3.2.1.in-addr.arpa") to the first name listed.
    private var reverseNames: [DNSName: DNSName] = [:]

    init() {}

    /// Reads `path`; a missing or unreadable file is an empty table.
    init(path: String) {
        self.init(text: readTextFile(path) ?? "")
    }

    init(text: String) {
        for rawLine in text.split(separator: "\n") {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard words.count >= 2 else { continue }
            let names = words.dropFirst().compactMap { try? DNSName($0) }
            var v4 = in_addr()
            var v6 = in6_addr()
            if inet_pton(AF_INET, words[0], &v4) == 1 {
                let bytes = withUnsafeBytes(of: v4) { Array($0) }
                for name in names where !(ipv4[name]?.contains(bytes) ?? false) { ipv4[name, default: []].append(bytes) }
            } else if inet_pton(AF_INET6, words[0], &v6) == 1 {
                let bytes = withUnsafeBytes(of: v6) { Array($0) }
                for name in names where !(ipv6[name]?.contains(bytes) ?? false) { ipv6[name, default: []].append(bytes) }
            } else {
                continue
            }
            if let first = names.first, let reverse = DNSResolver.reverseName(words[0]).flatMap({ try? DNSName($0) }),
                reverseNames[reverse] == nil
            {
                reverseNames[reverse] = first
            }
        }
    }

    func lookup(_ name: DNSName, _ type: DNSRecordType) -> [[UInt8]]? {
        switch type {
        case .a: ipv4[name]
        case .aaaa: ipv6[name]
        default: nil
        }
    }

    func reverse(_ name: DNSName) -> DNSName? { reverseNames[name] }
}
