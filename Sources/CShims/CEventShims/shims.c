#define _GNU_SOURCE
#include "CEventShims.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/timerfd.h>
#include <limits.h>
#include <unistd.h>

// ---------------------------------------------------------------- thread id

_Thread_local uint64_t se_tls_thread_id = 0;
static _Atomic uint64_t se_next_thread_id = 1;

uint64_t se_thread_id_assign(void) {
    uint64_t id = atomic_fetch_add_explicit(&se_next_thread_id, 1, memory_order_relaxed);
    se_tls_thread_id = id;
    return id;
}

int se_thread_name(char *buf, size_t len) {
    return pthread_getname_np(pthread_self(), buf, len);
}

// ---------------------------------------------------------------- epoll

int se_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int se_epoll_ctl(int epfd, int op, int fd, uint32_t what, int et) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    if (what & SE_READY_READ) ev.events |= EPOLLIN;
    if (what & SE_READY_WRITE) ev.events |= EPOLLOUT;
    if (what & SE_READY_CLOSED) ev.events |= EPOLLRDHUP;
    if (et) ev.events |= EPOLLET;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &ev);
}

void *se_epoll_events_alloc(int capacity) {
    return calloc((size_t)capacity, sizeof(struct epoll_event));
}

void se_epoll_events_free(void *events) {
    free(events);
}

int se_epoll_wait(int epfd, void *events, se_ready *out, int capacity, int timeout_ms) {
    struct epoll_event *evs = events;
    int n = epoll_wait(epfd, evs, capacity, timeout_ms);
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        uint32_t what = 0;
        if (e & (EPOLLERR | EPOLLHUP)) {
            what = SE_READY_READ | SE_READY_WRITE;
        } else {
            if (e & EPOLLIN) what |= SE_READY_READ;
            if (e & EPOLLOUT) what |= SE_READY_WRITE;
        }
        if (e & EPOLLRDHUP) what |= SE_READY_CLOSED;
        out[i].fd = evs[i].data.fd;
        out[i].what = what;
    }
    return n;
}

// ---------------------------------------------------------------- eventfd, timerfd, pipe

int se_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

int se_timerfd(void) {
    return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
}

int se_timerfd_arm(int fd, int64_t relative_ns) {
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    if (relative_ns > 0) {
        spec.it_value.tv_sec = relative_ns / 1000000000;
        spec.it_value.tv_nsec = relative_ns % 1000000000;
    }
    return timerfd_settime(fd, 0, &spec, NULL);
}

int se_pipe_nonblocking(int fds[2]) {
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
}

// ---------------------------------------------------------------- poll

uint16_t se_pollrdhup(void) {
    return POLLRDHUP;
}

// ---------------------------------------------------------------- select

int se_select(int nfds, uint64_t *readset, uint64_t *writeset, int64_t timeout_ns) {
    struct timeval tv, *tvp = NULL;
    if (timeout_ns >= 0) {
        tv.tv_sec = timeout_ns / 1000000000;
        tv.tv_usec = (timeout_ns % 1000000000 + 999) / 1000;
        if (tv.tv_usec >= 1000000) {
            tv.tv_sec += 1;
            tv.tv_usec -= 1000000;
        }
        tvp = &tv;
    }
    // The kernel reads exactly nfds bits of each set; the sets are sized by
    // the caller to cover nfds, so FD_SETSIZE does not limit them.
    return select(nfds, (fd_set *)readset, (fd_set *)writeset, NULL, tvp);
}

// ---------------------------------------------------------------- signals

static _Atomic int se_signal_fd = -1;
static struct sigaction se_saved_actions[NSIG];
static unsigned char se_saved_valid[NSIG];

static void se_signal_handler(int signo) {
    int saved_errno = errno;
    int fd = atomic_load_explicit(&se_signal_fd, memory_order_relaxed);
    if (fd >= 0) {
        unsigned char byte = (unsigned char)signo;
        ssize_t r = write(fd, &byte, 1);
        (void)r; // a full pipe already holds a wake-up for this signal
    }
    errno = saved_errno;
}

