import Glibc

/// One case's result: `name key=value ...` on one line (the machine-readable
/// summary every subcommand prints), and optionally a CSV row.
struct Summary {
    let name: String
    private(set) var fields: [(String, String)] = []

    init(_ name: String) { self.name = name }

    mutating func add(_ key: String, _ value: some CustomStringConvertible) {
        fields.append((key, value.description))
    }

    mutating func add(_ key: String, _ value: Double) {
        fields.append((key, formatted(value)))
    }

    var line: String {
        ([name] + fields.map { "\($0.0)=\($0.1)" }).joined(separator: " ")
    }

    /// Prints the line and appends a CSV row to `csv` (with a header when
    /// the file is new or empty).
    func emit(csv: String?) throws {
        print(line)
        guard let csv else { return }
        let header = (["benchmark"] + fields.map(\.0)).joined(separator: ",")
        let row = ([name] + fields.map(\.1)).joined(separator: ",")
        var info = stat()
        let isNew = stat(csv, &info) != 0 || info.st_size == 0
        guard let file = fopen(csv, "a") else { throw BenchError("cannot open \(csv): \(String(cString: strerror(errno)))") }
        defer { fclose(file) }
        if isNew { fputs(header + "\n", file) }
        fputs(row + "\n", file)
    }
}

/// The median of `values` (the upper one for an even count, as libevent's bench prints).
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

/// The `fraction` quantile of sorted `values`.
func quantile(_ sorted: [Double], _ fraction: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let index = min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.down)))
    return sorted[index]
}
