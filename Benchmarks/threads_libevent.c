/*
 * Cross-thread activation on one shared libevent 2.1 base (always made
 * thread-safe with evthread_use_pthreads), for comparison with SwiftEvent's
 * `event-bench threads`.
 *
 * The main thread runs event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY). P
 * producer threads (-p) each own K events (-k) made with
 * event_new(base, -1, 0, cb, arg) and call event_active(ev, EV_READ, 0) on
 * them round-robin, M times each (-M). A producer may have at most `cap`
 * activations outstanding (-o, default K); at the cap it sleeps on a
 * semaphore until the loop thread's callbacks bring its outstanding count
 * down to the low-water mark (-l, default cap/2).
 *
 * Counting is exact: each event has an atomic token count that its producer
 * increments before event_active. The callback exchanges it with 0, adds
 * what it took to `delivered` and subtracts it from the producer's
 * outstanding count. An activation of an event that is still queued is
 * merged by libevent into the pending callback, so
 * coalesced = P*M - callbacks run; delivered must equal P*M, else exit 1.
 *
 * Latency: every 64th activation of a producer stores CLOCK_MONOTONIC in the
 * event's stamp slot just before event_active; the callback that takes the
 * token also takes the stamp and records now - stamp (queueing behind up to
 * P*cap pending callbacks included). p50 and p99 are printed in µs.
 *
 * The last producer to finish activates a "done" event. It is queued behind
 * everything already active; its callback calls event_base_loopbreak once
 * every token has been delivered (it re-activates itself if not, a bounded
 * number of times). wall_ms runs from just before the producers start until
 * the loop returns; per_sec = P*M / wall.
 *
 * -m epoll|poll|select picks the backend (every other method avoided; exits
 * 1 if the base's method differs). Summary (last line):
 * `threads lib=libevent-pthreads producers=P events=K activations=M
 *  delivered=D coalesced=C wall_ms=T per_sec=R p50_us=X p99_us=Y`
 * (activations is per producer).
 *
 * Build: cc -O2 -Wall -pthread -o threads_libevent threads_libevent.c \
 *        $(pkg-config --cflags --libs libevent libevent_pthreads)
 * Run:   ./threads_libevent -p 2 -k 64 -M 200000
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STAMP_EVERY 64
#define DONE_RETRIES 100000

struct producer;

struct slot {
    struct event *event;
    struct producer *owner;
    _Atomic long tokens;
    _Atomic uint64_t stamp; /* ns, 0 = none */
};

struct producer {
    pthread_t thread;
    struct slot *slots;
    _Atomic long outstanding;
    _Atomic int sleeping;
    sem_t wake;
    long sleeps;
} __attribute__((aligned(64)));

static int producers = 2, per_producer = 64;
static long activations = 200000, cap = -1, low_water = -1;
static struct event_base *base;
static struct event *done_event;
static struct producer *all;
static _Atomic int finished;

/* Touched by the loop thread only (read by main once the loop has returned). */
static long delivered, callbacks, done_retries;
static double *latencies;
static long latency_count, latency_capacity;

static uint64_t nanoseconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_active(evutil_socket_t fd, short what, void *context) {
    (void)fd;
    (void)what;
    struct slot *slot = context;
    callbacks++;
    long taken = atomic_exchange(&slot->tokens, 0);
    if (taken == 0) return;
    uint64_t stamp = atomic_exchange(&slot->stamp, 0);
    if (stamp && latency_count < latency_capacity)
        latencies[latency_count++] = (double)(nanoseconds_now() - stamp) / 1e3;
    delivered += taken;
    struct producer *owner = slot->owner;
    long left = atomic_fetch_sub(&owner->outstanding, taken) - taken;
    /* Wake the owner if it sleeps at the cap and we reached the low-water
     * mark. Whoever clears `sleeping` (us, or the producer re-checking)
     * decides whether a post is owed: the flag is set before the producer
     * re-reads `outstanding`, and we read it after our decrement, so with
     * sequentially consistent atomics one of us sees the other's write. */
    if (left <= low_water && atomic_load(&owner->sleeping) && atomic_exchange(&owner->sleeping, 0))
        sem_post(&owner->wake);
}

static void on_done(evutil_socket_t fd, short what, void *context) {
    (void)fd;
    (void)what;
    (void)context;
    if (delivered == (long)producers * activations || ++done_retries > DONE_RETRIES) {
        event_base_loopbreak(base);
        return;
    }
    event_active(done_event, EV_READ, 0); /* tokens still queued ahead: look again after them */
}

static void wait_below_cap(struct producer *self) {
    atomic_store(&self->sleeping, 1);
    if (atomic_load(&self->outstanding) > low_water) {
        self->sleeps++;
        while (sem_wait(&self->wake) != 0) {}
    } else if (!atomic_exchange(&self->sleeping, 0)) {
        /* A callback cleared the flag first and owes (or made) a post. */
        while (sem_wait(&self->wake) != 0) {}
    }
}

