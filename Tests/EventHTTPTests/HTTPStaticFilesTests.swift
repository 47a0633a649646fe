import EventBuffers
import EventCore
@testable import EventHTTP
import EventTestSupport
import Foundation
import Glibc
import Testing

/// `HTTPStaticFiles` (what event-httpd serves) against curl.
@Suite("HTTP static files: paths, conditional requests, byte ranges, with curl")
struct HTTPStaticFilesTests {
    /// A temporary site: /a.txt (the 26 letters), /dir/index.html, and a
    /// file outside the root reachable only through "..".
    final class Site {
        let parent: String
        let root: String

        init() throws {
            parent = NSTemporaryDirectory() + "static-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            root = parent + "/site"
            try FileManager.default.createDirectory(atPath: root + "/dir", withIntermediateDirectories: true)
            try "abcdefghijklmnopqrstuvwxyz".write(toFile: root + "/a.txt", atomically: true, encoding: .utf8)
            try "<p>index</p>".write(toFile: root + "/dir/index.html", atomically: true, encoding: .utf8)
            try "secret".write(toFile: parent + "/secret.txt", atomically: true, encoding: .utf8)
            try FileManager.default.createSymbolicLink(atPath: root + "/link.txt", withDestinationPath: parent + "/secret.txt")
        }

        deinit { try? FileManager.default.removeItem(atPath: parent) }
    }

    private func serving(_ body: (_ url: String) throws -> Void) throws {
        let site = try Site()
        let files = HTTPStaticFiles(root: site.root)
        let server = try TestServer(setup: { $0.setGenericHandler { request in files.serve(request) } })
        defer { server.stop() }
        try body("http://127.0.0.1:\(server.port)")
    }

    private func curl(_ arguments: [String]) throws -> String {
        try Shell.run("/usr/bin/curl", ["-sS", "--max-time", "10"] + arguments)
    }

