/*
 * SwiftEvent's `event-bench pipes` method, written against libevent 2.1 (or,
 * built with -DWITH_LIBEV, against libev 4) so both run the same rounds in
 * the same run (see Benchmarks/compare-pipes).
 *
 * A ring of n socketpairs, each read end watched by a persistent read
 * event. Each round: untimed, every event is deleted and added again, the
 * loop runs once without blocking, and one byte is written into `a` evenly
 * spaced pairs; timed, the loop runs once-non-blocking until every byte
 * written has been read, each read callback passing a byte on to the next
 * pair while the round's `w` writes last. Prints each round's microseconds,
 * then `pipes lib=L backend=B n=N a=A w=W rounds=R locking=L median_us=X`.
 * With -t the base is made thread-safe first (evthread_use_pthreads:
 * libevent's counterpart of a shared base) and the summary says
 * lib=libevent-pthreads locking=libevent-pthreads.
 *
 * libev: one ev_io per read end; the per-round re-add is ev_io_stop +
 * ev_io_set + ev_io_start (libev then re-registers the fd with the backend
 * on the next loop iteration), "loop once without blocking" is
 * ev_run(loop, EVRUN_NOWAIT). There is no -t; the summary says lib=libev
 * locking=libev.
 *
 * -m epoll|poll|select picks the backend (libevent: every other method is
 * avoided; libev: that EVBACKEND_* with EVFLAG_NOENV); the program exits 1
 * if the library cannot use it. libevent's select backend aborts on a
 * descriptor >= FD_SETSIZE (glibc's fortified FD_SET), so with -m select the
 * libevent build refuses such descriptors up front and exits 1.
 *
 * Build: cc -O2 -Wall -o pipes_libevent pipes_libevent.c \
 *        $(pkg-config --cflags --libs libevent libevent_pthreads)
 *        cc -O2 -Wall -DWITH_LIBEV -o pipes_libev pipes_libevent.c -lev
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_LIBEV
#include <ev.h>
#else
#include <event2/event.h>
#include <event2/thread.h>
#endif
#include "bench_loop.h"

struct ring {
    int pairs;
    int *fds; /* fds[2i] read end, fds[2i+1] write end */
    long reads, fired, writes_left;
};

static struct ring ring;

static double microseconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void send_byte(int fd) {
    char byte = 'e';
    if (write(fd, &byte, 1) != 1) {
        perror("write");
        exit(1);
    }
}

/* The body shared by both libraries' read callbacks. */
static void read_and_pass_on(int fd, long index) {
    char byte;
    if (read(fd, &byte, 1) == 1) ring.reads++;
    if (ring.writes_left > 0) {
        long next = index + 1 == ring.pairs ? 0 : index + 1;
        send_byte(ring.fds[2 * next + 1]);
        ring.writes_left--;
        ring.fired++;
    }
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#ifdef WITH_LIBEV
#define LIB_NAME "libev"

static struct ev_loop *loop;
static ev_io *watchers;

static void on_read(struct ev_loop *l, ev_io *w, int revents) {
    (void)l;
    (void)revents;
    read_and_pass_on(w->fd, (long)(intptr_t)w->data);
}

static const char *open_loop(const char *method, int threaded) {
    loop = bench_open_libev(method, threaded);
    return bench_libev_backend_name(ev_backend(loop));
}

static void register_events(void) {
    watchers = calloc((size_t)ring.pairs, sizeof *watchers);
    for (long i = 0; i < ring.pairs; i++) {
        ev_io_init(&watchers[i], on_read, ring.fds[2 * i], EV_READ);
        watchers[i].data = (void *)(intptr_t)i;
        ev_io_start(loop, &watchers[i]);
    }
}

static void readd_events(void) {
    for (int i = 0; i < ring.pairs; i++) {
        ev_io_stop(loop, &watchers[i]);
        ev_io_set(&watchers[i], ring.fds[2 * i], EV_READ);
        ev_io_start(loop, &watchers[i]);
    }
}

static void loop_once_nonblocking(void) { ev_run(loop, EVRUN_NOWAIT); }

static void release_events(void) {
    for (int i = 0; i < ring.pairs; i++) ev_io_stop(loop, &watchers[i]);
    ev_loop_destroy(loop);
    free(watchers);
}

#else
#define LIB_NAME (threaded ? "libevent-pthreads" : "libevent")

static struct event_base *base;
static struct event **events;

static void on_read(evutil_socket_t fd, short what, void *context) {
    (void)what;
    read_and_pass_on(fd, (long)(intptr_t)context);
}

static const char *open_loop(const char *method, int threaded) {
    base = bench_open_libevent(method, threaded);
    return event_base_get_method(base);
}

static void register_events(void) {
    if (strcmp(event_base_get_method(base), "select") == 0) {
        int highest = ring.fds[2 * ring.pairs - 1];
        if (highest >= FD_SETSIZE) {
            fprintf(stderr, "libevent's select backend aborts on fd %d >= FD_SETSIZE (%d); use fewer pairs\n",
                    highest, FD_SETSIZE);
            exit(1);
        }
    }
    events = calloc((size_t)ring.pairs, sizeof *events);
    for (long i = 0; i < ring.pairs; i++)
        events[i] = event_new(base, ring.fds[2 * i], EV_READ | EV_PERSIST, on_read, (void *)(intptr_t)i);
}

static void readd_events(void) {
    for (int i = 0; i < ring.pairs; i++) {
        event_del(events[i]);
        event_add(events[i], NULL);
    }
}

static void loop_once_nonblocking(void) { event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK); }

