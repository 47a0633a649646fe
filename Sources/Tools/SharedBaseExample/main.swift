// The README's example: a shared base used from two threads.
import EventCore
import EventLocking
import Foundation

// A shared base: any thread may use it (mutex is also the default).
let base = try EventBase(.init(method: nil, lockProvider: MutexLockProvider()))

var fds: [Int32] = [-1, -1]
socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds)

// Runs on the loop thread whenever fds[0] is readable.
let reader = try Event(base: base, fd: fds[0], flags: [.read, .persist]) { event, what in
    var buffer = [UInt8](repeating: 0, count: 64)
    let n = read(event.fd, &buffer, buffer.count)
    print("read \(n) bytes (\(what))")
}
try reader.add(timeout: .seconds(5))

// The loop runs on another thread...
let loop = Thread { _ = try? base.loop(.noExitOnEmpty) }
loop.start()

// ...while this one adds a timer, writes, deletes and stops the loop.
let timer = try Event.timer(base: base) { _, _ in print("timer fired on the loop thread") }
try timer.add(timeout: .milliseconds(10))
_ = write(fds[1], "hi", 2)
usleep(50_000)
try reader.delete()  // returns once the callback is not running and will not run again
try base.loopBreak()
while base.isRunning { usleep(1_000) }
