/*
 * The method of libevent's test/bench_cascade.c, against libevent 2.1 or,
 * built with -DWITH_LIBEV, libev 4, for comparison with SwiftEvent's
 * `event-bench cascade`.
 *
 * Each round: untimed, n socketpairs are created. Timed: one one-shot read
 * event with a 60 s timeout is created and added per pair's read end, one
 * byte is written into pair 0, and the loop runs until it exits because no
 * events remain. Each read callback reads its byte and, unless its pair is
 * the last, writes one byte into the next pair's write end, so the events
 * fire one after another down the chain and each leaves the loop as it fires
 * (its timeout with it). Untimed again: events are freed, sockets closed.
 * One base/loop serves every round. Prints each round's microseconds, then
 * `cascade lib=L backend=B n=N rounds=R median_us=X`.
 *
 * libevent: event_new + event_add(ev, 60 s) per pair, timed, so the setup
 * cost includes one allocation per event as in a language where events are
 * objects; the loop is event_base_dispatch; event_free is untimed. -t calls
 * evthread_use_pthreads before the base is made (lib=libevent-pthreads).
 *
 * libev: per pair one malloc'ed struct holding an ev_io and its own ev_timer
 * (60 s), both started, timed. A per-pair timer mirrors libevent, where each
 * event carries its own timeout in the timer heap; the read callback stops
 * both, making the pair one-shot. The loop is ev_run(loop, 0), which returns
 * once no watcher is active. free() is untimed. There is no -t.
 *
 * -m epoll|poll|select picks the backend; the program exits 1 if the library
 * cannot use it. libevent's select backend aborts on a descriptor >=
 * FD_SETSIZE, which the default n=1000 reaches, so the libevent build checks
 * first and exits 1 with a message instead.
 *
 * Build: cc -O2 -Wall -o cascade_libevent cascade.c \
 *        $(pkg-config --cflags --libs libevent libevent_pthreads)
 *        cc -O2 -Wall -DWITH_LIBEV -o cascade_libev cascade.c -lev
 * Run:   ./cascade_libevent -n 1000 -r 25 -m epoll [-t]
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

static int pairs = 1000;
static int *fds; /* fds[2i] read end, fds[2i+1] write end */
static long fired, timed_out;

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

/* What every read callback does, for pair `index`. */
static void take_and_pass_on(int fd, long index) {
    char byte;
    if (read(fd, &byte, 1) != 1) {
        perror("read");
        exit(1);
    }
    fired++;
    if (index + 1 < pairs) send_byte(fds[2 * (index + 1) + 1]);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#ifdef WITH_LIBEV
#define LIB_NAME "libev"

struct link {
    ev_io io;
    ev_timer timeout;
    long index;
};

static struct ev_loop *loop;
static struct link **links;

static void on_read(struct ev_loop *l, ev_io *w, int revents) {
    (void)revents;
    struct link *link = (struct link *)w; /* io is the first member */
    ev_io_stop(l, &link->io);
    ev_timer_stop(l, &link->timeout);
    take_and_pass_on(w->fd, link->index);
}

static void on_timeout(struct ev_loop *l, ev_timer *w, int revents) {
    (void)revents;
    struct link *link = w->data;
    ev_io_stop(l, &link->io);
    timed_out++;
}

static const char *open_loop(const char *method, int threaded) {
    loop = bench_open_libev(method, threaded);
    links = calloc((size_t)pairs, sizeof *links);
    return bench_libev_backend_name(ev_backend(loop));
}

static void check_descriptors(int highest) { (void)highest; }

static void add_events(void) {
    for (long i = 0; i < pairs; i++) {
        struct link *link = malloc(sizeof *link);
        link->index = i;
        ev_io_init(&link->io, on_read, fds[2 * i], EV_READ);
        ev_timer_init(&link->timeout, on_timeout, 60., 0.);
        link->timeout.data = link;
        ev_io_start(loop, &link->io);
        ev_timer_start(loop, &link->timeout);
        links[i] = link;
    }
}

static void run_loop(void) { ev_run(loop, 0); }

static void free_events(void) {
    for (int i = 0; i < pairs; i++) {
        ev_io_stop(loop, &links[i]->io);
        ev_timer_stop(loop, &links[i]->timeout);
        free(links[i]);
    }
}

static void close_loop(void) {
    ev_loop_destroy(loop);
    free(links);
}

#else
#define LIB_NAME (threaded ? "libevent-pthreads" : "libevent")

static struct event_base *base;
static struct event **events;

static void on_read(evutil_socket_t fd, short what, void *context) {
    if (what & EV_TIMEOUT) {
        timed_out++;
        return;
    }
    take_and_pass_on(fd, (long)(intptr_t)context);
}

static const char *open_loop(const char *method, int threaded) {
    base = bench_open_libevent(method, threaded);
    events = calloc((size_t)pairs, sizeof *events);
    return event_base_get_method(base);
}

static void check_descriptors(int highest) {
    if (highest >= FD_SETSIZE && strcmp(event_base_get_method(base), "select") == 0) {
        fprintf(stderr, "libevent's select backend aborts on fd %d >= FD_SETSIZE (%d); use fewer pairs\n", highest,
                FD_SETSIZE);
        exit(1);
    }
}

static void add_events(void) {
    struct timeval timeout = {60, 0};
    for (long i = 0; i < pairs; i++) {
        events[i] = event_new(base, fds[2 * i], EV_READ, on_read, (void *)(intptr_t)i);
        event_add(events[i], &timeout);
    }
}

static void run_loop(void) { event_base_dispatch(base); }

static void free_events(void) {
    for (int i = 0; i < pairs; i++) event_free(events[i]);
}

static void close_loop(void) {
    event_base_free(base);
    free(events);
}
#endif

int main(int argc, char **argv) {
    int rounds = 25, threaded = 0, option;
    const char *method = NULL;
    while ((option = getopt(argc, argv, "n:r:m:t")) != -1) {
        switch (option) {
        case 'n': pairs = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'm': method = optarg; break;
        case 't': threaded = 1; break;
        default:
            fprintf(stderr, "usage: %s [-n pairs] [-r rounds] [-m epoll|poll|select] [-t]\n", argv[0]);
            return 2;
        }
    }
    if (pairs < 1 || rounds < 1) {
        fprintf(stderr, "need n >= 1, r >= 1\n");
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
    fds = calloc((size_t)pairs * 2, sizeof(int));
    double *samples = calloc((size_t)rounds, sizeof(double));
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < pairs; i++) {
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, &fds[2 * i]) < 0) {
                perror("socketpair");
                return 1;
            }
        }
        check_descriptors(fds[2 * pairs - 1]);
        fired = 0;
        timed_out = 0;

        double start = microseconds_now();
        add_events();
        send_byte(fds[1]);
        run_loop();
        samples[round] = microseconds_now() - start;

        if (fired != pairs || timed_out != 0) {
            fprintf(stderr, "round %d: %ld of %d events fired, %ld timed out\n", round, fired, pairs, timed_out);
            return 1;
        }
        printf("round %d: %.1f us\n", round, samples[round]);
        free_events();
        for (int i = 0; i < pairs * 2; i++) close(fds[i]);
    }
    qsort(samples, (size_t)rounds, sizeof(double), by_value);
    printf("cascade lib=%s backend=%s n=%d rounds=%d median_us=%.1f\n", LIB_NAME, backend, pairs, rounds,
           samples[rounds / 2]);
    close_loop();
    free(fds);
    free(samples);
    return 0;
}
