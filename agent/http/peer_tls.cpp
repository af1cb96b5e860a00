#include "http/peer_tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/error.h"

namespace pwru {

namespace {

// OpenSSL's reasons queue up per thread; the newest says what went wrong
// ("no such file", "key values mismatch"), the rest would only confuse.
std::string openssl_reason() {
  unsigned long code = 0;
  unsigned long last = 0;
  while ((code = ERR_get_error()) != 0) last = code;
  if (last == 0) return "unknown reason";
  char text[256];
  ERR_error_string_n(last, text, sizeof text);
  return text;
}

}  // namespace

void configure_peer_tls(SSL_CTX& ctx, const AgentConfig::Traces::PeerTls& tls, PeerTlsRole role) {
  ERR_clear_error();
  const auto fail = [](const std::string& key, const std::string& file, const std::string& what) {
    throw UsageError("traces.peer_tls." + key + " " + file + ": " + what + " (" + openssl_reason() +
                     "); agents relay trace requests to each other only with it");
  };
  // OpenSSL reports a missing file as "system lib", the errno behind it
  // lost: say it in the words of the file system, and what to do.
  for (const auto& [key, file] : {std::pair<const char*, const std::string&>{"ca_file", tls.ca_file},
                                  {"cert_file", tls.cert_file},
                                  {"key_file", tls.key_file}}) {
    std::FILE* f = std::fopen(file.c_str(), "r");
    if (!f)
      throw UsageError("traces.peer_tls." + std::string(key) + " " + file + ": cannot read it (" +
                       std::strerror(errno) +
                       "); fix the path or mount the file there (the Helm chart mounts its "
                       "Secret at /var/run/pwru-agent/peer-tls)");
    std::fclose(f);
  }
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(&ctx, tls.cert_file.c_str()) != 1)
    fail("cert_file", tls.cert_file, "cannot load a PEM certificate from it");
  // OpenSSL checks here too that the key is the certificate's.
  if (SSL_CTX_use_PrivateKey_file(&ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    fail("key_file", tls.key_file, "cannot use it as the PEM private key of cert_file " + tls.cert_file);
  if (SSL_CTX_check_private_key(&ctx) != 1)
    fail("key_file", tls.key_file, "is not the key of traces.peer_tls.cert_file " + tls.cert_file);
  if (SSL_CTX_load_verify_locations(&ctx, tls.ca_file.c_str(), nullptr) != 1)
    fail("ca_file", tls.ca_file, "cannot load a PEM CA certificate from it");
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(&ctx);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (X509_VERIFY_PARAM_set1_host(param, tls.name.c_str(), tls.name.size()) != 1)
    fail("name", tls.name, "OpenSSL does not take it as a host name");
  SSL_CTX_set_verify(&ctx,
                     role == PeerTlsRole::kServer ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                     nullptr);
}

}  // namespace pwru
