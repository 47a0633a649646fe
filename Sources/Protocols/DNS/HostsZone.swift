import Glibc

/// A hosts-format file as an authoritative zone for `DNSServer`: A, AAAA
/// and PTR records (what `event-dns serve` answers).
public struct HostsZone: Sendable {
    private let table: HostsTable
    private let names: Set<DNSName>
    public let ttl: UInt32

    public init(path: String, ttl: UInt32 = 60) throws(DNSConfigurationError) {
        guard let text = readTextFile(path) else { throw .unreadable(path, errno) }
        self.init(text: text, ttl: ttl)
    }

    public init(text: String, ttl: UInt32 = 60) {
        table = HostsTable(text: text)
        var names: Set<DNSName> = []
        for rawLine in text.split(separator: "\n") {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard words.count >= 2 else { continue }
            for word in words.dropFirst() { if let name = try? DNSName(word) { names.insert(name) } }
            if let reverse = DNSResolver.reverseName(words[0]).flatMap({ try? DNSName($0) }) { names.insert(reverse) }
        }
        self.names = names
        self.ttl = ttl
    }

    /// Whether the name exists (NXDOMAIN otherwise).
    public func knows(_ name: DNSName) -> Bool { names.contains(name) }

    public func answers(_ question: DNSQuestion) -> [DNSRecord] {
        var records: [DNSRecord] = []
        if question.type == .a || question.type == .any {
            records += (table.lookup(question.name, .a) ?? []).map { DNSRecord.a(question.name, $0, ttl: ttl) }
        }
        if question.type == .aaaa || question.type == .any {
            records += (table.lookup(question.name, .aaaa) ?? []).map { DNSRecord.aaaa(question.name, $0, ttl: ttl) }
        }
        if question.type == .ptr || question.type == .any, let target = table.reverse(question.name) {
            records.append(DNSRecord(name: question.name, type: .ptr, ttl: ttl, data: .ptr(target)))
        }
        return records
    }
}
