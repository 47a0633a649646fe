/// Where in the source a lock was taken, released or waited on. The debug
/// provider reports misuse with the call sites involved; the other providers
/// ignore it. Passing one costs three words and no work: the file name stays
/// a `StaticString` until someone reads it.
public struct CallSite: Sendable, Hashable, CustomStringConvertible {
    public let fileID: StaticString
    public let line: UInt

    @inlinable
    public init(file: StaticString = #fileID, line: UInt = #line) {
        self.fileID = file
        self.line = line
    }

    /// The `#fileID` of the call, as a string.
    public var file: String { fileID.description }

    public var description: String { "\(file):\(line)" }

    public static func == (lhs: CallSite, rhs: CallSite) -> Bool {
        lhs.line == rhs.line && lhs.file == rhs.file
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(file)
        hasher.combine(line)
    }
}
