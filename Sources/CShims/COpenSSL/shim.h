// The system OpenSSL (Debian's libssl-dev, OpenSSL 3), for EventSSL.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
