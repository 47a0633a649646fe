import ArgumentParser
import CAllocationCounter
import EventCore
import Glibc

/// Memory per registered idle event.
struct Memory: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bytes per registered idle event: RSS and heap growth over n events.",
        discussion: """
            Opens n socketpairs (untimed, not counted: their memory is the kernel's), then measures \
            resident memory (/proc/self/statm) and heap in use (mallinfo2) before and after creating \
            n persistent read events on the read ends and adding them, and divides the growth by n. \
            Summary: `memory lib=swiftevent backend=B locking=L n=N rss_bytes_per_event=R \
            heap_bytes_per_event=H`.
            """)

    @Option(name: .short, help: "Registered events.")
    var n = 9000

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard n >= 1 else { throw ValidationError("-n must be positive") }
    }

    func run() throws {
        try raiseDescriptorLimit(to: rlim_t(n * 2 + 64))
        let ring = try Ring(count: n, usePipes: false)
        defer { ring.close() }
        let base = try EventBase(try common.configuration())
        // A first event, so the base's lazily made parts exist before the baseline.
        let first = try Event(base: base, fd: ring.readEnd(0), flags: [.read, .persist]) { _, _ in }
        try first.add()
        try first.delete()
        var events: [Event] = []
        events.reserveCapacity(n)
        let rssBefore = residentBytes()
        let heapBefore = heapInUse()
        for index in 0..<n {
            let event = try Event(base: base, fd: ring.readEnd(index), flags: [.read, .persist]) { _, _ in }
            try event.add()
            events.append(event)
        }
        let rssAfter = residentBytes()
        let heapAfter = heapInUse()
        var summary = Summary("memory")
        summary.add("lib", "swiftevent")
        summary.add("backend", base.method)
        summary.add("locking", base.lockProvider.name)
        summary.add("n", n)
        summary.add("rss_bytes_per_event", Int((Double(rssAfter - rssBefore) / Double(n)).rounded()))
        summary.add("heap_bytes_per_event", Int((Double(heapAfter - heapBefore) / Double(n)).rounded()))
        try summary.emit(csv: common.csv)
        for event in events { try event.delete() }
        try base.shutdown()
    }

    func residentBytes() -> Int {
        guard let file = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(file) }
        var size = 0
        var resident = 0
        guard withUnsafeMutablePointer(to: &size, { sizePointer in
            withUnsafeMutablePointer(to: &resident) { residentPointer in
                withVaList([sizePointer, residentPointer]) { vfscanf(file, "%ld %ld", $0) }
            }
        }) == 2 else { return 0 }
        return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    func heapInUse() -> Int {
        Int(se_heap_in_use())
    }
}
