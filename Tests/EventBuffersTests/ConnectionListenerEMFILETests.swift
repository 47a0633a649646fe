import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

/// Running out of descriptors, in a child process whose descriptor limit the
/// test lowers (Swift Testing exit tests): nothing here touches the limits of
/// the process that runs the other tests.
@Suite("ConnectionListener when the process runs out of descriptors")
struct ConnectionListenerEMFILETests {
    /// The listener reports EMFILE through the error callback, backs off
    /// instead of spinning (a handful of reports and little CPU in 300 ms),
    /// and accepts the waiting clients once descriptors are free again.
    @Test func runningOutOfDescriptorsIsReportedWithoutSpinningAndRecovers() async {
        await #expect(processExitsWith: .success) {
            if let failure = EMFILEScenario.run() {
                EMFILEScenario.fail(failure)
            }
        }
    }
}

/// The body of the exit test; returns what went wrong, or nil.
enum EMFILEScenario {
    /// Records why (exit tests forward issues to the parent) and exits with a failure status.
    static func fail(_ reason: String) -> Never {
        Issue.record("EMFILE scenario failed: \(reason)")
        exit(1)
    }

    static func run() -> String? {
        do {
            return try scenario()
        } catch {
            return "threw \(error)"
        }
    }

    private static func highestOpenDescriptor() -> Int32 {
        guard let directory = opendir("/proc/self/fd") else { return 1024 }
        defer { closedir(directory) }
        var highest: Int32 = 2
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let fd = Int32(name) { highest = max(highest, fd) }
        }
        return highest
    }

    private static func connectClient(port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    private static func cpuTime() -> Duration {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return .seconds(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + .microseconds(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec)
    }

    private static func scenario() throws -> String? {
        let base = try BEKit.ownedBase()
        let accepted = BEVar<[Int32]>([])
        let errors = BEVar<[Int32]>([])
        let listener = try ConnectionListener(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: 0)) { _, fd, _ in
            accepted.value.append(fd)
        }
        listener.setErrorCallback { _, error in errors.value.append(error) }
        guard let port = listener.localAddress?.port else { return "no port" }
        // Let the loop settle once (lazy internal descriptors, if any).
        try BEKit.spin(base, for: .milliseconds(10))

        let clientCount = 5
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = rlim_t(highestOpenDescriptor() + 1 + 32)
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return "setrlimit: errno \(errno)" }

        var clients: [Int32] = []
        for _ in 0..<clientCount {
            let fd = connectClient(port: port)
            guard fd >= 0 else { return "client connect failed: errno \(errno)" }
            clients.append(fd)
        }
        // Take every descriptor left: accept can only fail now.
        var fillers: [Int32] = []
        while true {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if fd < 0 {
                guard errno == EMFILE else { return "filling descriptors: errno \(errno)" }
                break
            }
            fillers.append(fd)
        }

        let cpuBefore = cpuTime()
        try BEKit.spin(base, for: .milliseconds(300))
        let cpuUsed = cpuTime() - cpuBefore
        let reportsWhileOut = errors.value.count
        if !accepted.value.isEmpty { return "accepted \(accepted.value.count) connections with no descriptor free" }
        if reportsWhileOut == 0 { return "no error reported while out of descriptors" }
        if errors.value.contains(where: { $0 != EMFILE }) { return "errors other than EMFILE: \(errors.value)" }
        if reportsWhileOut > 20 { return "spinning: \(reportsWhileOut) EMFILE reports in 300 ms" }
        if cpuUsed > .milliseconds(150) { return "spinning: \(cpuUsed) of CPU in 300 ms" }

        for fd in fillers { close(fd) }
        let recovered = try BEKit.run(base, timeout: .seconds(3)) { accepted.value.count == clientCount }
        if !recovered { return "accepted \(accepted.value.count) of \(clientCount) clients after descriptors were freed" }

        for fd in accepted.value + clients { close(fd) }
        BEKit.finish(base, listeners: [listener])
        return nil
    }
}
