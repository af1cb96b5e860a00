// Percent-encoding for what we put into API server URLs: a path segment
// (a namespace or pod name) or a query value (a selector, a continue token,
// a resourceVersion). Names are validated by the API server, not by us, so
// a value with '/', '?', '&' or '#' must stay inside its segment or value.
#pragma once

#include <string>
#include <string_view>

namespace pwru {

// Every byte but RFC 3986's unreserved ones (A-Z a-z 0-9 - . _ ~) as %XX,
// UTF-8 byte by byte. Safe both as one path segment and as one query value.
std::string url_encode_component(std::string_view value);

}  // namespace pwru