int se_signal_count(void) {
    return NSIG;
}

void se_signal_set_write_fd(int fd) {
    atomic_store_explicit(&se_signal_fd, fd, memory_order_release);
}

int se_signal_install(int signo) {
    if (signo <= 0 || signo >= NSIG) {
        errno = EINVAL;
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = se_signal_handler;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    struct sigaction old;
    if (sigaction(signo, &sa, &old) == -1) return -1;
    if (!se_saved_valid[signo]) {
        se_saved_actions[signo] = old;
        se_saved_valid[signo] = 1;
    }
    return 0;
}

int se_signal_restore(int signo) {
    if (signo <= 0 || signo >= NSIG || !se_saved_valid[signo]) {
        errno = EINVAL;
        return -1;
    }
    se_saved_valid[signo] = 0;
    return sigaction(signo, &se_saved_actions[signo], NULL);
}

int se_raise(int signo) {
    return raise(signo);
}

// ---------------------------------------------------------------- sockets and files

ssize_t se_send_iovecs(int fd, const struct iovec *iov, int count) {
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = (struct iovec *)iov;
    message.msg_iovlen = (size_t)count;
    return sendmsg(fd, &message, MSG_NOSIGNAL);
}

// Runs a write-like call with SIGPIPE blocked in this thread; if the call
// failed with EPIPE and raised SIGPIPE, the signal is consumed so unblocking
// does not deliver it. A SIGPIPE already pending beforehand is left alone.
#define SE_WITHOUT_SIGPIPE(result_type, call)                                  \
    sigset_t pipe_only, old, pending;                                          \
    sigemptyset(&pipe_only);                                                   \
    sigaddset(&pipe_only, SIGPIPE);                                            \
    sigpending(&pending);                                                      \
    int was_pending = sigismember(&pending, SIGPIPE);                          \
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);                              \
    result_type n = (call);                                                    \
    int saved = errno;                                                         \
    if (n < 0 && saved == EPIPE && !was_pending) {                             \
        struct timespec zero = {0, 0};                                         \
        while (sigtimedwait(&pipe_only, NULL, &zero) == -1 && errno == EINTR) {} \
    }                                                                          \
    pthread_sigmask(SIG_SETMASK, &old, NULL);                                  \
    errno = saved;

ssize_t se_writev_nosigpipe(int fd, const struct iovec *iov, int count) {
    SE_WITHOUT_SIGPIPE(ssize_t, writev(fd, iov, count))
    return n;
}

ssize_t se_sendfile(int socket, int file, int64_t *offset, size_t count) {
    off_t position = (off_t)*offset;
    SE_WITHOUT_SIGPIPE(ssize_t, sendfile(socket, file, &position, count))
    *offset = (int64_t)position;
    return n;
}

int se_accept(int fd, void *address, uint32_t *length) {
    socklen_t size = *length;
    int result = accept4(fd, (struct sockaddr *)address, &size, SOCK_NONBLOCK | SOCK_CLOEXEC);
    *length = size;
    return result;
}

void *se_map_file(int fd, int64_t offset, size_t length, size_t *page_delta) {
    long page = sysconf(_SC_PAGESIZE);
    int64_t aligned = offset - offset % page;
    *page_delta = (size_t)(offset - aligned);
    void *address = mmap(NULL, length + *page_delta, PROT_READ, MAP_PRIVATE, fd, (off_t)aligned);
    return address == MAP_FAILED ? NULL : address;
}

int se_unmap(void *address, size_t length) {
    return munmap(address, length);
}

int se_iov_max(void) {
    return IOV_MAX;
}

// ---------------------------------------------------------------- process

pid_t se_fork(void) {
    return fork();
}

int se_issetugid(void) {
    return getuid() != geteuid() || getgid() != getegid();
}

#include <malloc.h>

size_t se_allocation_size(const void *pointer) { return malloc_usable_size((void *)pointer); }
