/// An event base as a task executor (SE-0417): a task that prefers it,
/// through `withTaskExecutorPreference(base.taskExecutor) { ... }`,
/// `group.addTask(executorPreference: base.taskExecutor) { ... }` or
/// `Task(executorPreference: base.taskExecutor) { ... }`, runs its
/// non-actor-isolated code on the thread running the base's loop, between
/// callbacks, as its actors on the base do. Code isolated to another actor
/// still runs on that actor's executor; an actor on the same base is reached
/// without leaving the loop thread.
///
/// Works for owned and shared bases alike. The loop thread runs the jobs:
/// in an owned base that is the owner, so the task may use the whole base
/// (add events, timers, loop exit) as its callbacks do; in a shared base it
/// is whichever thread runs the loop, and other threads may use the base's
/// API at the same time as ever (the lock provider guards it), also from
/// tasks of their own. A task executor is not a serial executor: code in
/// such a task is not isolated to anything, so actors remain the way to
/// protect state. Jobs share the base's one allocation-free job list with
/// ``EventBaseExecutor`` (enqueue order, shutdown behaviour: see there).
///
/// Keep the base alive while tasks prefer it: the executor refers to it
/// unowned (the base owns its executors, one each, for executor identity).
public final class EventBaseTaskExecutor: TaskExecutor {
    public unowned let base: EventBase

    init(base: EventBase) { self.base = base }

    public func enqueue(_ job: consuming ExecutorJob) {
        base.enqueue(job, as: .task)
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
}
