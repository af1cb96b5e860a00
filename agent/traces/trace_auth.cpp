#include "traces/trace_auth.h"

#include <fstream>
#include <sstream>

#include "common/error.h"

namespace pwru {

namespace {

std::string read_token(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::ostringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  return token;
}

// Compares in time independent of where the first difference is.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

}  // namespace

TraceAuthorizer make_trace_authorizer(const AgentConfig::Traces& config) {
  if (config.auth == AgentConfig::Traces::Auth::kNone) return [](const std::string&) {};
  const std::string path = config.token_file;
  if (read_token(path).empty())
    throw UsageError("traces.token_file " + path + " is missing, unreadable or empty; put the bearer token there");
  return [path](const std::string& authorization) {
    constexpr std::string_view kBearer = "Bearer ";
    if (authorization.rfind(kBearer, 0) != 0)
      throw RequestError(401, "send the agent's trace token: -H 'Authorization: Bearer <token>'");
    const std::string token = read_token(path);
    if (token.empty()) throw RequestError(503, "the agent's token file is unreadable; tell its operator");
    if (!same_secret(authorization.substr(kBearer.size()), token))
      throw RequestError(403, "the bearer token is not this agent's trace token");
  };
}

}  // namespace pwru
