// Catalogue files in config/: one name per line, '#' starts a comment.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pwru {

std::vector<std::string> parse_name_list(std::string_view text);

}  // namespace pwru
