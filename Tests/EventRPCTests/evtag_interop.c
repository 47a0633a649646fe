/* evtag interop with libevent 2.1 (Debian's libevent-dev), for EventRPCTests.
 *   evtag_interop encode          prints, in hex, a fixed message made with libevent's evtag_marshal_*
 *   evtag_interop decode HEX      reads the same message with evtag_unmarshal_* and prints its fields
 * Build: gcc -O2 -o evtag_interop evtag_interop.c $(pkg-config --cflags --libs libevent) */
#include <event2/buffer.h>
#include <event2/tag.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static void fill(struct evbuffer *buffer) {
    struct timeval when = {1700000000, 123456};
    evtag_marshal_int(buffer, 3, 0x1234);
    evtag_marshal_string(buffer, 2, "hello, evtag");
    evtag_marshal_timeval(buffer, 4, &when);
    evtag_marshal_int64(buffer, 5, 0x123456789ULL);
    evtag_marshal_int(buffer, 0x166, 0xffffffffu);
    evtag_marshal(buffer, 7, "\x00\x01\x02\xff", 4);
}

int main(int argc, char **argv) {
    evtag_init();
    if (argc >= 2 && strcmp(argv[1], "encode") == 0) {
        struct evbuffer *buffer = evbuffer_new();
        fill(buffer);
        size_t length = evbuffer_get_length(buffer);
        unsigned char *bytes = evbuffer_pullup(buffer, -1);
        for (size_t i = 0; i < length; i++) printf("%02x", bytes[i]);
        printf("\n");
        evbuffer_free(buffer);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "decode") == 0) {
        struct evbuffer *buffer = evbuffer_new();
        const char *hex = argv[2];
        for (size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
            unsigned int byte;
            sscanf(hex + i, "%2x", &byte);
            unsigned char value = (unsigned char)byte;
            evbuffer_add(buffer, &value, 1);
        }
        ev_uint32_t integer = 0, big = 0;
        ev_uint64_t wide = 0;
        char *text = NULL;
        struct timeval when = {0, 0};
        unsigned char raw[4];
        if (evtag_unmarshal_int(buffer, 3, &integer) < 0) return 10;
        if (evtag_unmarshal_string(buffer, 2, &text) < 0) return 11;
        if (evtag_unmarshal_timeval(buffer, 4, &when) < 0) return 12;
        if (evtag_unmarshal_int64(buffer, 5, &wide) < 0) return 13;
        if (evtag_unmarshal_int(buffer, 0x166, &big) < 0) return 14;
        if (evtag_unmarshal_fixed(buffer, 7, raw, 4) < 0) return 15;
        printf("int=%x string=%s timeval=%ld.%06ld int64=%llx big=%x fixed=%02x%02x%02x%02x\n", integer, text,
               (long)when.tv_sec, (long)when.tv_usec, (unsigned long long)wide, big, raw[0], raw[1], raw[2], raw[3]);
        free(text);
        evbuffer_free(buffer);
        return 0;
    }
    fprintf(stderr, "usage: %s encode | decode HEX\n", argv[0]);
    return 2;
}
