import CEventShims

extension EventBase {
    /// Queues a job for the loop (both executors' `enqueue`, any thread);
    /// the first job of an empty queue wakes a loop running on another
    /// thread. A loop-thread enqueue needs no wake-up: the loop does not
    /// block while jobs wait.
    @inline(__always)
    func enqueue(_ job: consuming ExecutorJob, as role: JobRole) {
        switch jobs.push(job, as: role) {
        case .first: wakeLoopIfNeeded()
        case .queued: break
        case .closed: jobEnqueuedAfterShutdown()
        }
    }

    @inline(never)
    private func jobEnqueuedAfterShutdown() -> Never {
        // Running the job here would break its actor's isolation; dropping
        // it would leave its task suspended forever.
        preconditionFailure("SwiftEvent: a job was enqueued on an event base that was shut down")
    }

    /// The loop runs the jobs waiting at the start of the iteration, in
    /// enqueue order, without the base lock (mutex, debug).
    func runJobs() {
        guard !jobs.isEmpty else { return }
        if discipline == .locked {
            baseLock.unlock()
            runWaitingJobs()
            baseLock.lock()
        } else {
            runWaitingJobs()
        }
    }

    private func runWaitingJobs() {
        let serial = serialExecutor.asUnownedSerialExecutor()
        let task = taskExecutor.asUnownedTaskExecutor()
        jobs.drain { job, role in
            switch role {
            case .serial: job.runSynchronously(on: serial)
            case .task: job.runSynchronously(on: task)
            }
        }
    }

    /// At shutdown (no loop running): runs the jobs still waiting, and those
    /// they enqueue, with the calling thread acting as the loop thread, then
    /// closes the queue so that a later enqueue is reported.
    func runJobsLeftAndCloseQueue() {
        loopThread.store(se_thread_id(), ordering: .sequentiallyConsistent)
        repeat {
            runWaitingJobs()
        } while !jobs.closeIfEmpty()
        loopThread.store(0, ordering: .sequentiallyConsistent)
    }
}
