#include "btf/kernel_btf.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <string_view>

#include "common/error.h"

namespace pwru {

namespace {

constexpr std::string_view kTracePrefix = "btf_trace_";

// Follows typedefs and qualifiers to the type that gives a value its shape.
const struct btf_type* resolve(const struct btf* btf, std::uint32_t id, std::uint32_t* out_id) {
  const struct btf_type* t = btf__type_by_id(btf, id);
  while (t &&
         (btf_is_typedef(t) || btf_is_const(t) || btf_is_volatile(t) || btf_is_restrict(t) || btf_is_type_tag(t))) {
    id = t->type;
    t = btf__type_by_id(btf, id);
  }
  if (out_id) *out_id = id;
  return t;
}

bool is_named(const struct btf* btf, const struct btf_type* t, std::string_view name) {
  const char* n = btf__name_by_offset(btf, t->name_off);
  return n && name == n;
}

bool is_ptr_to_struct(const struct btf* btf, std::uint32_t type_id, std::string_view name) {
  const struct btf_type* t = resolve(btf, type_id, nullptr);
  if (!t || !btf_is_ptr(t)) return false;
  const struct btf_type* target = resolve(btf, t->type, nullptr);
  return target && btf_is_struct(target) && is_named(btf, target, name);
}

bool is_void_ptr(const struct btf* btf, std::uint32_t type_id) {
  const struct btf_type* t = resolve(btf, type_id, nullptr);
  return t && btf_is_ptr(t) && t->type == 0;
}

bool is_enum_named(const struct btf* btf, std::uint32_t type_id, std::string_view name) {
  const struct btf_type* t = resolve(btf, type_id, nullptr);
  return t && (btf_is_enum(t) || btf_is_enum64(t)) && is_named(btf, t, name);
}

}  // namespace

void KernelBtf::Deleter::operator()(struct btf* b) const noexcept { btf__free(b); }

KernelBtf::KernelBtf(struct btf* btf) : btf_(btf) {
  if (const struct btf* base = btf__base_btf(btf)) first_own_type_ = btf__type_cnt(base);
}

KernelBtf KernelBtf::load_module(const std::string& module, const KernelBtf& vmlinux) {
  struct btf* btf = btf__load_module_btf(module.c_str(), const_cast<struct btf*>(vmlinux.raw()));
  if (!btf) throw UsageError("--kmods " + module + ": no BTF for this module (is it loaded? see /sys/kernel/btf/)");
  return KernelBtf(btf);
}

std::vector<std::string> KernelBtf::modules_with_btf(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().filename() != "vmlinux") out.push_back(entry.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

KernelBtf KernelBtf::load(const std::string& path) {
  struct btf* btf = path.empty() ? btf__load_vmlinux_btf() : btf__parse(path.c_str(), nullptr);
  if (!btf) {
    int err = errno ? errno : ENOENT;
    throw SystemError(path.empty() ? "cannot read the kernel's BTF (/sys/kernel/btf/vmlinux); this kernel "
                                     "needs CONFIG_DEBUG_INFO_BTF=y, or pass --kernel-btf FILE"
                                   : "cannot read BTF from --kernel-btf " + path,
                      err);
  }
  return KernelBtf(btf);
}

std::vector<SkbTracepoint> KernelBtf::skb_tracepoints() const {
  const struct btf* btf = btf_.get();
  std::vector<SkbTracepoint> out;
  const std::uint32_t n = btf__type_cnt(btf);
  for (std::uint32_t id = 1; id < n; ++id) {
    const struct btf_type* t = btf__type_by_id(btf, id);
    if (!btf_is_typedef(t)) continue;
    std::string_view name = btf__name_by_offset(btf, t->name_off);
    if (name.substr(0, kTracePrefix.size()) != kTracePrefix) continue;

    // btf_trace_<name> is a pointer to a prototype whose first parameter is
    // the tracepoint's private data; the tracepoint's own arguments follow.
    const struct btf_type* ptr = btf__type_by_id(btf, t->type);
    if (!ptr || !btf_is_ptr(ptr)) continue;
    const struct btf_type* proto = btf__type_by_id(btf, ptr->type);
    if (!proto || !btf_is_func_proto(proto)) continue;
    const struct btf_param* params = btf_params(proto);
    const int nparams = btf_vlen(proto);

    SkbTracepoint tp;
    tp.name = std::string(name.substr(kTracePrefix.size()));
    for (int i = 1; i < nparams; ++i) {
      const int arg = i - 1;
      if (tp.skb_arg < 0 && is_ptr_to_struct(btf, params[i].type, "sk_buff")) tp.skb_arg = arg;
      if (tp.reason_arg < 0 && is_enum_named(btf, params[i].type, "skb_drop_reason")) tp.reason_arg = arg;
    }
    if (tp.skb_arg < 0) continue;
    if (tp.reason_arg >= 0 || tp.name == "consume_skb") {
      // The drop (or free) location is the untyped pointer among the
      // arguments of the tracepoints that free an skb (kfree_skb: skb,
      // location, reason; consume_skb: skb, location on 6.x).
      for (int i = 1; i < nparams; ++i) {
        if (is_void_ptr(btf, params[i].type)) {
          tp.location_arg = i - 1;
          break;
        }
      }
    }
    out.push_back(std::move(tp));
  }
  std::sort(out.begin(), out.end(), [](const SkbTracepoint& a, const SkbTracepoint& b) { return a.name < b.name; });
  return out;
}

namespace {

// Position of the first struct sk_buff * among the first five parameters of
// FUNC `t`, which is what kprobes read from registers on every architecture
// pwru supports; -1 when there is none or `t` is not a function.
int skb_position(const struct btf* btf, const struct btf_type* t) {
  constexpr int kRegisterArgs = 5;
  if (!btf_is_func(t)) return -1;
  const struct btf_type* proto = btf__type_by_id(btf, t->type);
  if (!proto || !btf_is_func_proto(proto)) return -1;
  const struct btf_param* params = btf_params(proto);
  const int nparams = std::min<int>(btf_vlen(proto), kRegisterArgs);
  for (int i = 0; i < nparams; ++i)
    if (is_ptr_to_struct(btf, params[i].type, "sk_buff")) return i;
  return -1;
}

}  // namespace

std::optional<SkbFunction> KernelBtf::function(const std::string& name) const {
  const struct btf* btf = btf_.get();
  const int id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_FUNC);
  if (id <= 0 || static_cast<std::uint32_t>(id) < first_own_type_) return std::nullopt;
  return SkbFunction{name, skb_position(btf, btf__type_by_id(btf, id))};
}

std::vector<SkbFunction> KernelBtf::skb_functions() const {
  const struct btf* btf = btf_.get();
  std::vector<SkbFunction> out;
  const std::uint32_t n = btf__type_cnt(btf);
  for (std::uint32_t id = first_own_type_; id < n; ++id) {
    const struct btf_type* t = btf__type_by_id(btf, id);
    const int position = skb_position(btf, t);
    if (position >= 0) out.push_back(SkbFunction{btf__name_by_offset(btf, t->name_off), position});
  }
  std::sort(out.begin(), out.end(), [](const SkbFunction& a, const SkbFunction& b) { return a.name < b.name; });
  out.erase(
      std::unique(out.begin(), out.end(), [](const SkbFunction& a, const SkbFunction& b) { return a.name == b.name; }),
      out.end());
  return out;
}

std::map<std::uint64_t, std::string> KernelBtf::enum_values(const std::string& enum_name) const {
  std::map<std::uint64_t, std::string> out;
  const struct btf* btf = btf_.get();
  const int id = btf__find_by_name_kind(btf, enum_name.c_str(), BTF_KIND_ENUM);
  if (id > 0) {
    const struct btf_type* t = btf__type_by_id(btf, id);
    const struct btf_enum* values = btf_enum(t);
    for (int i = 0; i < btf_vlen(t); ++i)
      out[static_cast<std::uint32_t>(values[i].val)] = btf__name_by_offset(btf, values[i].name_off);
    return out;
  }
  const int id64 = btf__find_by_name_kind(btf, enum_name.c_str(), BTF_KIND_ENUM64);
  if (id64 > 0) {
    const struct btf_type* t = btf__type_by_id(btf, id64);
    const struct btf_enum64* values = btf_enum64(t);
    for (int i = 0; i < btf_vlen(t); ++i)
      out[btf_enum64_value(&values[i])] = btf__name_by_offset(btf, values[i].name_off);
  }
  return out;
}

}  // namespace pwru