static void release_events(void) {
    for (int i = 0; i < ring.pairs; i++) event_free(events[i]);
    event_base_free(base);
    free(events);
}
#endif

int main(int argc, char **argv) {
    int pairs = 100, active = 1, writes = -1, rounds = 25, threaded = 0, option;
    const char *method = NULL;
    while ((option = getopt(argc, argv, "n:a:w:r:m:t")) != -1) {
        switch (option) {
        case 'n': pairs = atoi(optarg); break;
        case 'a': active = atoi(optarg); break;
        case 'w': writes = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'm': method = optarg; break;
        case 't': threaded = 1; break;
        default:
            fprintf(stderr, "usage: %s [-n pairs] [-a active] [-w writes] [-r rounds] [-m epoll|poll|select] [-t]\n", argv[0]);
            return 2;
        }
    }
    if (writes < 0) writes = pairs;
    if (pairs < 1 || active < 1 || active > pairs || rounds < 1) {
        fprintf(stderr, "need n >= 1, 1 <= a <= n, r >= 1\n");
        return 2;
    }

    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    rlim_t needed = (rlim_t)pairs * 2 + 64;
    if (limit.rlim_cur < needed) {
        limit.rlim_cur = needed < limit.rlim_max ? needed : limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }

    const char *backend = open_loop(method, threaded);

    ring.pairs = pairs;
    ring.fds = calloc((size_t)pairs * 2, sizeof(int));
    for (int i = 0; i < pairs; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, &ring.fds[2 * i]) < 0) {
            perror("socketpair");
            return 1;
        }
    }
    register_events();

    double *samples = calloc((size_t)rounds, sizeof(double));
    int spacing = (pairs / active) * 2;
    for (int round = 0; round < rounds; round++) {
        readd_events();
        loop_once_nonblocking();
        ring.fired = 0;
        for (int i = 0; i < active; i++) {
            send_byte(ring.fds[i * spacing + 1]);
            ring.fired++;
        }
        ring.reads = 0;
        ring.writes_left = writes;
        double start = microseconds_now();
        do {
            loop_once_nonblocking();
        } while (ring.reads != ring.fired);
        samples[round] = microseconds_now() - start;
        printf("round %d: %.1f us\n", round, samples[round]);
    }
    qsort(samples, (size_t)rounds, sizeof(double), by_value);
    printf("pipes lib=%s backend=%s n=%d a=%d w=%d rounds=%d locking=%s median_us=%.1f\n", LIB_NAME, backend, pairs,
           active, writes, rounds, LIB_NAME, samples[rounds / 2]);

    release_events();
    for (int i = 0; i < pairs * 2; i++) close(ring.fds[i]);
    free(ring.fds);
    free(samples);
    return 0;
}
