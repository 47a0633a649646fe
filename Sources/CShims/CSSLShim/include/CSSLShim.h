// What Swift cannot call in OpenSSL directly: the calls OpenSSL defines as
// macros, the option bits built by function-like macros, and the C callbacks
// for SNI certificate selection and ALPN selection.
#ifndef SWIFTEVENT_SSL_SHIM_H
#define SWIFTEVENT_SSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stddef.h>

/// The options SwiftEvent sets on every context, explicitly rather than
/// relying on the OpenSSL build: no renegotiation, no compression; partial
/// writes and moving write buffers (a retried SSL_write may pass a new
/// pointer to the same bytes); idle connections release their buffers.
void se_ssl_ctx_apply_defaults(SSL_CTX *ctx, int server);

int se_ssl_ctx_set_min_proto(SSL_CTX *ctx, int version);
int se_ssl_ctx_set_max_proto(SSL_CTX *ctx, int version);
int se_ssl_ctx_add_chain_cert(SSL_CTX *ctx, X509 *cert);   /* takes a reference */
long se_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode);
long se_ssl_ctx_sess_number(SSL_CTX *ctx);
long se_ssl_ctx_sess_hits(SSL_CTX *ctx);
int se_ssl_set_host_name(SSL *ssl, const char *name);       /* SNI a client sends */
long se_bio_set_mem_eof_return(BIO *bio, long value);
size_t se_bio_pending(BIO *bio);
int se_err_is_unexpected_eof(unsigned long code);
/// Whether a failed handshake saw a plaintext HTTP request (OpenSSL's
/// "http request" reasons) or any other record that is not TLS.
int se_err_is_wrong_version(unsigned long code);
/// The renegotiation option bit (SSL_OP_NO_RENEGOTIATION), for tests.
unsigned long long se_ssl_op_no_renegotiation(void);
int se_ssl_renegotiate(SSL *ssl);
/// Servers: no session tickets (with the session cache off, no resumption).
void se_ssl_ctx_disable_tickets(SSL_CTX *ctx);

/// Server name → context, for a server that picks its certificate by the
/// name a client sends (SNI). Exact names match case-insensitively; an entry
/// "*.example.com" matches one label in front of example.com. Owned by the
/// caller; must outlive the context it is installed on.
typedef struct se_sni_table se_sni_table;
se_sni_table *se_sni_table_new(int count);
void se_sni_table_set(se_sni_table *table, int index, const char *name, SSL_CTX *ctx);
void se_sni_table_free(se_sni_table *table);
void se_ssl_ctx_install_sni(SSL_CTX *ctx, se_sni_table *table);

/// ALPN selection for a server: the first of the server's protocols (in
/// its order of preference) the client offers; none in common: no ALPN (the
/// handshake goes on, as RFC 7301 allows when the server does not insist).
/// `protocols` is the wire format (length-prefixed names); the copy returned
/// is owned by the caller, must outlive the context, and is freed with free().
unsigned char *se_ssl_ctx_install_alpn(SSL_CTX *ctx, const unsigned char *protocols, unsigned int length);

/// A socket BIO for `fd` that never raises SIGPIPE (send with
/// MSG_NOSIGNAL, recv), non-blocking aware; the descriptor is not closed
/// with the BIO. Used instead of SSL_set_fd, whose BIO write(2)s.
BIO *se_bio_new_socket(int fd);

/// A fresh P-256 key and a self-signed certificate for `name` (CN and a
/// DNS subjectAltName; an IP SAN as well when `ip` is not NULL), valid for
/// `days`. PEM text in malloc'd strings the caller frees; 1 on success.
int se_make_self_signed(const char *name, const char *ip, int days, char **certificate_pem, char **key_pem);

#endif
