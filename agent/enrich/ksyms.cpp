#include "enrich/ksyms.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace pwru {

Ksyms Ksyms::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Ksyms{};
  return parse(in);
}

Ksyms Ksyms::parse(std::istream& in) {
  Ksyms k;
  std::string line;
  while (std::getline(in, line)) {
    // "ffffffff81000000 T _stext" or "ffffffffc0a01000 t veth_xmit\t[veth]"
    std::istringstream fields(line);
    std::string addr_hex, type, name, module;
    if (!(fields >> addr_hex >> type >> name)) continue;
    fields >> module;
    // Text symbols only: data symbols would capture return addresses that
    // fall between functions.
    if (type != "t" && type != "T" && type != "w" && type != "W") continue;
    const std::uint64_t addr = std::strtoull(addr_hex.c_str(), nullptr, 16);
    if (addr == 0 || name.size() > 0xffff - module.size() - 1) continue;
    const std::string display = module.empty() ? name : name + " " + module;
    k.syms_.push_back(Sym{addr, static_cast<std::uint32_t>(k.text_.size()), static_cast<std::uint16_t>(name.size()),
                          static_cast<std::uint16_t>(display.size())});
    k.text_ += display;
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

std::string Ksyms::nearest(std::uint64_t addr) const {
  auto it = std::upper_bound(syms_.begin(), syms_.end(), addr,
                             [](std::uint64_t a, const Sym& s) { return a < s.addr; });
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
