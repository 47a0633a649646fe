import Synchronization

/// A node that can sit on a ``HandoffStack``.
protocol HandoffNode: AnyObject {
    /// Written by the pushing thread before its releasing push; read by the
    /// consumer after its acquiring take.
    var handoffNext: Unmanaged<Self>? { get set }
}

/// A lock-free multi-producer, single-consumer hand-off: producers push with
/// one compare-and-swap; the consumer takes everything at once with one
/// exchange and gets it back in push order. Nodes are retained while on the
/// stack. There is no ABA problem: nodes are never popped one at a time, and
/// no thread ever waits on another mid-push.
struct HandoffStack<Node: HandoffNode>: ~Copyable {
    private let top = Atomic<Unmanaged<Node>?>(nil)

    init() {}

    /// Pushes `node`; returns true if the stack was empty, i.e. this push is
    /// the one that must wake the consumer. Sequentially consistent, so a
    /// following ``Notifier/notify()`` pairs with the consumer's acknowledgement.
    @inline(__always)
    func push(_ node: Node) -> Bool {
        let new = Unmanaged.passRetained(node)
        var expected = top.load(ordering: .relaxed)
        while true {
            node.handoffNext = expected
            let (exchanged, original) = top.compareExchange(
                expected: expected, desired: new, ordering: .sequentiallyConsistent)
            if exchanged { return original == nil }
            expected = original
        }
    }

    /// Whether anything is waiting (a sequentially consistent look).
    var isEmpty: Bool { top.load(ordering: .sequentiallyConsistent) == nil }

    /// Takes every node, oldest first, handing each with the stack's +1
    /// reference to `body`, which must release it (or keep it).
    @inline(__always)
    func drainUnmanaged(_ body: (Unmanaged<Node>) -> Void) {
        guard top.load(ordering: .sequentiallyConsistent) != nil,
            var node = top.exchange(nil, ordering: .sequentiallyConsistent)
        else { return }
        var reversed: Unmanaged<Node>? = nil
        while true {
            let next = node._withUnsafeGuaranteedRef { $0.handoffNext }
            node._withUnsafeGuaranteedRef { $0.handoffNext = reversed }
            reversed = node
            guard let following = next else { break }
            node = following
        }
        while let current = reversed {
            reversed = current._withUnsafeGuaranteedRef { node in
                let next = node.handoffNext
                node.handoffNext = nil
                return next
            }
            body(current)
        }
    }

    /// Takes every node, oldest first, handing each (with the stack's +1
    /// reference released) to `body`.
    @inline(__always)
    func drain(_ body: (Node) -> Void) {
        guard top.load(ordering: .sequentiallyConsistent) != nil,
            var node = top.exchange(nil, ordering: .sequentiallyConsistent)
        else { return }
        // Reverse the LIFO chain into push order.
        var reversed: Unmanaged<Node>? = nil
        while true {
            let next = node._withUnsafeGuaranteedRef { $0.handoffNext }
            node._withUnsafeGuaranteedRef { $0.handoffNext = reversed }
            reversed = node
            guard let following = next else { break }
            node = following
        }
        while let current = reversed {
            let taken = current.takeRetainedValue()
            reversed = taken.handoffNext
            taken.handoffNext = nil
            body(taken)
        }
    }
}
