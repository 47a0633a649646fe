import ArgumentParser

@main
struct EventBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "event-bench",
        abstract: "Benchmarks of SwiftEvent, with methods comparable to libevent's own.",
        subcommands: [Pipes.self, Cascade.self, Threads.self, Lookups.self, Timers.self, Throughput.self, Allocations.self, Memory.self, HTTPLoad.self, HTTPServe.self, RPCBench.self]
    )
}
