// One HTTPS client to the Kubernetes API server, made the same way for the
// pod watch and for token/access reviews: the CA that signed the server,
// and the service account's bearer token, re-read for every client.
#pragma once

#include <httplib.h>

#include <memory>
#include <string>

#include "k8s/kube_api_config.h"

namespace pwru {

std::unique_ptr<httplib::SSLClient> make_kube_client(const KubeApiConfig& config, int read_timeout_seconds);

// The token in a bearer-token file, trailing newline and spaces trimmed;
// "" when the file is missing or unreadable. Read at each use: kubelet
// rotates service-account tokens, operators rotate Secrets.
std::string read_bearer_token(const std::string& path);

// "HTTP 403: <body...>" or "no answer (<error>)", for logs and messages.
std::string describe_kube_result(const httplib::Result& res);

}  // namespace pwru
