// Helpers for the EventBuffer tests: deterministic byte patterns, buffers
// built from segments of known sizes, temporary files, descriptor checks,
// a TCP pair for resets. Namespaced in `EBFixture` so they cannot clash with
// other test files of this target.
import EventBackends
import EventBuffers
import Glibc
import Testing

enum EBFixture {
    /// `count` pseudo-random bytes, the same for the same `seed` (xorshift64).
    static func pattern(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
        var state = seed | 1
        var bytes = [UInt8](repeating: 0, count: count)
        for index in 0..<count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            bytes[index] = UInt8(truncatingIfNeeded: state >> 24)
        }
        return bytes
    }

    /// A small deterministic generator for sizes and choices.
    struct Random {
        var state: UInt64
        init(seed: UInt64) { state = seed | 1 }
        mutating func next(_ range: ClosedRange<Int>) -> Int {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return range.lowerBound + Int(state % UInt64(range.count))
        }
    }

    /// Every byte of `buffer`, copied out (the buffer is unchanged).
    static func contents(_ buffer: EventBuffer) throws -> [UInt8] {
        try buffer.copyOut(count: buffer.count)
    }

    /// nil when `got` equals `expected`, else a short description of the
    /// first difference (so a failure does not print megabytes).
    static func difference(_ got: some Collection<UInt8>, _ expected: some Collection<UInt8>) -> String? {
        let got = Array(got)
        let expected = Array(expected)
        if got == expected { return nil }
        let index = (0..<min(got.count, expected.count)).first { got[$0] != expected[$0] } ?? min(got.count, expected.count)
        let around = { (bytes: [UInt8]) in Array(bytes[index..<min(bytes.count, index + 8)]) }
        return "\(got.count) bytes, expected \(expected.count); first difference at \(index): "
            + "\(around(got)) instead of \(around(expected))"
    }

    /// The bytes `peek` reports, concatenated.
    static func peekedBytes(_ buffer: EventBuffer) throws -> [UInt8] {
        try buffer.peek().flatMap { Array($0) }
    }

    /// The errno of a `.system` buffer error, nil for anything else.
    static func systemErrno(_ error: any Error) -> Int32? {
        if case .system(let failure)? = error as? BufferError { return failure.errno }
        return nil
    }

    /// Runs `body`, which must throw a `.system` error with `expected` errno.
    static func expectSystemError(
        _ expected: Int32, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("expected errno \(expected), nothing was thrown", sourceLocation: sourceLocation)
        } catch {
            #expect(systemErrno(error) == expected, "got \(error)", sourceLocation: sourceLocation)
        }
    }

    /// Memory owned by a test and lent to buffers by reference.
    final class LentMemory: @unchecked Sendable {
        // Written once in init, read-only afterwards; freed in deinit.
        let bytes: UnsafeMutableRawBufferPointer
        init(_ content: [UInt8]) {
            bytes = .allocate(byteCount: max(content.count, 1), alignment: 16)
            content.withUnsafeBytes { bytes.copyMemory(from: $0) }
        }
        var base: UnsafeRawPointer { UnsafeRawPointer(bytes.baseAddress!) }
        deinit { bytes.deallocate() }
    }

    /// A buffer whose segments are exactly `pieces`, in order: each piece is
    /// added by reference to memory kept alive by the returned array.
    static func segmented(_ pieces: [[UInt8]]) throws -> (EventBuffer, [LentMemory]) {
        let buffer = EventBuffer()
        var memories: [LentMemory] = []
        for piece in pieces {
            let memory = LentMemory(piece)
            memories.append(memory)
            try buffer.add(reference: memory.base, count: piece.count)
        }
        return (buffer, memories)
    }

    /// A buffer whose segments are `pieces` (strings), with lent memory.
    static func segmented(_ pieces: [String]) throws -> (EventBuffer, [LentMemory]) {
        try segmented(pieces.map { Array($0.utf8) })
    }

    /// Where `fd` points (`/proc/self/fd`), nil when it is not open.
    static func target(of fd: Int32) -> String? {
        var link = [UInt8](repeating: 0, count: 4096)
        let n = link.withUnsafeMutableBufferPointer { raw in
            raw.withMemoryRebound(to: CChar.self) { readlink("/proc/self/fd/\(fd)", $0.baseAddress!, $0.count) }
        }
        return n < 0 ? nil : String(decoding: link[0..<n], as: UTF8.self)
    }

    /// Waits until `fd` reports one of `events`; false on timeout.
    @discardableResult
    static func wait(_ fd: Int32, for events: Int32, timeoutMilliseconds: Int32 = 5_000) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(events), revents: 0)
        var rc: Int32
        repeat { rc = poll(&entry, 1, timeoutMilliseconds) } while rc < 0 && errno == EINTR
        return rc == 1
    }

    /// A blocking pipe: (read end, write end).
    static func makePipe() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let rc = pipe(&fds)
        precondition(rc == 0, "pipe: \(String(cString: strerror(errno)))")
        return (fds[0], fds[1])
    }

    /// Reads `fd` (non-blocking or not) until `count` bytes arrived or
    /// `timeoutMilliseconds` passed without progress.
    static func readExactly(_ count: Int, from fd: Int32, timeoutMilliseconds: Int32 = 5_000) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while result.count < count {
            guard wait(fd, for: POLLIN, timeoutMilliseconds: timeoutMilliseconds) else { break }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, min($0.count, count - result.count)) }
            if n > 0 {
                result += chunk[0..<n]
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                break
            }
        }
        return result
    }

    /// Sets or clears O_NONBLOCK.
    static func setNonBlocking(_ fd: Int32, _ on: Bool = true) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK)
    }

    /// A connected TCP pair over loopback: (client, server), both blocking.
    static func tcpPair() throws -> (client: Int32, server: Int32) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
        }
        try #require(bound == 0)
        try #require(listen(listener, 1) == 0)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        try #require(named == 0)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(client >= 0)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) }
        }
        guard connected == 0 else {
            close(client)
            throw SystemCallError.last("connect")
        }
        let server = accept(listener, nil, nil)
        guard server >= 0 else {
            close(client)
            throw SystemCallError.last("accept")
        }
        return (client, server)
    }
}

/// A temporary regular file holding given bytes; removed on deinit.
final class EBTempFile {
    let path: String
    let content: [UInt8]

    init(_ content: [UInt8]) throws {
        var template = Array("/tmp/EventBufferTests.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        defer { close(fd) }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.content = content
        var offset = 0
        while offset < content.count {
            let n = content.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            try #require(n > 0)
            offset += n
        }
    }

    convenience init(_ text: String) throws { try self.init(Array(text.utf8)) }

    /// A new read-only descriptor for the file; the caller closes it (or
    /// hands it to a buffer that closes it).
    func open() throws -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        return fd
    }

    /// Whether `fd` is open on this very file.
    func isOpen(_ fd: Int32) -> Bool { EBFixture.target(of: fd) == path }

    deinit { unlink(path) }
}
