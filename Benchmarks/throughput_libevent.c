/*
 * SwiftEvent's `event-bench throughput` method written against libevent 2.1,
 * to run both in one comparison (Benchmarks/compare-throughput).
 *
 * M connections echo N MB in total: each client bufferevent keeps at most
 * four chunks queued in its output (refilled from its write callback, write
 * low watermark = one chunk) and drains its input from its read callback;
 * the server side echoes with evbuffer_add_buffer. Over TCP on 127.0.0.1
 * through an evconnlistener, or over bufferevent pairs. Prints each round and
 * `throughput mode=M backend=B locking=libevent ... mb_per_s=X` (the median).
 *
 * Build: cc -O2 -o throughput_libevent throughput_libevent.c \
 *        $(pkg-config --cflags --libs libevent libevent_pthreads)
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include "bench_loop.h"
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int connections = 4, megabytes = 64, chunk = 16384;
static char *payload;
static int finished;
static int failed;

struct client {
    long to_send, received, expected;
};

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void refill(struct bufferevent *bev, struct client *c) {
    struct evbuffer *out = bufferevent_get_output(bev);
    while (c->to_send > 0 && evbuffer_get_length(out) < (size_t)(4 * chunk)) {
        long n = c->to_send < chunk ? c->to_send : chunk;
        bufferevent_write(bev, payload, (size_t)n);
        c->to_send -= n;
    }
}

static void client_read(struct bufferevent *bev, void *arg) {
    struct client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    evbuffer_drain(in, n);
    c->received += (long)n;
    if (c->received >= c->expected) {
        finished++;
        if (finished == connections) event_base_loopbreak(bufferevent_get_base(bev));
    }
}

static void client_write(struct bufferevent *bev, void *arg) { refill(bev, arg); }

static void client_event(struct bufferevent *bev, short what, void *arg) {
    (void)arg;
    if (what & BEV_EVENT_CONNECTED) return;
    fprintf(stderr, "client event 0x%x\n", what);
    failed = 1;
    event_base_loopbreak(bufferevent_get_base(bev));
}

static void echo_read(struct bufferevent *bev, void *arg) {
    (void)arg;
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void server_event(struct bufferevent *bev, short what, void *arg) {
    (void)what;
    (void)arg;
    bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *address, int length, void *arg) {
    (void)address;
    (void)length;
    (void)arg;
    struct event_base *base = evconnlistener_get_base(listener);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, echo_read, NULL, server_event, NULL);
    bufferevent_enable(bev, EV_READ);
}

static void setup_client(struct bufferevent *bev, struct client *c) {
    c->expected = (long)megabytes * 1048576 / connections;
    c->to_send = c->expected;
    c->received = 0;
    bufferevent_setwatermark(bev, EV_WRITE, (size_t)chunk, 0);
    bufferevent_setcb(bev, client_read, client_write, client_event, c);
    bufferevent_enable(bev, EV_READ);
}

static double run_once(const char *mode, const char *method, const char **backend_name) {
    /* threads (-t) were set up once in main */
    struct event_base *base = bench_open_libevent(method, 0);
    *backend_name = event_base_get_method(base);
    finished = 0;
    failed = 0;
    struct client *clients = calloc((size_t)connections, sizeof *clients);
    struct bufferevent **bevs = calloc((size_t)connections * 2, sizeof *bevs);
    struct evconnlistener *listener = NULL;
    double start;
    if (strcmp(mode, "pair") == 0) {
        start = seconds_now();
        for (int i = 0; i < connections; i++) {
            struct bufferevent *ends[2];
            bufferevent_pair_new(base, 0, ends);
            bufferevent_setcb(ends[1], echo_read, NULL, NULL, NULL);
            bufferevent_enable(ends[1], EV_READ);
            setup_client(ends[0], &clients[i]);
            refill(ends[0], &clients[i]);
            bevs[2 * i] = ends[0];
            bevs[2 * i + 1] = ends[1];
        }
    } else {
        struct sockaddr_in address;
        memset(&address, 0, sizeof address);
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        listener = evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 128,
                                           (struct sockaddr *)&address, sizeof address);
        socklen_t length = sizeof address;
        getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&address, &length);
        start = seconds_now();
        for (int i = 0; i < connections; i++) {
            struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
            setup_client(bev, &clients[i]);
            bufferevent_socket_connect(bev, (struct sockaddr *)&address, sizeof address);
            refill(bev, &clients[i]);
            bevs[2 * i] = bev;
        }
    }
    event_base_dispatch(base);
    double elapsed = seconds_now() - start;
    if (failed || finished != connections) {
        fprintf(stderr, "only %d of %d connections finished\n", finished, connections);
        exit(1);
    }
    for (int i = 0; i < connections * 2; i++)
        if (bevs[i]) bufferevent_free(bevs[i]);
    if (listener) evconnlistener_free(listener);
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_free(base);
    free(clients);
    free(bevs);
    return elapsed;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *mode = "socket", *method = NULL;
    int rounds = 3, threaded = 0, option;
    while ((option = getopt(argc, argv, "c:M:k:x:m:r:t")) != -1) {
        switch (option) {
        case 'c': connections = atoi(optarg); break;
        case 'M': megabytes = atoi(optarg); break;
        case 'k': chunk = atoi(optarg); break;
        case 'x': mode = optarg; break;
        case 'm': method = optarg; break;
        case 'r': rounds = atoi(optarg); break;
        case 't': threaded = 1; break;
        default:
            fprintf(stderr, "usage: %s [-c connections] [-M megabytes] [-k chunk] [-x socket|pair] [-m method] [-r rounds] [-t]\n", argv[0]);
            return 2;
        }
    }
    if (connections < 1 || megabytes < 1 || chunk < 1 || rounds < 1) return 2;
    if (threaded) evthread_use_pthreads();
    payload = malloc((size_t)chunk);
    memset(payload, 'a', (size_t)chunk);
    double *rates = calloc((size_t)rounds, sizeof *rates);
    const char *backend = "";
    for (int round = 0; round < rounds; round++) {
        double seconds = run_once(mode, method, &backend);
        rates[round] = megabytes / seconds;
        printf("round %d: %.1f us, %.1f MB/s\n", round, seconds * 1e6, rates[round]);
    }
    qsort(rates, (size_t)rounds, sizeof *rates, by_value);
    printf("throughput mode=%s backend=%s locking=%s connections=%d megabytes=%d mb_per_s=%.1f\n", mode, backend,
           threaded ? "libevent-pthreads" : "libevent", connections, megabytes, rates[rounds / 2]);
    return 0;
}
