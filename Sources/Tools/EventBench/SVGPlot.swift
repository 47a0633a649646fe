import Glibc

/// One line of a chart: (x, y) points and a label.
struct PlotSeries {
    let label: String
    var points: [(Double, Double)] = []
}

/// A self-contained SVG line chart (axes, ticks, a legend), readable in any
/// browser without our code: libevent's home-page picture of µs per round
/// against the number of descriptors.
struct SVGPlot {
    let title: String
    let xLabel: String
    let yLabel: String
    let series: [PlotSeries]

    static let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

    func render() -> String {
        let width = 860.0, height = 520.0
        let left = 90.0, right = 220.0, top = 50.0, bottom = 70.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let xs = series.flatMap { $0.points.map(\.0) }
        let ys = series.flatMap { $0.points.map(\.1) }
        let xMax = niceCeiling(xs.max() ?? 1)
        // Data spanning more than two decades gets a logarithmic y axis, so
        // the fast lines stay readable next to the slow ones.
        let positive = ys.filter { $0 > 0 }
        let logarithmic = (positive.min().map { (positive.max() ?? 1) / $0 > 100 }) ?? false
        let yMax = niceCeiling(ys.max() ?? 1)
        let decadeLow = floor(log10(positive.min() ?? 1)), decadeHigh = ceil(log10(positive.max() ?? 10))
        func x(_ value: Double) -> Double { left + value / xMax * plotWidth }
        func y(_ value: Double) -> Double {
            guard logarithmic else { return top + plotHeight - value / yMax * plotHeight }
            let fraction = (log10(max(value, pow(10, decadeLow))) - decadeLow) / max(1, decadeHigh - decadeLow)
            return top + plotHeight - fraction * plotHeight
        }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(width / 2)" y="24" text-anchor="middle" font-size="15">\(escape(title))</text>
            <line x1="\(left)" y1="\(top + plotHeight)" x2="\(left + plotWidth)" y2="\(top + plotHeight)" stroke="black"/>
            <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(top + plotHeight)" stroke="black"/>

            """
        for tick in 0...5 {
            let xValue = xMax * Double(tick) / 5
            svg += "<line x1=\"\(x(xValue))\" y1=\"\(top + plotHeight)\" x2=\"\(x(xValue))\" y2=\"\(top + plotHeight + 5)\" stroke=\"black\"/>\n"
            svg += "<text x=\"\(x(xValue))\" y=\"\(top + plotHeight + 20)\" text-anchor=\"middle\">\(label(xValue))</text>\n"
        }
        let yTicks = logarithmic
            ? stride(from: decadeLow, through: decadeHigh, by: 1).map { pow(10, $0) }
            : (0...5).map { yMax * Double($0) / 5 }
        for yValue in yTicks {
            svg += "<line x1=\"\(left)\" y1=\"\(y(yValue))\" x2=\"\(left + plotWidth)\" y2=\"\(y(yValue))\" stroke=\"#dddddd\"/>\n"
            svg += "<text x=\"\(left - 8)\" y=\"\(y(yValue) + 4)\" text-anchor=\"end\">\(label(yValue))</text>\n"
        }
        let yLabel = logarithmic ? self.yLabel + ", log scale" : self.yLabel
        svg += "<text x=\"\(left + plotWidth / 2)\" y=\"\(height - 25)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        svg += "<text transform=\"translate(22,\(top + plotHeight / 2)) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        for (index, line) in series.enumerated() {
            let color = Self.colors[index % Self.colors.count]
            let path = line.points.map { "\(x($0.0)),\(y($0.1))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            for point in line.points {
                svg += "<circle cx=\"\(x(point.0))\" cy=\"\(y(point.1))\" r=\"3\" fill=\"\(color)\"><title>\(escape(line.label)): n=\(Int(point.0)) \(label(point.1)) µs</title></circle>\n"
            }
            let legendY = top + 20 * Double(index)
            svg += "<line x1=\"\(left + plotWidth + 20)\" y1=\"\(legendY)\" x2=\"\(left + plotWidth + 45)\" y2=\"\(legendY)\" stroke=\"\(color)\" stroke-width=\"3\"/>\n"
            svg += "<text x=\"\(left + plotWidth + 52)\" y=\"\(legendY + 4)\">\(escape(line.label))</text>\n"
        }
        return svg + "</svg>\n"
    }

    func write(to path: String) throws {
        guard let file = fopen(path, "w") else { throw BenchError("cannot write \(path)") }
        defer { fclose(file) }
        fputs(render(), file)
    }

    private func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(value)))
        for step in [1.0, 2.0, 2.5, 5.0, 10.0] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }

    private func label(_ value: Double) -> String {
        value >= 1000 ? String(Int(value.rounded())) : formatted(value)
    }

    private func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
