/* evrpc interop with libevent 2.1's evhttp and evtag (Debian's libevent-dev
 * has no event_rpcgen.py, so the Echo messages are marshalled by hand):
 *   Echo request: tag 1 int value, tag 2 string text
 *   Echo reply:   tag 1 int value * 2, tag 2 string "c:" + text (from C) or what the Swift server sends
 *   rpc_interop serve PORT   serve /.rpc.Echo once on 127.0.0.1:PORT, then exit
 *   rpc_interop call PORT    call /.rpc.Echo on 127.0.0.1:PORT with (21, "from c"), print the reply
 * Build: gcc -O2 -o rpc_interop rpc_interop.c $(pkg-config --cflags --libs libevent) */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/tag.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct event_base *base;
static int result = 1;

static void serve_echo(struct evhttp_request *request, void *context) {
    (void)context;
    struct evbuffer *body = evhttp_request_get_input_buffer(request);
    ev_uint32_t value = 0;
    char *text = NULL;
    if (evhttp_request_get_command(request) != EVHTTP_REQ_POST || evtag_unmarshal_int(body, 1, &value) < 0
        || evtag_unmarshal_string(body, 2, &text) < 0) {
        evhttp_send_error(request, 400, "bad request");
        return;
    }
    struct evbuffer *reply = evbuffer_new();
    char answer[256];
    snprintf(answer, sizeof answer, "c:%s", text);
    evtag_marshal_int(reply, 1, value * 2);
    evtag_marshal_string(reply, 2, answer);
    evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type", "application/octet-stream");
    evhttp_send_reply(request, 200, "OK", reply);
    evbuffer_free(reply);
    free(text);
    result = 0;
    struct timeval soon = {0, 200000};
    event_base_loopexit(base, &soon);
}

static void replied(struct evhttp_request *request, void *context) {
    (void)context;
    if (!request || evhttp_request_get_response_code(request) != 200) {
        printf("error %d\n", request ? evhttp_request_get_response_code(request) : -1);
        event_base_loopexit(base, NULL);
        return;
    }
    struct evbuffer *body = evhttp_request_get_input_buffer(request);
    ev_uint32_t value = 0;
    char *text = NULL;
    if (evtag_unmarshal_int(body, 1, &value) < 0 || evtag_unmarshal_string(body, 2, &text) < 0) {
        printf("bad reply\n");
    } else {
        printf("reply value=%u text=%s\n", value, text);
        result = 0;
    }
    free(text);
    event_base_loopexit(base, NULL);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int port = atoi(argv[2]);
    evtag_init();
    base = event_base_new();
    struct timeval limit = {10, 0};
    event_base_loopexit(base, &limit);
    if (strcmp(argv[1], "serve") == 0) {
        struct evhttp *http = evhttp_new(base);
        evhttp_set_cb(http, "/.rpc.Echo", serve_echo, NULL);
        if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) return 3;
        printf("serving\n");
        fflush(stdout);
        event_base_dispatch(base);
        evhttp_free(http);
    } else {
        struct evhttp_connection *connection = evhttp_connection_base_new(base, NULL, "127.0.0.1", (ev_uint16_t)port);
        struct evhttp_request *request = evhttp_request_new(replied, NULL);
        struct evbuffer *body = evhttp_request_get_output_buffer(request);
        evtag_marshal_int(body, 1, 21);
        evtag_marshal_string(body, 2, "from c");
        evhttp_add_header(evhttp_request_get_output_headers(request), "Host", "127.0.0.1");
        evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type", "application/octet-stream");
        evhttp_make_request(connection, request, EVHTTP_REQ_POST, "/.rpc.Echo");
        event_base_dispatch(base);
        evhttp_connection_free(connection);
    }
    event_base_free(base);
    return result;
}
