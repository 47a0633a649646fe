/*
 * Timer add/cancel/fire rates against libevent 2.1 or, built with
 * -DWITH_LIBEV, libev 4, for comparison with SwiftEvent's
 * `event-bench timers` (the same method, phases and pseudo-random numbers).
 *
 * N timer events (-n) are made once, untimed (libevent: event_new(base, -1,
 * 0, cb, arg); libev: an array of ev_timer). Each round (-r) then times
 * five phases; each phase's rate is N / its elapsed time, and the summary
 * gives each rate's median over the rounds.
 *   1. adds: every timer is added with a duration between 1 s and 60 s
 *      (µs resolution), drawn once from Knuth's MMIX LCG (seed 42, high
 *      bits), so both programs use the same durations in the same order.
 *   2. cancels: every timer is deleted again, in a pseudo-random order
 *      (Fisher-Yates with the same LCG, seed 0x5EED).
 *   3. common_adds / common_cancels: the same with one duration, 30 s.
 *      libevent adds on the common timeout made by
 *      event_base_init_common_timeout(base, 30 s) (a queue instead of the
 *      heap); libev has no common timeouts, so it uses ev_timer with the
 *      plain 30 s duration.
 *   4. fires: untimed, every timer is added with a duration between 0 and
 *      100 µs (drawn after phase 1's) and the program sleeps 2 ms, so all
 *      are due; timed, the loop runs until it exits because every timer
 *      has fired (libevent: event_base_dispatch; libev: ev_run(loop, 0)).
 * libev keeps a cached "now" that only the loop refreshes; the program calls
 * ev_now_update before every phase (untimed) so its timers start from the
 * real time, as libevent's event_add outside the loop does.
 *
 * -m epoll|poll|select picks the backend (only phase 4 waits in it); exits 1
 * if the library cannot use it. -t (libevent only) calls
 * evthread_use_pthreads before the base is made (lib=libevent-pthreads).
 * Summary (last line): `timers lib=L backend=B n=N rounds=R adds_per_s=A
 * cancels_per_s=C common_adds_per_s=CA common_cancels_per_s=CC fires_per_s=F`.
 *
 * Build: cc -O2 -Wall -o timers_libevent timers.c \
 *        $(pkg-config --cflags --libs libevent libevent_pthreads)
 *        cc -O2 -Wall -DWITH_LIBEV -o timers_libev timers.c -lev
 * Run:   ./timers_libevent -n 100000 -r 5 -m epoll
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_LIBEV
#include <ev.h>
#else
#include <event2/event.h>
#include <event2/thread.h>
#endif
#include "bench_loop.h"

enum { ADDS, CANCELS, COMMON_ADDS, COMMON_CANCELS, FIRES, PHASES };
static const char *phase_names[PHASES] = {"adds", "cancels", "common_adds", "common_cancels", "fires"};

static int count = 100000;
static long fired;
static int64_t *random_us; /* phase 1 durations */
static int64_t *spread_us; /* phase 4 durations */
static int *order;         /* cancel order */

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Knuth's MMIX LCG, high bits: the same sequence as event-bench's nextRandom. */
static uint64_t next_random(uint64_t *state) {
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return *state >> 33;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#ifdef WITH_LIBEV
#define LIB_NAME "libev"

static struct ev_loop *loop;
static ev_timer *timers;
static ev_tstamp *random_s, *spread_s;

static void on_timer(struct ev_loop *l, ev_timer *w, int revents) {
    (void)l;
    (void)w;
    (void)revents;
    fired++;
}

static const char *setup(const char *method, int threaded) {
    loop = bench_open_libev(method, threaded);
    timers = calloc((size_t)count, sizeof *timers);
    random_s = calloc((size_t)count, sizeof *random_s);
    spread_s = calloc((size_t)count, sizeof *spread_s);
    for (int i = 0; i < count; i++) {
        ev_timer_init(&timers[i], on_timer, 1., 0.);
        random_s[i] = (ev_tstamp)random_us[i] / 1e6;
        spread_s[i] = (ev_tstamp)spread_us[i] / 1e6;
    }
    return bench_libev_backend_name(ev_backend(loop));
}

static double run_phase(int phase) {
    if (phase == FIRES) {
        ev_now_update(loop);
        for (int i = 0; i < count; i++) {
            ev_timer_set(&timers[i], spread_s[i], 0.);
            ev_timer_start(loop, &timers[i]);
        }
        usleep(2000);
    }
    ev_now_update(loop);
    double start = seconds_now();
    switch (phase) {
    case ADDS:
        for (int i = 0; i < count; i++) {
            ev_timer_set(&timers[i], random_s[i], 0.);
            ev_timer_start(loop, &timers[i]);
        }
        break;
    case COMMON_ADDS:
        for (int i = 0; i < count; i++) {
            ev_timer_set(&timers[i], 30., 0.);
            ev_timer_start(loop, &timers[i]);
        }
        break;
    case CANCELS:
    case COMMON_CANCELS:
        for (int i = 0; i < count; i++) ev_timer_stop(loop, &timers[order[i]]);
        break;
    case FIRES:
        ev_run(loop, 0);
        break;
    }
    return seconds_now() - start;
}

static void teardown(void) {
    ev_loop_destroy(loop);
    free(timers);
    free(random_s);
    free(spread_s);
}

#else
#define LIB_NAME (threaded ? "libevent-pthreads" : "libevent")

static struct event_base *base;
static struct event **timers;
static struct timeval *random_tv, *spread_tv;
static const struct timeval *common_30s;

static void on_timer(evutil_socket_t fd, short what, void *context) {
    (void)fd;
    (void)what;
    (void)context;
    fired++;
}

static struct timeval to_timeval(int64_t us) {
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    return tv;
}

static const char *setup(const char *method, int threaded) {
    base = bench_open_libevent(method, threaded);
    struct timeval thirty_seconds = {30, 0};
    common_30s = event_base_init_common_timeout(base, &thirty_seconds);
    if (!common_30s) {
        fprintf(stderr, "event_base_init_common_timeout failed\n");
        exit(1);
    }
    timers = calloc((size_t)count, sizeof *timers);
    random_tv = calloc((size_t)count, sizeof *random_tv);
    spread_tv = calloc((size_t)count, sizeof *spread_tv);
    for (int i = 0; i < count; i++) {
        timers[i] = event_new(base, -1, 0, on_timer, NULL);
        random_tv[i] = to_timeval(random_us[i]);
        spread_tv[i] = to_timeval(spread_us[i]);
    }
    return event_base_get_method(base);
}

static double run_phase(int phase) {
    if (phase == FIRES) {
        for (int i = 0; i < count; i++) event_add(timers[i], &spread_tv[i]);
        usleep(2000);
    }
    double start = seconds_now();
    switch (phase) {
    case ADDS:
        for (int i = 0; i < count; i++) event_add(timers[i], &random_tv[i]);
        break;
    case COMMON_ADDS:
        for (int i = 0; i < count; i++) event_add(timers[i], common_30s);
        break;
    case CANCELS:
    case COMMON_CANCELS:
        for (int i = 0; i < count; i++) event_del(timers[order[i]]);
        break;
    case FIRES:
        event_base_dispatch(base);
        break;
    }
    return seconds_now() - start;
}

static void teardown(void) {
    for (int i = 0; i < count; i++) event_free(timers[i]);
    event_base_free(base);
    free(timers);
    free(random_tv);
    free(spread_tv);
}
#endif

int main(int argc, char **argv) {
    int rounds = 5, threaded = 0, option;
    const char *method = NULL;
    while ((option = getopt(argc, argv, "n:r:m:t")) != -1) {
        switch (option) {
        case 'n': count = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'm': method = optarg; break;
        case 't': threaded = 1; break;
        default:
            fprintf(stderr, "usage: %s [-n timers] [-r rounds] [-m epoll|poll|select] [-t]\n", argv[0]);
            return 2;
        }
    }
    if (count < 1 || rounds < 1) {
        fprintf(stderr, "need n >= 1, r >= 1\n");
        return 2;
    }

    random_us = calloc((size_t)count, sizeof *random_us);
    spread_us = calloc((size_t)count, sizeof *spread_us);
    order = calloc((size_t)count, sizeof *order);
    uint64_t state = 42;
    for (int i = 0; i < count; i++) random_us[i] = 1000000 + (int64_t)(next_random(&state) % 59000000u); /* 1..60 s */
    for (int i = 0; i < count; i++) spread_us[i] = (int64_t)(next_random(&state) % 100u);                 /* 0..100 us */
    for (int i = 0; i < count; i++) order[i] = i;
    uint64_t shuffle = 0x5EED;
    for (int i = count - 1; i > 0; i--) {
        int j = (int)(next_random(&shuffle) % (uint64_t)(i + 1));
        int swap = order[i];
        order[i] = order[j];
        order[j] = swap;
    }
    const char *backend = setup(method, threaded);

    double *rates[PHASES];
    for (int p = 0; p < PHASES; p++) rates[p] = calloc((size_t)rounds, sizeof(double));
    for (int round = 0; round < rounds; round++) {
        printf("round %d:", round);
        for (int p = 0; p < PHASES; p++) {
            fired = 0;
            double elapsed = run_phase(p);
            if (p == FIRES && fired != count) {
                fprintf(stderr, "\nround %d: %ld of %d timers fired\n", round, fired, count);
                return 1;
            }
            rates[p][round] = count / elapsed;
            printf(" %s %.1f us (%.0f/s)", phase_names[p], elapsed * 1e6, rates[p][round]);
        }
        printf("\n");
    }
    double median[PHASES];
    for (int p = 0; p < PHASES; p++) {
        qsort(rates[p], (size_t)rounds, sizeof(double), by_value);
        median[p] = rates[p][rounds / 2];
    }
    printf("timers lib=%s backend=%s n=%d rounds=%d adds_per_s=%.0f cancels_per_s=%.0f common_adds_per_s=%.0f "
           "common_cancels_per_s=%.0f fires_per_s=%.0f\n",
           LIB_NAME, backend, count, rounds, median[ADDS], median[CANCELS], median[COMMON_ADDS], median[COMMON_CANCELS],
           median[FIRES]);

    teardown();
    for (int p = 0; p < PHASES; p++) free(rates[p]);
    free(random_us);
    free(spread_us);
    free(order);
    return 0;
}