    /// Status code, then headers and body, as curl -i shows them.
    private func get(_ url: String, _ extra: [String] = []) throws -> (status: Int, head: String, body: String) {
        let output = try curl(["-i"] + extra + [url])
        let parts = output.components(separatedBy: "\r\n\r\n")
        let head = parts[0]
        let status = Int(head.split(separator: " ")[1]) ?? 0
        return (status, head, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    @Test func filesIndexesRedirectsAndRefusals() throws {
        try serving { url in
            let file = try get(url + "/a.txt")
            #expect(file.status == 200)
            #expect(file.body == "abcdefghijklmnopqrstuvwxyz")
            #expect(file.head.contains("Content-Type: text/plain; charset=utf-8"))
            #expect(file.head.contains("Content-Length: 26"))
            #expect(file.head.contains("Last-Modified: "))
            #expect(file.head.contains("Accept-Ranges: bytes"))
            let index = try get(url + "/dir/")
            #expect(index.status == 200 && index.body == "<p>index</p>")
            #expect(index.head.contains("text/html"))
            let redirect = try get(url + "/dir")
            #expect(redirect.status == 301 && redirect.head.contains("Location: /dir/"))
            #expect(try get(url + "/missing.txt").status == 404)
            // Out of the root by "..", or by a symlink: never served.
            let dots = try get(url + "/../secret.txt", ["--path-as-is"])
            #expect(dots.status == 403 || dots.status == 404)
            #expect(!dots.body.contains("secret"))
            let link = try get(url + "/link.txt")
            #expect(link.status == 403 && !link.body.contains("secret"))
            #expect(try get(url + "/a.txt", ["-X", "POST"]).status == 405)
            let head = try curl(["-sS", "-I", url + "/a.txt"])
            #expect(head.contains("Content-Length: 26"))
            #expect(!head.contains("abc"))
        }
    }

    @Test func ifModifiedSinceGives304() throws {
        try serving { url in
            let first = try get(url + "/a.txt")
            let line = first.head.components(separatedBy: "\r\n").first { $0.hasPrefix("Last-Modified: ") } ?? ""
            let date = String(line.dropFirst("Last-Modified: ".count))
            #expect(!date.isEmpty)
            let again = try get(url + "/a.txt", ["-H", "If-Modified-Since: \(date)"])
            #expect(again.status == 304)
            #expect(again.body.isEmpty)
            let old = try get(url + "/a.txt", ["-H", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"])
            #expect(old.status == 200)
        }
    }

    @Test func singleRanges() throws {
        try serving { url in
            let range = try get(url + "/a.txt", ["-r", "2-4"])
            #expect(range.status == 206)
            #expect(range.body == "cde")
            #expect(range.head.contains("Content-Range: bytes 2-4/26"))
            #expect(try get(url + "/a.txt", ["-r", "-3"]).body == "xyz")
            #expect(try get(url + "/a.txt", ["-r", "24-"]).body == "yz")
            #expect(try get(url + "/a.txt", ["-r", "20-100"]).body == "uvwxyz")
            let outside = try get(url + "/a.txt", ["-r", "30-40"])
            #expect(outside.status == 416)
            #expect(outside.head.contains("Content-Range: bytes */26"))
            // Not a byte-range set we serve: the whole file.
            let odd = try get(url + "/a.txt", ["-H", "Range: lines=1-2"])
            #expect(odd.status == 200 && odd.body.count == 26)
            let bad = try get(url + "/a.txt", ["-H", "Range: bytes=5-2"])
            #expect(bad.status == 200 && bad.body.count == 26)
        }
    }

    @Test func multipleRangesAsMultipartByteranges() throws {
        try serving { url in
            let multi = try get(url + "/a.txt", ["-r", "0-1,5-6,-2"])
            #expect(multi.status == 206)
            let typeLine = multi.head.components(separatedBy: "\r\n").first { $0.hasPrefix("Content-Type: ") } ?? ""
            #expect(typeLine.hasPrefix("Content-Type: multipart/byteranges; boundary="))
            let boundary = String(typeLine.split(separator: "=").last ?? "")
            let parts = multi.body.components(separatedBy: "--" + boundary)
            // Preamble (the leading CRLF), three parts, the closing "--".
            #expect(parts.count == 5)
            let expected = [("0-1/26", "ab"), ("5-6/26", "fg"), ("24-25/26", "yz")]
            for (index, (range, bytes)) in expected.enumerated() where index + 1 < parts.count {
                let part = parts[index + 1]
                #expect(part.contains("Content-Type: text/plain; charset=utf-8\r\n"))
                #expect(part.contains("Content-Range: bytes \(range)\r\n"))
                #expect(part.hasSuffix("\r\n\r\n\(bytes)\r\n"), "\(part.debugDescription)")
            }
            #expect(parts.last == "--\r\n")
            // Content-Length matches what arrived.
            let lengthLine = multi.head.components(separatedBy: "\r\n").first { $0.hasPrefix("Content-Length: ") } ?? ""
            #expect(Int(lengthLine.dropFirst("Content-Length: ".count)) == multi.body.utf8.count)
            // Unsatisfiable ranges are dropped; if one remains it is a plain 206.
            let one = try get(url + "/a.txt", ["-r", "0-0,40-50"])
            #expect(one.status == 206 && one.body == "a")
            #expect(one.head.contains("Content-Range: bytes 0-0/26"))
            // More ranges than allowed: the whole file once.
            let many = (0..<20).map { "\($0)-\($0)" }.joined(separator: ",")
            let ignored = try get(url + "/a.txt", ["-r", many])
            #expect(ignored.status == 200 && ignored.body == "abcdefghijklmnopqrstuvwxyz")
        }
    }

    @Test func rangeParsing() {
        #expect(HTTPStaticFiles.byteRanges("bytes=0-0", size: 10, maxRanges: 4) == .ranges([0...0]))
        #expect(HTTPStaticFiles.byteRanges("bytes= 1-2 , 4-", size: 10, maxRanges: 4) == .ranges([1...2, 4...9]))
        #expect(HTTPStaticFiles.byteRanges("bytes=-20", size: 10, maxRanges: 4) == .ranges([0...9]))
        #expect(HTTPStaticFiles.byteRanges("bytes=-0", size: 10, maxRanges: 4) == .unsatisfiable)
        #expect(HTTPStaticFiles.byteRanges("bytes=0-1", size: 0, maxRanges: 4) == .unsatisfiable)
        #expect(HTTPStaticFiles.byteRanges("bytes=+1-2", size: 10, maxRanges: 4) == .ignored)
        #expect(HTTPStaticFiles.byteRanges("bytes=1-2,", size: 10, maxRanges: 4) == .ignored)
        #expect(HTTPStaticFiles.byteRanges("bytes=-", size: 10, maxRanges: 4) == .ignored)
        #expect(HTTPStaticFiles.byteRanges("bytes=99999999999999999999-", size: 10, maxRanges: 4) == .ignored)
        #expect(HTTPStaticFiles.byteRanges("bytes=0-1,2-3,4-5", size: 10, maxRanges: 2) == .ignored)
    }
}
