import EventBuffers
import Testing

@Suite struct SmokeBufferTests {
    @Test func addRemoveLines() throws {
        let buffer = EventBuffer()
        try buffer.add("hello\r\nworld\n")
        #expect(buffer.count == 13)
        #expect(try buffer.readLineString(.crlf) == "hello")
        #expect(try buffer.readLineString(.crlf) == "world")
        #expect(try buffer.readLineString(.crlf) == nil)
        let big = [UInt8](repeating: 7, count: 100_000)
        try buffer.add(big)
        let other = EventBuffer()
        #expect(try buffer.move(upTo: 50_000, into: other) == 50_000)
        #expect(other.count == 50_000 && buffer.count == 50_000)
        let pulled = try #require(try other.pullUp(50_000))
        #expect(pulled.count == 50_000 && pulled.allSatisfy { $0 == 7 })
        let space = try buffer.reserve(10)
        Array("abcdefghij".utf8).withUnsafeBytes { space[0].copyMemory(from: $0) }
        try buffer.commit(10)
        #expect(buffer.count == 50_010)
        #expect(buffer.search(Array("cde".utf8)) == EventBuffer.Position(50_002))
    }
}
