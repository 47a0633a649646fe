// event-httpd: serves a directory over HTTP/1.1 (and HTTPS) with SwiftEvent.
import ArgumentParser
import Dispatch
import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import EventSSL
import Foundation
import Glibc

@main
struct EventHTTPD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "event-httpd",
        abstract: "Serve a directory over HTTP/1.1: index files, content types, Last-Modified, ranges, an access log.",
        discussion: """
            --mode owned runs --threads loops, each with its own base and server on one port \
            (SO_REUSEPORT), no locks. --mode shared runs one shared base (lock provider \
            --locking) and hands each request to --threads worker threads, which answer it.
            """)

    @Option(name: .long, help: "The directory to serve.")
    var root: String

    @Option(name: .long, help: "Port.")
    var port: UInt16 = 8080

    @Option(name: .long, help: "Address to listen on.")
    var address = "127.0.0.1"

    @Option(name: .long, help: "Loop threads (owned) or worker threads (shared).")
    var threads = 1

    @Option(name: .long, help: "owned or shared.")
    var mode = "owned"

    @Option(name: .long, help: "Lock provider for --mode shared: mutex, rcu, debug.")
    var locking = "mutex"

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve HTTPS.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert.")
    var tlsKey: String?

    @Flag(name: .long, help: "No access log.")
    var quiet = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard mode == "owned" || mode == "shared" else { throw ValidationError("--mode is owned or shared") }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        var info = stat()
        guard stat(root, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { throw ValidationError("--root \(root) is not a directory") }
    }

    func run() throws {
        guard let resolvedRoot = realpath(root, nil) else { throw ValidationError("cannot resolve \(root)") }
        let files = HTTPStaticFiles(root: String(cString: resolvedRoot), accessLog: quiet ? nil : HTTPStaticFiles.standardOutputLog)
        free(resolvedRoot)
        var tls: SSLContext?
        if let tlsCert, let tlsKey {
            var configuration = SSLContext.Configuration.server(
                certificateChain: .file(tlsCert), privateKey: .file(tlsKey), applicationProtocols: ["http/1.1"])
            configuration.minimumVersion = .tls12
            tls = try SSLContext(configuration)
        }
        let listen = try SocketAddress(ip: address, port: port)
        if mode == "owned" {
            // One base and one server per thread, all on one port (SO_REUSEPORT).
            let servers = try HTTPServer.reusePortGroup(count: threads, address: listen, tls: tls) { server in
                server.setGenericHandler { request in files.serve(request) }
            }
            print("event-httpd: serving \(root) on \(servers.address) (\(threads) owned loop\(threads == 1 ? "" : "s"))")
            fflush(nil)
            servers.wait()
        } else {
            let provider: any LockProvider = switch locking {
            case "rcu": RCULockProvider()
            case "debug": DebugLockProvider()
            default: MutexLockProvider()
            }
            let base = try EventBase(.init(method: nil, lockProvider: provider))
            let server = HTTPServer(base: base)
            let workers = DispatchQueue(label: "event-httpd.workers", attributes: .concurrent)
            let slots = DispatchSemaphore(value: threads)
            server.setGenericHandler { request in
                // Answered from a worker thread: the shared base makes that safe.
                workers.async {
                    slots.wait()
                    files.serve(request)
                    slots.signal()
                }
            }
            let bound = try server.bind(listen, tls: tls)
            let interrupt = try Event(base: base, signal: SIGINT) { event, _ in try? event.base.loopExit() }
            try interrupt.add()
            print("event-httpd: serving \(root) on \(bound) (shared base, \(provider.name), \(threads) workers)")
            fflush(nil)
            try base.dispatch()
            server.free()
        }
    }
}

