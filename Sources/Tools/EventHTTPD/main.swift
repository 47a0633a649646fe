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
        let files = StaticFiles(root: String(cString: resolvedRoot), log: !quiet)
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

/// Files under a root: index.html for directories, content types by
/// extension, Last-Modified / If-Modified-Since, single byte ranges, HEAD.
final class StaticFiles: Sendable {
    let root: String
    let log: Bool

    init(root: String, log: Bool) {
        self.root = root
        self.log = log
    }

    static let types: [String: String] = [
        "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8", "txt": "text/plain; charset=utf-8",
        "css": "text/css", "js": "text/javascript", "json": "application/json", "png": "image/png",
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "svg": "image/svg+xml", "ico": "image/x-icon",
        "pdf": "application/pdf", "wasm": "application/wasm", "xml": "application/xml",
    ]

    func serve(_ request: HTTPServerRequest) {
        guard request.method == .get || request.method == .head else {
            reply(request, .methodNotAllowed, HTTPHeaders([("Allow", "GET, HEAD")]), "method not allowed\n")
            return
        }
        let relative = HTTPURI.percentDecode(request.uri.path)
        guard relative.hasPrefix("/"), !relative.utf8.contains(0) else {
            reply(request, .badRequest, HTTPHeaders(), "bad path\n")
            return
        }
        var path = root + relative
        guard let real = realpath(path, nil) else {
            reply(request, .notFound, HTTPHeaders(), "not found\n")
            return
        }
        path = String(cString: real)
        free(real)
        // No escaping the root through "..", symlinks or the like.
        guard path == root || path.hasPrefix(root + "/") else {
            reply(request, .forbidden, HTTPHeaders(), "forbidden\n")
            return
        }
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            guard relative.hasSuffix("/") else {
                reply(request, .movedPermanently, HTTPHeaders([("Location", request.uri.path + "/")]), "moved\n")
                return
            }
            path += "/index.html"
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            if fd >= 0 { close(fd) }
            reply(request, .notFound, HTTPHeaders(), "not found\n")
            return
        }
        let size = Int(info.st_size)
        let modified = info.st_mtim.tv_sec
        var headers = HTTPHeaders()
        let ext = path.split(separator: ".").last.map { $0.lowercased() } ?? ""
        headers.add("Content-Type", Self.types[ext] ?? "application/octet-stream")
        headers.add("Last-Modified", HTTPDate.format(modified))
        headers.add("Accept-Ranges", "bytes")
        if let since = request.headers["If-Modified-Since"], let time = HTTPDate.parse(since), modified <= time {
            close(fd)
            reply(request, .notModified, headers, "")
            return
        }
        var status = HTTPStatus.ok
        var offset = 0
        var length = size
        if let range = request.headers["Range"] {
            guard let (start, end) = Self.byteRange(range, size: size) else {
                close(fd)
                headers.add("Content-Range", "bytes */\(size)")
                reply(request, .rangeNotSatisfiable, headers, "")
                return
            }
            status = .partialContent
            offset = start
            length = end - start + 1
            headers.add("Content-Range", "bytes \(start)-\(end)/\(size)")
        }
        guard let segment = try? FileSegment(fd: fd, offset: Int64(offset), length: length, closeOnFree: true) else {
            close(fd)
            reply(request, .internalServerError, HTTPHeaders(), "cannot read\n")
            return
        }
        request.respond(status, headers: headers, file: segment)
        access(request, status, length)
    }

    /// One "bytes=a-b", "bytes=a-" or "bytes=-n" range within `size`, or nil.
    static func byteRange(_ header: String, size: Int) -> (Int, Int)? {
        guard header.hasPrefix("bytes="), size > 0 else { return nil }
        let spec = header.dropFirst(6)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            guard let suffix = Int(last), suffix > 0 else { return nil }
            return (max(0, size - suffix), size - 1)
        }
        guard let start = Int(first), start < size else { return nil }
        if last.isEmpty { return (start, size - 1) }
        guard let end = Int(last), end >= start else { return nil }
        return (start, min(end, size - 1))
    }

    private func reply(_ request: HTTPServerRequest, _ status: HTTPStatus, _ headers: HTTPHeaders, _ body: String) {
        var headers = headers
        if !body.isEmpty && !headers.contains("Content-Type") { headers.add("Content-Type", "text/plain; charset=utf-8") }
        request.respond(status, headers: headers, body: body)
        access(request, status, body.utf8.count)
    }

    private func access(_ request: HTTPServerRequest, _ status: HTTPStatus, _ bytes: Int) {
        guard log else { return }
        let line = "\(request.peer.host ?? "-") - - [\(HTTPDate.format(time(nil)))] \"\(request.method) \(request.target) \(request.version)\" \(status.code) \(bytes)\n"
        let data = Array(line.utf8)
        _ = data.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }
}
