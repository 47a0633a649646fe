import CEventShims
import Glibc

extension EventBase {
    /// Links a signal event, installing the handler for its signal when it is
    /// the first (libevent's `evsig_add`).
    func insertSignal(_ event: Event) throws(EventError) {
        let signal = event.fd
        let index = Int(signal)
        if signalCounts[index] == 0 {
            let pipe = try ensureSignalPipe()
            try SignalRouter.shared.install(signal, for: self, writeFD: pipe.write)
            installedSignals += 1
        }
        signalCounts[index] += 1
        signalTable.link(event, at: index)
        event.isInserted = true
    }

    func removeSignal(_ event: Event) {
        let signal = event.fd
        let index = Int(signal)
        signalTable.unlink(event, at: index)
        event.readersMayHold = discipline == .readCopyUpdate
        signalCounts[index] -= 1
        event.isInserted = false
        if signalCounts[index] == 0 {
            SignalRouter.shared.uninstall(signal, for: self)
            installedSignals -= 1
        }
    }

    private func ensureSignalPipe() throws(EventError) -> (read: Int32, write: Int32) {
        if let signalPipe { return signalPipe }
        var fds: [Int32] = [-1, -1]
        if se_pipe_nonblocking(&fds) < 0 { throw .system(.last("pipe2")) }
        try watchInternal(fd: fds[0])
        signalPipe = (fds[0], fds[1])
        signalFD = fds[0]
        return (fds[0], fds[1])
    }

    /// Reads caught signal numbers from the pipe and activates their events,
    /// once per delivery (libevent's `evsig_cb`).
    func deliverSignals() {
        guard let pipe = signalPipe else { return }
        var counts = [Int](repeating: 0, count: signalCounts.count)
        var buffer = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(pipe.read, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            for i in 0..<n where Int(buffer[i]) < counts.count { counts[Int(buffer[i])] += 1 }
        }
        for (signal, count) in counts.enumerated() where count > 0 {
            signalTable.forEach(at: signal) { event in applyActivate(event, .signal, calls: count) }
        }
    }

    /// Activates every event on `signal` (libevent's `event_base_active_by_signal`).
    public func activate(signal: Int32) throws(EventError) {
        try SignalRouter.validate(signal: signal)
        try withWriter("EventBase.activate(signal:)") {
            self.signalTable.forEach(at: Int(signal)) { event in self.applyActivate(event, .signal, calls: 1) }
        }
    }
}
