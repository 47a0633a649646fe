/// Where in the source a lock was taken, released or waited on. The debug
/// provider reports misuse with the call sites involved; the other providers
/// ignore it (passing it costs two words and no work).
public struct CallSite: Sendable, Hashable, CustomStringConvertible {
    public let file: String
    public let line: UInt

    @inlinable
    public init(file: StaticString = #fileID, line: UInt = #line) {
        self.file = "\(file)"
        self.line = line
    }

    public init(fileName: String, line: UInt) {
        self.file = fileName
        self.line = line
    }

    public var description: String { "\(file):\(line)" }
}
