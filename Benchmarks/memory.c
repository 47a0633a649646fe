/*
 * User-space bytes per registered idle read event in libevent 2.1 or, built
 * with -DWITH_LIBEV, libev 4, for comparison with SwiftEvent's
 * `event-bench memory`.
 *
 * First the base/loop, n socketpairs (-n) and the program's own array of
 * event pointers are made, the loop runs once without blocking (so that
 * whatever a first iteration allocates is not counted per event), and
 * memory is measured: the resident set from
 * /proc/self/statm (resident pages * page size) and the heap bytes in use
 * from glibc's mallinfo2(): uordblks (arena chunks in use) + hblkhd (chunks
 * glibc served with mmap, where the libraries' large fd-indexed arrays
 * land; uordblks alone would miss them). Then a persistent read event is
 * registered on every read end (libevent: event_new(base, fd,
 * EV_READ|EV_PERSIST, ...) + event_add; libev: a malloc'ed ev_io +
 * ev_io_init + ev_io_start, so both figures include one allocation per
 * event), the loop runs once without blocking (libev calls epoll_ctl only
 * then; libevent has already made its calls in event_add), and memory is
 * measured again. The growth divided by n is printed. RSS counts whole
 * pages and leaves out kernel memory (epoll's per-fd items, the sockets).
 * Both libraries keep fd-indexed arrays that grow with the highest fd; the
 * write ends take every other fd, so those arrays span 2n fds.
 *
 * -m epoll|poll|select picks the backend; exits 1 if the library cannot use
 * it (libevent's select backend aborts on a descriptor >= FD_SETSIZE, which
 * the default n reaches: the libevent build checks and exits 1 instead).
 * -t (libevent only) calls evthread_use_pthreads first. Summary (last line):
 * `memory lib=L backend=B n=N rss_bytes_per_event=X heap_bytes_per_event=Y`.
 *
 * Build: cc -O2 -Wall -o memory_libevent memory.c \
 *        $(pkg-config --cflags --libs libevent libevent_pthreads)
 *        cc -O2 -Wall -DWITH_LIBEV -o memory_libev memory.c -lev
 * Run:   ./memory_libevent -n 9000 -m epoll
 */
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef WITH_LIBEV
#include <ev.h>
#else
#include <event2/event.h>
#include <event2/thread.h>
#endif
#include "bench_loop.h"

struct usage {
    long rss_bytes;
    long heap_bytes;
};

/* Reads statm with open/read into a stack buffer, so measuring allocates
 * nothing itself. */
static struct usage measure(void) {
    struct usage usage = {0, 0};
    char text[256];
    long size = 0, resident = 0;
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    ssize_t length = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
    if (fd >= 0) close(fd);
    if (length <= 0) {
        fprintf(stderr, "cannot read /proc/self/statm\n");
        exit(1);
    }
    text[length] = 0;
    if (sscanf(text, "%ld %ld", &size, &resident) != 2) {
        fprintf(stderr, "cannot parse /proc/self/statm\n");
        exit(1);
    }
    usage.rss_bytes = resident * sysconf(_SC_PAGESIZE);
    struct mallinfo2 info = mallinfo2();
    usage.heap_bytes = (long)(info.uordblks + info.hblkhd);
    return usage;
}

static void on_read_body(void) {
    fprintf(stderr, "unexpected read callback: nothing is ever written\n");
    exit(1);
}

#ifdef WITH_LIBEV
#define LIB_NAME "libev"

static struct ev_loop *loop;

static void on_read(struct ev_loop *l, ev_io *w, int revents) {
    (void)l;
    (void)w;
    (void)revents;
    on_read_body();
}

static const char *open_loop(const char *method, int threaded) {
    loop = bench_open_libev(method, threaded);
    return bench_libev_backend_name(ev_backend(loop));
}

static void check_descriptors(const char *method, int highest) {
    (void)method;
    (void)highest;
}

static void *register_read(int fd) {
    ev_io *io = malloc(sizeof *io);
    ev_io_init(io, on_read, fd, EV_READ);
    ev_io_start(loop, io);
    return io;
}

