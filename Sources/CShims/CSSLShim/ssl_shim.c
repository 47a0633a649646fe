#include "CSSLShim.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void se_ssl_ctx_apply_defaults(SSL_CTX *ctx, int server) {
    uint64_t options = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;
    if (server) options |= SSL_OP_CIPHER_SERVER_PREFERENCE;
    SSL_CTX_set_options(ctx, options);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
}

int se_ssl_ctx_set_min_proto(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_min_proto_version(ctx, version); }
int se_ssl_ctx_set_max_proto(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_max_proto_version(ctx, version); }
int se_ssl_ctx_add_chain_cert(SSL_CTX *ctx, X509 *cert) { return (int)SSL_CTX_add1_chain_cert(ctx, cert); }
long se_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_session_cache_mode(ctx, mode); }
long se_ssl_ctx_sess_number(SSL_CTX *ctx) { return SSL_CTX_sess_number(ctx); }
long se_ssl_ctx_sess_hits(SSL_CTX *ctx) { return SSL_CTX_sess_hits(ctx); }
int se_ssl_set_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
long se_bio_set_mem_eof_return(BIO *bio, long value) { return BIO_set_mem_eof_return(bio, value); }
size_t se_bio_pending(BIO *bio) { return BIO_ctrl_pending(bio); }

int se_err_is_unexpected_eof(unsigned long code) {
    return ERR_GET_LIB(code) == ERR_LIB_SSL && ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

int se_err_is_wrong_version(unsigned long code) {
    if (ERR_GET_LIB(code) != ERR_LIB_SSL) return 0;
    int reason = ERR_GET_REASON(code);
    return reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST || reason == SSL_R_WRONG_VERSION_NUMBER
        || reason == SSL_R_UNKNOWN_PROTOCOL || reason == SSL_R_PACKET_LENGTH_TOO_LONG;
}

unsigned long long se_ssl_op_no_renegotiation(void) { return SSL_OP_NO_RENEGOTIATION; }
int se_ssl_renegotiate(SSL *ssl) { return SSL_renegotiate(ssl); }
void se_ssl_ctx_disable_tickets(SSL_CTX *ctx) { SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET); }

struct se_sni_entry {
    char *name;
    SSL_CTX *ctx;
};

struct se_sni_table {
    int count;
    struct se_sni_entry entries[];
};

se_sni_table *se_sni_table_new(int count) {
    se_sni_table *table = calloc(1, sizeof(se_sni_table) + (size_t)count * sizeof(struct se_sni_entry));
    if (table) table->count = count;
    return table;
}

void se_sni_table_set(se_sni_table *table, int index, const char *name, SSL_CTX *ctx) {
    if (!table || index < 0 || index >= table->count) return;
    free(table->entries[index].name);
    table->entries[index].name = strdup(name);
    table->entries[index].ctx = ctx;
}

void se_sni_table_free(se_sni_table *table) {
    if (!table) return;
    for (int i = 0; i < table->count; i++) free(table->entries[i].name);
    free(table);
}

static int se_sni_matches(const char *pattern, const char *name) {
    if (strcasecmp(pattern, name) == 0) return 1;
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        // One label in front: "a.example.com" matches "*.example.com", "example.com" does not.
        return dot && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
    }
    return 0;
}

static int se_sni_callback(SSL *ssl, int *alert, void *arg) {
    (void)alert;
    se_sni_table *table = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !table) return SSL_TLSEXT_ERR_NOACK;
    for (int i = 0; i < table->count; i++) {
        if (table->entries[i].name && table->entries[i].ctx && se_sni_matches(table->entries[i].name, name)) {
            SSL_set_SSL_CTX(ssl, table->entries[i].ctx);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    // No certificate for that name: the default one answers.
    return SSL_TLSEXT_ERR_NOACK;
}

void se_ssl_ctx_install_sni(SSL_CTX *ctx, se_sni_table *table) {
    SSL_CTX_set_tlsext_servername_callback(ctx, se_sni_callback);
    SSL_CTX_set_tlsext_servername_arg(ctx, table);
}

struct se_alpn {
    unsigned int length;
    unsigned char protocols[];
};

static int se_alpn_callback(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                            unsigned int inlen, void *arg) {
    (void)ssl;
    struct se_alpn *alpn = arg;
    unsigned char *selected = NULL;
    unsigned char selectedLength = 0;
    if (SSL_select_next_proto(&selected, &selectedLength, alpn->protocols, alpn->length, in, inlen)
        != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    *outlen = selectedLength;
    return SSL_TLSEXT_ERR_OK;
}

unsigned char *se_ssl_ctx_install_alpn(SSL_CTX *ctx, const unsigned char *protocols, unsigned int length) {
    struct se_alpn *alpn = malloc(sizeof(struct se_alpn) + length);
    if (!alpn) return NULL;
    alpn->length = length;
    memcpy(alpn->protocols, protocols, length);
    SSL_CTX_set_alpn_select_cb(ctx, se_alpn_callback, alpn);
    return (unsigned char *)alpn;
}
