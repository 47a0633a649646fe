#include "CSSLShim.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <openssl/pem.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

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

static BIO_METHOD *se_socket_method;
static pthread_once_t se_socket_method_once = PTHREAD_ONCE_INIT;

static int se_socket_retriable(int error) {
    return error == EAGAIN || error == EWOULDBLOCK || error == EINTR || error == EINPROGRESS || error == EALREADY;
}

struct se_socket {
    int fd;
    int eof;
};

static int se_socket_write(BIO *bio, const char *data, size_t length, size_t *written) {
    struct se_socket *socket = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    ssize_t n = send(socket->fd, data, length, MSG_NOSIGNAL);
    if (n >= 0) {
        *written = (size_t)n;
        return 1;
    }
    if (se_socket_retriable(errno)) BIO_set_retry_write(bio);
    return 0;
}

static int se_socket_read(BIO *bio, char *data, size_t length, size_t *read) {
    struct se_socket *socket = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    ssize_t n = recv(socket->fd, data, length, 0);
    if (n > 0) {
        *read = (size_t)n;
        return 1;
    }
    if (n == 0) {
        // End of stream: no retry flag; BIO_CTRL_EOF says so, which lets
        // OpenSSL 3 report "unexpected eof while reading".
        socket->eof = 1;
        *read = 0;
        return 0;
    }
    if (se_socket_retriable(errno)) BIO_set_retry_read(bio);
    return 0;
}

static long se_socket_ctrl(BIO *bio, int command, long number, void *pointer) {
    (void)number;
    struct se_socket *socket = BIO_get_data(bio);
    switch (command) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    case BIO_CTRL_EOF:
        return socket ? socket->eof : 0;
    case BIO_C_GET_FD:
        if (!socket) return -1;
        if (pointer) *(int *)pointer = socket->fd;
        return socket->fd;
    default:
        return 0;
    }
}

static int se_socket_create(BIO *bio) {
    BIO_set_init(bio, 1);
    return 1;
}

static int se_socket_destroy(BIO *bio) {
    free(BIO_get_data(bio));
    BIO_set_data(bio, NULL);
    return 1;
}

static void se_socket_method_make(void) {
    BIO_METHOD *method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "swiftevent socket");
    if (!method) return;
    BIO_meth_set_write_ex(method, se_socket_write);
    BIO_meth_set_read_ex(method, se_socket_read);
    BIO_meth_set_ctrl(method, se_socket_ctrl);
    BIO_meth_set_create(method, se_socket_create);
    BIO_meth_set_destroy(method, se_socket_destroy);
    se_socket_method = method;
}

BIO *se_bio_new_socket(int fd) {
    pthread_once(&se_socket_method_once, se_socket_method_make);
    if (!se_socket_method) return NULL;
    struct se_socket *socket = calloc(1, sizeof *socket);
    if (!socket) return NULL;
    socket->fd = fd;
    BIO *bio = BIO_new(se_socket_method);
    if (!bio) {
        free(socket);
        return NULL;
    }
    BIO_set_data(bio, socket);
    return bio;
}

static char *se_bio_to_string(BIO *bio) {
    char *data = NULL;
    long length = BIO_get_mem_data(bio, &data);
    if (length <= 0) return NULL;
    char *copy = malloc((size_t)length + 1);
    if (!copy) return NULL;
    memcpy(copy, data, (size_t)length);
    copy[length] = 0;
    return copy;
}

int se_make_self_signed(const char *name, const char *ip, int days, char **certificate_pem, char **key_pem) {
    int ok = 0;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *certificate = X509_new();
    BIO *certificate_bio = BIO_new(BIO_s_mem());
    BIO *key_bio = BIO_new(BIO_s_mem());
    X509_EXTENSION *extension = NULL;
    if (!key || !certificate || !certificate_bio || !key_bio) goto done;
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1) goto done;
    serial[0] &= 0x7f;
    BIGNUM *number = BN_bin2bn(serial, sizeof serial, NULL);
    if (!number) goto done;
    BN_to_ASN1_INTEGER(number, X509_get_serialNumber(certificate));
    BN_free(number);
    X509_set_version(certificate, 2);
    X509_gmtime_adj(X509_getm_notBefore(certificate), -60);
    X509_gmtime_adj(X509_getm_notAfter(certificate), (long)days * 86400);
    X509_set_pubkey(certificate, key);
    X509_NAME *subject = X509_get_subject_name(certificate);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(certificate, subject);
    char san[600];
    if (ip)
        snprintf(san, sizeof san, "DNS:%s,IP:%s", name, ip);
    else
        snprintf(san, sizeof san, "DNS:%s", name);
    extension = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    if (!extension || !X509_add_ext(certificate, extension, -1)) goto done;
    if (!X509_sign(certificate, key, EVP_sha256())) goto done;
    if (!PEM_write_bio_X509(certificate_bio, certificate)) goto done;
    if (!PEM_write_bio_PrivateKey(key_bio, key, NULL, NULL, 0, NULL, NULL)) goto done;
    *certificate_pem = se_bio_to_string(certificate_bio);
    *key_pem = se_bio_to_string(key_bio);
    ok = *certificate_pem && *key_pem;
done:
    X509_EXTENSION_free(extension);
    BIO_free(certificate_bio);
    BIO_free(key_bio);
    X509_free(certificate);
    EVP_PKEY_free(key);
    return ok;
}