static void loop_once_nonblocking(void) { ev_run(loop, EVRUN_NOWAIT); }

static void release(void *event) {
    ev_io_stop(loop, event);
    free(event);
}

static void close_loop(void) { ev_loop_destroy(loop); }

#else
#define LIB_NAME (threaded ? "libevent-pthreads" : "libevent")

static struct event_base *base;

static void on_read(evutil_socket_t fd, short what, void *context) {
    (void)fd;
    (void)what;
    (void)context;
    on_read_body();
}

static const char *open_loop(const char *method, int threaded) {
    base = bench_open_libevent(method, threaded);
    return event_base_get_method(base);
}

static void check_descriptors(const char *method, int highest) {
    if (highest >= FD_SETSIZE && strcmp(method, "select") == 0) {
        fprintf(stderr, "libevent's select backend aborts on fd %d >= FD_SETSIZE (%d); use fewer pairs\n", highest,
                FD_SETSIZE);
        exit(1);
    }
}

static void *register_read(int fd) {
    struct event *event = event_new(base, fd, EV_READ | EV_PERSIST, on_read, NULL);
    if (!event || event_add(event, NULL) != 0) {
        fprintf(stderr, "cannot register fd %d\n", fd);
        exit(1);
    }
    return event;
}

static void loop_once_nonblocking(void) { event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK); }

static void release(void *event) { event_free(event); }

static void close_loop(void) { event_base_free(base); }
#endif

int main(int argc, char **argv) {
    int pairs = 9000, threaded = 0, option;
    const char *method = NULL;
    while ((option = getopt(argc, argv, "n:m:t")) != -1) {
        switch (option) {
        case 'n': pairs = atoi(optarg); break;
        case 'm': method = optarg; break;
        case 't': threaded = 1; break;
        default:
            fprintf(stderr, "usage: %s [-n pairs] [-m epoll|poll|select] [-t]\n", argv[0]);
            return 2;
        }
    }
    if (pairs < 1) {
        fprintf(stderr, "need n >= 1\n");
        return 2;
    }

    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    rlim_t needed = (rlim_t)pairs * 2 + 64;
    if (limit.rlim_cur < needed) {
        if (needed > limit.rlim_max) {
            fprintf(stderr, "n=%d needs %lu descriptors; the hard limit is %lu\n", pairs, (unsigned long)needed,
                    (unsigned long)limit.rlim_max);
            return 1;
        }
        limit.rlim_cur = needed;
        setrlimit(RLIMIT_NOFILE, &limit);
    }

    /* The base first: with -t it opens a notification fd, which would
     * otherwise get the highest number and pre-size the fd-indexed arrays. */
    const char *backend = open_loop(method, threaded);
    int *fds = calloc((size_t)pairs * 2, sizeof(int));
    for (int i = 0; i < pairs; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, &fds[2 * i]) < 0) {
            perror("socketpair");
            return 1;
        }
    }
    check_descriptors(backend, fds[2 * pairs - 1]);
    void **events = calloc((size_t)pairs, sizeof *events);
    loop_once_nonblocking(); /* whatever a first iteration allocates is not per event */

    struct usage before = measure();
    for (int i = 0; i < pairs; i++) events[i] = register_read(fds[2 * i]);
    loop_once_nonblocking();
    struct usage after = measure();

    double rss_per_event = (double)(after.rss_bytes - before.rss_bytes) / pairs;
    double heap_per_event = (double)(after.heap_bytes - before.heap_bytes) / pairs;
    printf("before: rss=%ld heap=%ld\n", before.rss_bytes, before.heap_bytes);
    printf("after:  rss=%ld heap=%ld\n", after.rss_bytes, after.heap_bytes);
    printf("memory lib=%s backend=%s n=%d rss_bytes_per_event=%.1f heap_bytes_per_event=%.1f\n", LIB_NAME, backend,
           pairs, rss_per_event, heap_per_event);

    for (int i = 0; i < pairs; i++) release(events[i]);
    close_loop();
    for (int i = 0; i < pairs * 2; i++) close(fds[i]);
    free(events);
    free(fds);
    return 0;
}
