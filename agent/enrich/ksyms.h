// Kernel symbols from /proc/kallsyms: turns return addresses (stacks, the
// drop location of kfree_skb) into function names.
#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <unordered_set>
#include <vector>

namespace pwru {

class Ksyms {
 public:
  // Reads /proc/kallsyms (or `path`). An unreadable file or one whose
  // addresses are all zero (kptr_restrict) gives an empty table: names then
  // print as hex addresses, nothing fails.
  static Ksyms load(const std::string& path = "/proc/kallsyms");
  static Ksyms parse(std::istream& in);

  // The function containing addr ("name" or "name [module]"); "" if none.
  std::string nearest(std::uint64_t addr) const;
  // nearest(), or "0x..." when no symbol covers addr.
  std::string name_or_hex(std::uint64_t addr) const;
  // Whether a text symbol of this exact name exists (in vmlinux or a module).
  bool has_function(const std::string& name) const { return names_.count(name) != 0; }
  bool empty() const { return syms_.empty(); }
  std::size_t size() const { return syms_.size(); }

 private:
  struct Sym {
    std::uint64_t addr;
    std::string name;
  };
  std::vector<Sym> syms_;
  std::unordered_set<std::string> names_;
};

}  // namespace pwru