static void *produce(void *context) {
    struct producer *self = context;
    int next = 0;
    for (long i = 0; i < activations; i++) {
        if (atomic_load(&self->outstanding) >= cap) wait_below_cap(self);
        struct slot *slot = &self->slots[next];
        if (++next == per_producer) next = 0;
        if (i % STAMP_EVERY == 0) atomic_store(&slot->stamp, nanoseconds_now());
        atomic_fetch_add(&self->outstanding, 1);
        atomic_fetch_add(&slot->tokens, 1);
        event_active(slot->event, EV_READ, 0);
    }
    if (atomic_fetch_add(&finished, 1) + 1 == producers) event_active(done_event, EV_READ, 0);
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, long count, double p) {
    if (count == 0) return 0;
    long index = (long)(p * (double)(count - 1) + 0.5);
    return sorted[index];
}

int main(int argc, char **argv) {
    const char *method = NULL;
    int option;
    while ((option = getopt(argc, argv, "p:k:M:o:l:m:")) != -1) {
        switch (option) {
        case 'p': producers = atoi(optarg); break;
        case 'k': per_producer = atoi(optarg); break;
        case 'M': activations = atol(optarg); break;
        case 'o': cap = atol(optarg); break;
        case 'l': low_water = atol(optarg); break;
        case 'm': method = optarg; break;
        default:
            fprintf(stderr,
                    "usage: %s [-p producers] [-k events per producer] [-M activations per producer]"
                    " [-o outstanding cap] [-l low-water] [-m epoll|poll|select]\n",
                    argv[0]);
            return 2;
        }
    }
    if (cap < 0) cap = per_producer;
    if (low_water < 0) low_water = cap / 2;
    if (producers < 1 || per_producer < 1 || activations < 1 || cap < 1 || low_water >= cap) {
        fprintf(stderr, "need p, k, M, o >= 1 and 0 <= l < o\n");
        return 2;
    }

    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "evthread_use_pthreads failed\n");
        return 1;
    }
    struct event_config *config = event_config_new();
    if (method) {
        const char **methods = event_get_supported_methods();
        for (int i = 0; methods[i]; i++)
            if (strcmp(methods[i], method) != 0) event_config_avoid_method(config, methods[i]);
    }
    base = event_base_new_with_config(config);
    event_config_free(config);
    if (!base || (method && strcmp(event_base_get_method(base), method) != 0)) {
        fprintf(stderr, "libevent cannot use method %s\n", method ? method : "(default)");
        return 1;
    }

    all = aligned_alloc(64, sizeof *all * (size_t)producers);
    memset(all, 0, sizeof *all * (size_t)producers);
    for (int p = 0; p < producers; p++) {
        struct producer *producer = &all[p];
        sem_init(&producer->wake, 0, 0);
        producer->slots = calloc((size_t)per_producer, sizeof *producer->slots);
        for (int k = 0; k < per_producer; k++) {
            struct slot *slot = &producer->slots[k];
            slot->owner = producer;
            slot->event = event_new(base, -1, 0, on_active, slot);
        }
    }
    done_event = event_new(base, -1, 0, on_done, NULL);
    long total = (long)producers * activations;
    latency_capacity = producers * (activations / STAMP_EVERY + 1);
    latencies = calloc((size_t)latency_capacity, sizeof *latencies);

    uint64_t start = nanoseconds_now();
    for (int p = 0; p < producers; p++) {
        if (pthread_create(&all[p].thread, NULL, produce, &all[p]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    uint64_t elapsed = nanoseconds_now() - start;
    long sleeps = 0;
    for (int p = 0; p < producers; p++) {
        pthread_join(all[p].thread, NULL);
        sleeps += all[p].sleeps;
    }

    double wall_ms = (double)elapsed / 1e6;
    double per_sec = (double)total / ((double)elapsed / 1e9);
    qsort(latencies, (size_t)latency_count, sizeof *latencies, by_value);
    printf("callbacks=%ld producer_sleeps=%ld latency_samples=%ld done_retries=%ld backend=%s\n", callbacks, sleeps,
           latency_count, done_retries, event_base_get_method(base));
    int ok = delivered == total;
    if (!ok) fprintf(stderr, "delivered %ld tokens, expected %ld\n", delivered, total);
    printf("threads lib=libevent-pthreads producers=%d events=%d activations=%ld delivered=%ld coalesced=%ld "
           "wall_ms=%.1f per_sec=%.0f p50_us=%.1f p99_us=%.1f\n",
           producers, per_producer, activations, delivered, total - callbacks, wall_ms, per_sec,
           percentile(latencies, latency_count, 0.50), percentile(latencies, latency_count, 0.99));

    for (int p = 0; p < producers; p++) {
        for (int k = 0; k < per_producer; k++) event_free(all[p].slots[k].event);
        free(all[p].slots);
        sem_destroy(&all[p].wake);
    }
    event_free(done_event);
    event_base_free(base);
    free(all);
    free(latencies);
    return ok ? 0 : 1;
}
