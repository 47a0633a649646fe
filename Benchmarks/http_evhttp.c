/* Hello-world HTTP server on libevent 2.1's evhttp, one loop thread: the
 * counterpart of `event-bench http-serve`. Every request gets 200 "hello\n"
 * with Content-Type text/plain (evhttp adds Date and Content-Length); the
 * process exits after SECONDS or on SIGTERM.
 * Usage: http_evhttp PORT [SECONDS]
 * Build: gcc -O2 -o bin/http_evhttp http_evhttp.c $(pkg-config --cflags --libs libevent) */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static void answer(struct evhttp_request *request, void *context) {
    struct evbuffer *body = context;
    struct evbuffer *reply = evhttp_request_get_output_buffer(request);
    evbuffer_add_buffer_reference(reply, body);
    evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type", "text/plain");
    evhttp_send_reply(request, 200, "OK", NULL);
}

static void stop(evutil_socket_t signal_number, short what, void *context) {
    (void)signal_number;
    (void)what;
    event_base_loopexit(context, NULL);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [SECONDS]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int seconds = argc > 2 ? atoi(argv[2]) : 60;
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    struct evbuffer *body = evbuffer_new();
    evbuffer_add(body, "hello\n", 6);
    evhttp_set_gencb(http, answer, body);
    if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) {
        fprintf(stderr, "cannot bind 127.0.0.1:%d\n", port);
        return 1;
    }
    struct event *terminate = evsignal_new(base, SIGTERM, stop, base);
    event_add(terminate, NULL);
    struct timeval limit = {seconds, 0};
    event_base_loopexit(base, &limit);
    printf("http_evhttp: listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    event_base_dispatch(base);
    event_free(terminate);
    evhttp_free(http);
    evbuffer_free(body);
    event_base_free(base);
    return 0;
}
