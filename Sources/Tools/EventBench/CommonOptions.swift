import ArgumentParser
import EventBackends
import EventCore
import EventLocking

/// Options every subcommand takes.
struct CommonOptions: ParsableArguments {
    @Option(name: .short, help: "Backend method: epoll, poll or select (default: as the environment allows).")
    var m: String?

    @Option(name: .long, help: "Lock provider: none, mutex, rcu, debug, debug-rcu (default: EVENT_LOCKING, else mutex).")
    var locking: String?

    @Option(name: .long, help: "Append one CSV row per case to this file.")
    var csv: String?

    func validate() throws {
        if let m, BackendKind(rawValue: m) == nil {
            throw ValidationError("unknown method '\(m)'; expected epoll, poll or select")
        }
    }

    /// The base configuration these options describe (overriding per case).
    func configuration(method: BackendKind? = nil, locking override: String? = nil) throws -> EventBase.Configuration {
        var configuration = EventBase.Configuration()
        configuration.method = method ?? m.flatMap(BackendKind.init(rawValue:))
        if let name = override ?? locking { configuration.lockProvider = try LockProviders.named(name, source: "--locking") }
        return configuration
    }
}
