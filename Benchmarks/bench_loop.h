/* Opening the event loop every C benchmark in this folder uses: libev with
 * -DWITH_LIBEV, libevent otherwise, on `method` (epoll, poll, select; NULL:
 * the library's choice), with every other method avoided. Exits with a
 * message when the library cannot use the method. */
#ifndef BENCH_LOOP_H
#define BENCH_LOOP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WITH_LIBEV
#include <ev.h>

static const char *bench_libev_backend_name(unsigned int backend) {
    switch (backend) {
    case EVBACKEND_EPOLL: return "epoll";
    case EVBACKEND_POLL: return "poll";
    case EVBACKEND_SELECT: return "select";
    case EVBACKEND_LINUXAIO: return "linuxaio";
    case EVBACKEND_IOURING: return "iouring";
    default: return "other";
    }
}

/* libev has no thread-safe mode to ask for: -t is refused. */
static struct ev_loop *bench_open_libev(const char *method, int threaded) {
    if (threaded) {
        fprintf(stderr, "-t (evthread_use_pthreads) applies to libevent only\n");
        exit(2);
    }
    unsigned int wanted = 0;
    if (method) {
        if (strcmp(method, "epoll") == 0) wanted = EVBACKEND_EPOLL;
        else if (strcmp(method, "poll") == 0) wanted = EVBACKEND_POLL;
        else if (strcmp(method, "select") == 0) wanted = EVBACKEND_SELECT;
        else {
            fprintf(stderr, "unknown method %s; expected epoll, poll or select\n", method);
            exit(2);
        }
    }
    struct ev_loop *loop = ev_loop_new(wanted | EVFLAG_NOENV);
    if (!loop || (wanted && ev_backend(loop) != wanted)) {
        fprintf(stderr, "libev cannot use method %s\n", method ? method : "(default)");
        exit(1);
    }
    return loop;
}
#else
#include <event2/event.h>
#include <event2/thread.h>

/* With `threaded`, evthread_use_pthreads() first (lib=libevent-pthreads). */
static struct event_base *bench_open_libevent(const char *method, int threaded) {
    if (threaded && evthread_use_pthreads() != 0) {
        fprintf(stderr, "evthread_use_pthreads failed\n");
        exit(1);
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
        exit(1);
    }
    return base;
}
#endif

#endif
