// Agent-to-agent TLS (traces.peer_tls): the same setup for the end that
// relays a trace request (client) and the end that serves it (server).
// Both present their certificate and accept the other only if the release
// CA signed it and it carries the peer name as a DNS subjectAltName. Peers
// are reached by pod IP, which no certificate the chart makes can list
// ahead of time; the fixed name stands in for it, and keeps out other
// certificates of a CA shared with other workloads (e.g. cert-manager).
#pragma once

#include <openssl/ssl.h>

#include "config/agent_config.h"

namespace pwru {

enum class PeerTlsRole { kClient, kServer };

// Loads the certificate, key and CA into `ctx`, requires TLS 1.2 or later
// and makes OpenSSL's handshake itself refuse a peer that fails the checks
// (the server also refuses a client with no certificate). Throws UsageError
// naming the traces.peer_tls key and file that could not be used.
void configure_peer_tls(SSL_CTX& ctx, const AgentConfig::Traces::PeerTls& tls, PeerTlsRole role);

}  // namespace pwru
