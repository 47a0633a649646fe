/*
 * SwiftEvent's `event-bench pipes` method, written against libevent 2.1 so
 * both run the same rounds in the same run (see Benchmarks/compare-pipes).
 *
 * A ring of n socketpairs, each read end watched by a persistent read
 * event. Each round: untimed, every event is deleted and added again, the
 * loop runs once without blocking, and one byte is written into `a` evenly
 * spaced pairs; timed, the loop runs once-non-blocking until every byte
 * written has been read, each read callback passing a byte on to the next
 * pair while the round's `w` writes last. Prints each round's microseconds,
 * then `backend=NAME locking=libevent median_us=X`. With -t the base is
 * made thread-safe first (evthread_use_pthreads: libevent's counterpart of a
 * shared base) and the summary says locking=libevent-pthreads.
 *
 * Build: cc -O2 -o pipes_libevent pipes_libevent.c \
 *        $(pkg-config --cflags --libs libevent libevent_pthreads)
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

static void on_read(evutil_socket_t fd, short what, void *context) {
    (void)what;
    long index = (long)context;
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

    if (threaded && evthread_use_pthreads() != 0) {
        fprintf(stderr, "evthread_use_pthreads failed\n");
        return 1;
    }
    struct event_config *config = event_config_new();
    if (method) {
        const char **all = event_get_supported_methods();
        for (int i = 0; all[i]; i++)
            if (strcmp(all[i], method) != 0) event_config_avoid_method(config, all[i]);
    }
    struct event_base *base = event_base_new_with_config(config);
    event_config_free(config);
    if (!base || (method && strcmp(event_base_get_method(base), method) != 0)) {
        fprintf(stderr, "libevent cannot use method %s\n", method ? method : "(default)");
        return 1;
    }

    ring.pairs = pairs;
    ring.fds = calloc((size_t)pairs * 2, sizeof(int));
    for (int i = 0; i < pairs; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, &ring.fds[2 * i]) < 0) {
            perror("socketpair");
            return 1;
        }
    }
    struct event **events = calloc((size_t)pairs, sizeof(struct event *));
    for (long i = 0; i < pairs; i++)
        events[i] = event_new(base, ring.fds[2 * i], EV_READ | EV_PERSIST, on_read, (void *)i);

    double *samples = calloc((size_t)rounds, sizeof(double));
    int spacing = (pairs / active) * 2;
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < pairs; i++) {
            event_del(events[i]);
            event_add(events[i], NULL);
        }
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ring.fired = 0;
        for (int i = 0; i < active; i++) {
            send_byte(ring.fds[i * spacing + 1]);
            ring.fired++;
        }
        ring.reads = 0;
        ring.writes_left = writes;
        double start = microseconds_now();
        do {
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        } while (ring.reads != ring.fired);
        samples[round] = microseconds_now() - start;
        printf("round %d: %.1f us\n", round, samples[round]);
    }
    qsort(samples, (size_t)rounds, sizeof(double), by_value);
    printf("backend=%s locking=%s median_us=%.1f\n", event_base_get_method(base),
           threaded ? "libevent-pthreads" : "libevent", samples[rounds / 2]);

    for (int i = 0; i < pairs; i++) event_free(events[i]);
    event_base_free(base);
    for (int i = 0; i < pairs * 2; i++) close(ring.fds[i]);
    return 0;
}
