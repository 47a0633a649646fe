// CEventShims: the few Linux calls Swift's Glibc module does not import
// (epoll, eventfd, timerfd, pipe2, POLLRDHUP), the async-signal-safe signal
// handler, select over sets larger than FD_SETSIZE, and a cheap thread id.
// Every function here is a thin wrapper: it returns -1 and leaves errno set
// on failure, exactly like the call it wraps.
#ifndef C_EVENT_SHIMS_H
#define C_EVENT_SHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

// Readiness bits as the backends report them; the values are libevent's
// EV_READ, EV_WRITE and EV_CLOSED so they map onto Event.Flags unchanged.
#define SE_READY_READ 0x02u
#define SE_READY_WRITE 0x04u
#define SE_READY_CLOSED 0x80u

// One ready file descriptor, as filled by se_epoll_wait.
typedef struct se_ready {
    int32_t fd;
    uint32_t what;
} se_ready;

// ---------------------------------------------------------------- thread id
// A process-unique id for the calling thread, assigned on first use and read
// from thread-local storage afterwards (one TLS load). Never 0.
extern _Thread_local uint64_t se_tls_thread_id;
uint64_t se_thread_id_assign(void);
static inline uint64_t se_thread_id(void) {
    uint64_t id = se_tls_thread_id;
    return id != 0 ? id : se_thread_id_assign();
}
// The calling thread's name (pthread_getname_np) into buf; returns 0 on success.
int se_thread_name(char *buf, size_t len);

// ---------------------------------------------------------------- epoll
int se_epoll_create(void);
// op: 1 add, 2 del, 3 mod (EPOLL_CTL_*). what: SE_READY_* bits; et: edge-triggered.
int se_epoll_ctl(int epfd, int op, int fd, uint32_t what, int et);
// Opaque buffer of `capacity` struct epoll_event, reused across waits.
void *se_epoll_events_alloc(int capacity);
void se_epoll_events_free(void *events);
// epoll_wait into `events`, then translate each into `out` (same capacity):
// EPOLLIN -> READ, EPOLLOUT -> WRITE, EPOLLRDHUP -> CLOSED, and ERR/HUP ->
// READ|WRITE, as libevent reports them. Returns the count or -1 with errno.
int se_epoll_wait(int epfd, void *events, se_ready *out, int capacity, int timeout_ms);

// ---------------------------------------------------------------- eventfd, timerfd, pipe
int se_eventfd(void);                       // EFD_NONBLOCK | EFD_CLOEXEC, initial 0
int se_timerfd(void);                       // CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC
int se_timerfd_arm(int fd, int64_t relative_ns); // 0 ns disarms
int se_pipe_nonblocking(int fds[2]);        // pipe2(O_NONBLOCK | O_CLOEXEC)

// ---------------------------------------------------------------- poll
uint16_t se_pollrdhup(void);                // POLLRDHUP (needs _GNU_SOURCE)

// ---------------------------------------------------------------- select
// select(2) over bit sets of `words` 64-bit words each (may exceed FD_SETSIZE:
// the kernel reads nfds bits). timeout_ns < 0 blocks.
int se_select(int nfds, uint64_t *readset, uint64_t *writeset, int64_t timeout_ns);

// ---------------------------------------------------------------- signals
int se_signal_count(void);                  // NSIG
// Routes caught signals to `fd` (a non-blocking pipe write end); -1 to stop.
void se_signal_set_write_fd(int fd);
// Installs the async-signal-safe handler for signo (SA_RESTART), remembering
// the previous action for se_signal_restore. Returns 0 or -1 with errno.
int se_signal_install(int signo);
int se_signal_restore(int signo);
// Sends signo to the calling thread (raise(3)): delivered before it returns
// unless the thread blocks it.
int se_raise(int signo);

// ---------------------------------------------------------------- sockets and files
#include <sys/uio.h>
// sendmsg(MSG_NOSIGNAL) over iovecs: a write to a socket whose peer is gone
// fails with EPIPE instead of raising SIGPIPE. -1/errno, ENOTSOCK for
// descriptors that are not sockets.
ssize_t se_send_iovecs(int fd, const struct iovec *iov, int count);
// writev on a descriptor that is not a socket, with SIGPIPE blocked in the
// calling thread for the call and a SIGPIPE it caused consumed: EPIPE is
// returned instead of the process being killed.
ssize_t se_writev_nosigpipe(int fd, const struct iovec *iov, int count);
// sendfile(2) from `file` at `*offset` (advanced) to `socket`, with SIGPIPE
// held off as in se_writev_nosigpipe (sendfile has no MSG_NOSIGNAL).
ssize_t se_sendfile(int socket, int file, int64_t *offset, size_t count);
// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC.
int se_accept(int fd, void *address, uint32_t *length);
// mmap of a read-only private file range; NULL with errno on failure.
void *se_map_file(int fd, int64_t offset, size_t length, size_t *page_delta);
int se_unmap(void *address, size_t length);
int se_iov_max(void);

// ---------------------------------------------------------------- process
pid_t se_fork(void);
int se_issetugid(void);                     // real and effective ids differ

/// The usable size of a malloc'ed block (malloc_usable_size), for tests
/// that check how much memory an object takes.
size_t se_allocation_size(const void *pointer);

#ifdef __cplusplus
}
#endif
#endif
