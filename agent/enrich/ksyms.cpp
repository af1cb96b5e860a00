#include "enrich/ksyms.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iterator>

namespace pwru {

Ksyms Ksyms::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Ksyms{};
  return parse(in);
}

namespace {

// Next whitespace-separated field of `line` from `pos`; empty at the end.
std::string_view next_field(std::string_view line, std::size_t& pos) {
  while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
  const std::size_t start = pos;
  while (pos < line.size() && line[pos] != ' ' && line[pos] != '\t') ++pos;
  return line.substr(start, pos - start);
}

}  // namespace

Ksyms Ksyms::parse(std::istream& in) {
  // Fields are cut out of the whole file in place: a stream per line made
  // this ~150k-line parse the largest part of pwru's start-up on slow CPUs.
  const std::string all{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const std::string_view file(all);
  Ksyms k;
  std::size_t line_start = 0;
  while (line_start < file.size()) {
    std::size_t line_end = file.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = file.size();
    // "ffffffff81000000 T _stext" or "ffffffffc0a01000 t veth_xmit\t[veth]"
    const std::string_view line = file.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    std::size_t pos = 0;
    const std::string_view addr_hex = next_field(line, pos);
    const std::string_view type = next_field(line, pos);
    const std::string_view name = next_field(line, pos);
    const std::string_view module = next_field(line, pos);
    if (name.empty()) continue;
    // Text symbols only: data symbols would capture return addresses that
    // fall between functions.
    if (type != "t" && type != "T" && type != "w" && type != "W") continue;
    std::uint64_t addr = 0;
    if (std::from_chars(addr_hex.data(), addr_hex.data() + addr_hex.size(), addr, 16).ec != std::errc{}) continue;
    if (addr == 0 || name.size() > 0xffff - module.size() - 1) continue;
    const std::size_t display_len = module.empty() ? name.size() : name.size() + 1 + module.size();
    k.syms_.push_back(Sym{addr, static_cast<std::uint32_t>(k.text_.size()), static_cast<std::uint16_t>(name.size()),
                          static_cast<std::uint16_t>(display_len)});
    k.text_ += name;
    if (!module.empty()) {
      k.text_ += ' ';
      k.text_ += module;
    }
  }
  std::sort(k.syms_.begin(), k.syms_.end(), [](const Sym& a, const Sym& b) { return a.addr < b.addr; });
  k.by_name_.resize(k.syms_.size());
  for (std::uint32_t i = 0; i < k.by_name_.size(); ++i) k.by_name_[i] = i;
  std::sort(k.by_name_.begin(), k.by_name_.end(),
            [&k](std::uint32_t a, std::uint32_t b) { return k.name_of(k.syms_[a]) < k.name_of(k.syms_[b]); });
  k.text_.shrink_to_fit();
  return k;
}

bool Ksyms::has_function(std::string_view name) const {
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                             [this](std::uint32_t i, std::string_view n) { return name_of(syms_[i]) < n; });
  return it != by_name_.end() && name_of(syms_[*it]) == name;
}

std::optional<std::uint64_t> Ksyms::address_of(std::string_view name) const {
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                             [this](std::uint32_t i, std::string_view n) { return name_of(syms_[i]) < n; });
  if (it == by_name_.end() || name_of(syms_[*it]) != name) return std::nullopt;
  return syms_[*it].addr;
}

std::string Ksyms::nearest(std::uint64_t addr) const {
  auto it =
      std::upper_bound(syms_.begin(), syms_.end(), addr, [](std::uint64_t a, const Sym& s) { return a < s.addr; });
  if (it == syms_.begin()) return "";
  const Sym& s = *std::prev(it);
  return std::string(text_.data() + s.offset, s.display_len);
}

std::string Ksyms::name_or_hex(std::uint64_t addr) const {
  std::string name = nearest(addr);
  if (!name.empty()) return name;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(addr));
  return buf;
}

}  // namespace pwru
