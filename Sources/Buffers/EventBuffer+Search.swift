import Glibc

extension EventBuffer {
    /// A place in a buffer, counted in bytes from the front (libevent's
    /// `evbuffer_ptr`). Valid until bytes are removed from the front.
    public struct Position: Sendable, Hashable, Comparable {
        public let offset: Int
        public init(_ offset: Int) { self.offset = offset }
        public static func < (a: Position, b: Position) -> Bool { a.offset < b.offset }
    }

    /// How lines end (libevent's `evbuffer_eol_style`).
    public enum EndOfLine: Sendable, Hashable, CaseIterable {
        /// Any run of CR and LF characters (`EVBUFFER_EOL_ANY`).
        case any
        /// LF, optionally preceded by CR (`EVBUFFER_EOL_CRLF`).
        case crlf
        /// Exactly CR LF (`EVBUFFER_EOL_CRLF_STRICT`).
        case crlfStrict
        /// LF (`EVBUFFER_EOL_LF`).
        case lf
        /// A NUL byte (`EVBUFFER_EOL_NUL`).
        case nul
    }

    /// The position `offset` bytes in, or an error past the end
    /// (libevent's `evbuffer_ptr_set` with `EVBUFFER_PTR_SET`).
    public func position(at offset: Int) throws(BufferError) -> Position {
        try withLock { () throws(BufferError) in
            guard offset >= 0, offset <= total else { throw .outOfRange(position: offset, length: total) }
            return Position(offset)
        }
    }

    /// `position` moved by `distance` bytes (`EVBUFFER_PTR_ADD`).
    public func advance(_ position: Position, by distance: Int) throws(BufferError) -> Position {
        try self.position(at: position.offset + distance)
    }

    /// The first occurrence of `needle` at or after `start` that ends at or
    /// before `end` (libevent's `evbuffer_search_range`).
    public func search(
        _ needle: some Collection<UInt8>, from start: Position = Position(0), to end: Position? = nil
    ) -> Position? {
        let pattern = Array(needle)
        return withLock {
            let limit = min(end?.offset ?? total, total)
            guard !pattern.isEmpty else { return start.offset <= limit ? start : nil }
            var from = start.offset
            while from + pattern.count <= limit {
                guard let candidate = firstIndex(of: pattern[0], from: from, before: limit - pattern.count + 1) else {
                    return nil
                }
                if matches(pattern, at: candidate) { return Position(candidate) }
                from = candidate + 1
            }
            return nil
        }
    }

    /// Where the first end of line at or after `start` begins, and how many
    /// bytes it spans (libevent's `evbuffer_search_eol`).
    public func searchEndOfLine(_ style: EndOfLine, from start: Position = Position(0)) -> (Position, length: Int)? {
        withLock { findEndOfLine(style, from: start.offset) }
    }

    /// Removes and returns the next line without its end-of-line bytes, or
    /// nil when no complete line is buffered (libevent's `evbuffer_readln`).
    public func readLine(_ style: EndOfLine = .crlf) throws(BufferError) -> [UInt8]? {
        try withLock { () throws(BufferError) -> [UInt8]? in
            try checkStart("EventBuffer.readLine")
            guard let (eol, eolLength) = findEndOfLine(style, from: 0) else { return nil }
            let line = try copyToArray(count: eol.offset, from: 0)
            dropFront(eol.offset + eolLength)
            changed(removed: eol.offset + eolLength)
            return line
        }
    }

    /// ``readLine(_:)`` decoded as UTF-8 (invalid sequences repaired).
    public func readLineString(_ style: EndOfLine = .crlf) throws(BufferError) -> String? {
        try readLine(style).map { String(decoding: $0, as: UTF8.self) }
    }

    // MARK: scanning (the lock is held)

    /// The byte at absolute `offset` (< total).
    func byte(at offset: Int) -> UInt8 {
        var skip = offset
        var index = 0
        while true {
            let segment = segments[index]
            if skip < segment.length {
                return ((try? bytesOf(segment)) ?? UnsafeMutableRawPointer(bitPattern: 1)!).load(
                    fromByteOffset: skip, as: UInt8.self)
            }
            skip -= segment.length
            index += 1
        }
    }

    /// The first offset in `from..<before` holding `value` (memchr per segment).
    func firstIndex(of value: UInt8, from: Int, before: Int) -> Int? {
        firstIndex(from: from, before: before) { run in
            guard let start = run.baseAddress, let hit = memchr(start, Int32(value), run.count) else { return nil }
            return UnsafeRawPointer(hit) - start
        }
    }

    /// Runs `find` over each contiguous run of bytes in `from..<before`;
    /// `find` returns the index of a hit within the run.
    func firstIndex(from: Int, before: Int, _ find: (UnsafeRawBufferPointer) -> Int?) -> Int? {
        guard from < before else { return nil }
        var segmentStart = 0
        var index = 0
        while index < segments.count && segmentStart < before {
            let segment = segments[index]
            let segmentEnd = segmentStart + segment.length
            if segmentEnd > from, let bytes = try? bytesOf(segment) {
                let runStart = max(from, segmentStart)
                let runEnd = min(before, segmentEnd)
                let run = UnsafeRawBufferPointer(start: bytes + (runStart - segmentStart), count: runEnd - runStart)
                if let hit = find(run) { return runStart + hit }
            }
            segmentStart = segmentEnd
            index += 1
        }
        return nil
    }

    /// Whether `pattern` is at `offset` (it may span segments).
    func matches(_ pattern: [UInt8], at offset: Int) -> Bool {
        guard offset + pattern.count <= total else { return false }
        for (i, expected) in pattern.enumerated() where byte(at: offset + i) != expected { return false }
        return true
    }

    func findEndOfLine(_ style: EndOfLine, from start: Int) -> (Position, length: Int)? {
        switch style {
        case .lf:
            return firstIndex(of: 0x0A, from: start, before: total).map { (Position($0), 1) }
        case .nul:
            return firstIndex(of: 0x00, from: start, before: total).map { (Position($0), 1) }
        case .crlfStrict:
            var from = start
            while let cr = firstIndex(of: 0x0D, from: from, before: total - 1) {
                if byte(at: cr + 1) == 0x0A { return (Position(cr), 2) }
                from = cr + 1
            }
            return nil
        case .crlf:
            guard let lf = firstIndex(of: 0x0A, from: start, before: total) else { return nil }
            if lf > start && byte(at: lf - 1) == 0x0D { return (Position(lf - 1), 2) }
            return (Position(lf), 1)
        case .any:
            guard
                let first = firstIndex(from: start, before: total, { run in
                    run.firstIndex { $0 == 0x0D || $0 == 0x0A }
                })
            else { return nil }
            var end = first
            while end < total, byte(at: end) == 0x0D || byte(at: end) == 0x0A { end += 1 }
            return (Position(first), end - first)
        }
    }
}
