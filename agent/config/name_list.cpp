#include "config/name_list.h"

namespace pwru {

std::vector<std::string> parse_name_list(std::string_view text) {
  std::vector<std::string> names;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    line = line.substr(0, line.find('#'));
    const std::size_t begin = line.find_first_not_of(" \t\r");
    if (begin == std::string_view::npos) continue;
    const std::size_t end = line.find_last_not_of(" \t\r");
    names.emplace_back(line.substr(begin, end - begin + 1));
  }
  return names;
}

}  // namespace pwru
