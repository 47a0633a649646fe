// event-dns: a small dig on SwiftEvent's resolver, and a hosts-file DNS server.
import ArgumentParser
import EventBuffers
import EventCore
import EventDNS
import Glibc

@main
struct EventDNSTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "event-dns",
        abstract: "Look names up with SwiftEvent's resolver, or serve a hosts file over DNS.",
        subcommands: [Lookup.self, Serve.self, Bench.self])
}

struct Lookup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look up NAME; prints one answer per line (type and value).",
        discussion: """
            Exits 0 with answers (or none, for a name without records of that type), 1 for \
            NXDOMAIN, 2 for SERVFAIL, 3 for REFUSED, 4 for a timeout, 5 for other errors. \
            --type PTR takes an IPv4 or IPv6 address.
            """)

    @Argument(help: "The name (or address, with --type PTR).")
    var name: String

    @Option(name: .long, help: "A, AAAA, PTR, CNAME, MX, SRV, TXT, NS, ANY or TYPEn.")
    var type = "A"

    @Option(name: .long, help: "HOST or HOST:PORT ([v6]:PORT); repeatable; default: resolv.conf.")
    var nameserver: [String] = []

    @Option(name: .long, help: "Seconds per attempt.")
    var timeout: Double?

    @Option(name: .long, help: "Attempts over the nameservers.")
    var attempts: Int?

    @Flag(name: .long, help: "Query over TCP.")
    var tcp = false

    @Option(name: .long, help: "A resolver option NAME:VALUE (as in resolv.conf); repeatable.")
    var option: [String] = []

    func run() throws {
        guard let recordType = DNSRecordType(name: type) else { throw ValidationError("unknown type \(type)") }
        var configuration = try DNSResolver.Configuration.resolvConf()
        if !nameserver.isEmpty {
            configuration.nameservers = try nameserver.map { text in
                guard let address = DNSResolver.Configuration.nameserver(text) else {
                    throw ValidationError("bad nameserver \(text)")
                }
                return address
            }
        }
        if let timeout { try configuration.apply(option: "timeout:\(timeout)") }
        if let attempts { try configuration.apply(option: "attempts:\(attempts)") }
        if tcp { configuration.forceTCP = true }
        for item in option { try configuration.apply(option: item) }
        configuration.cacheEnabled = false
        let base = try EventBase()
        let resolver = try DNSResolver(base: base, configuration: configuration)
        final class Outcome: @unchecked Sendable { var code: Int32 = 5 }  // loop thread only
        let outcome = Outcome()
        let callback: DNSResolver.Callback = { result in
            switch result {
            case .success(let answer):
                for name in answer.cnameChain { print("CNAME\t\(name).") }
                for record in answer.records { print("\(record.type)\t\(record.data)") }
                if answer.records.isEmpty { print(";; no \(recordType) records for \(answer.question.name)") }
                outcome.code = 0
            case .failure(let error):
                printError("event-dns: \(name): \(error)")
                switch error {
                case .nameError: outcome.code = 1
                case .serverFailure: outcome.code = 2
                case .refused: outcome.code = 3
                case .timeout: outcome.code = 4
                default: outcome.code = 5
                }
            }
            try? base.loopBreak()
        }
        if recordType == .ptr, DNSResolver.reverseName(name) != nil {
            resolver.reverse(name, callback: callback)
        } else {
            resolver.query(name, type: recordType, callback: callback)
        }
        try base.dispatch()
        resolver.shutdown()
        throw ExitCode(outcome.code)
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer A, AAAA and PTR from a hosts-format file over UDP and TCP; NXDOMAIN otherwise.")

    @Option(name: .long, help: "Port.")
    var port: UInt16

    @Option(name: .long, help: "Address to listen on.")
    var address = "127.0.0.1"

    @Option(name: .long, help: "A hosts-format file.")
    var hosts: String

    func run() throws {
        let table = try HostsZone(path: hosts)
        let base = try EventBase()
        let server = try DNSServer(base: base, address: try SocketAddress(ip: address, port: port)) { request in
            guard let question = request.questions.first else {
                try? request.respond(answers: [], responseCode: .formatError)
                return
            }
            let answers = table.answers(question)
            if answers.isEmpty && !table.knows(question.name) {
                try? request.respond(answers: [], responseCode: .nameError)
            } else {
                try? request.respond(answers: answers)
            }
        }
        let interrupt = try Event(base: base, signal: SIGINT) { event, _ in try? event.base.loopExit() }
        try interrupt.add()
        let terminate = try Event(base: base, signal: SIGTERM) { event, _ in try? event.base.loopExit() }
        try terminate.add()
        print("serving \(hosts) on \(server.address)")
        fflush(nil)
        try base.dispatch()
        server.free()
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lookups per second: COUNT lookups of NAME, CONCURRENCY in flight, cache off.",
        discussion: "Summary: `dns-bench nameserver=H:P type=T count=N concurrency=C ok=K lookups_per_s=X`.")

    @Argument(help: "The name to look up.")
    var name: String

    @Option(name: .long, help: "HOST:PORT of the nameserver.")
    var nameserver: String

    @Option(name: .long, help: "Record type.")
    var type = "A"

    @Option(name: .long, help: "Lookups in total.")
    var count = 20_000

    @Option(name: .long, help: "Lookups in flight at once.")
    var concurrency = 64

    func run() throws {
        guard let recordType = DNSRecordType(name: type) else { throw ValidationError("unknown type \(type)") }
        guard let address = DNSResolver.Configuration.nameserver(nameserver) else { throw ValidationError("bad nameserver") }
        var configuration = DNSResolver.Configuration(nameservers: [address])
        configuration.cacheEnabled = false
        configuration.hostsFile = nil
        configuration.maxInflight = concurrency
        configuration.timeout = .seconds(2)
        let base = try EventBase()
        let resolver = try DNSResolver(base: base, configuration: configuration)
        final class State: @unchecked Sendable {  // loop thread only
            var started = 0
            var finished = 0
            var ok = 0
        }
        let state = State()
        let total = count
        let name = self.name
        @Sendable func launch() {
            guard state.started < total else { return }
            state.started += 1
            resolver.query(name, type: recordType, search: false) { result in
                state.finished += 1
                if case .success = result { state.ok += 1 }
                if state.finished == total { try? base.loopBreak() } else { launch() }
            }
        }
        var clock = timespec()
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let start = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9
        for _ in 0..<min(concurrency, total) { launch() }
        try base.dispatch()
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let elapsed = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9 - start
        resolver.shutdown()
        let rate = Double(state.finished) / elapsed
        print("dns-bench nameserver=\(nameserver) type=\(recordType) count=\(total) concurrency=\(concurrency) ok=\(state.ok) lookups_per_s=\(Int(rate))")
    }
}

/// A line on standard error.
func printError(_ text: String) {
    let line = Array((text + "\n").utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
