#include "probe/backend_select.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

#include "bpfobj/bpf_link.h"
#include "bpfobj/libbpf_quiet.h"
#include "common/error.h"

namespace pwru {

std::string try_kprobe_attach(KprobeKind kind, const std::string& function) {
  QuietLibbpf quiet;
  try {
    KprobeObject object;
    object.load_feature_probe(kind);
    BpfLink link;
    if (kind == KprobeKind::kKprobeMulti) {
      const char* syms[] = {function.c_str()};
      LIBBPF_OPTS(bpf_kprobe_multi_opts, opts, .syms = syms, .cnt = 1);
      link.reset(bpf_program__attach_kprobe_multi_opts(object.feature_probe(), nullptr, &opts));
    } else {
      link.reset(bpf_program__attach_kprobe(object.feature_probe(), false, function.c_str()));
    }
    if (!link) return std::string("attaching to ") + function + ": " + std::strerror(errno);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

BackendChoice choose_backend(const std::string& requested, const std::string& probe_function) {
  if (requested == "tracepoint") return {"tracepoint", std::nullopt, "asked for with --backend tracepoint"};
  if (requested == "kprobe-multi" || requested == "kprobe") {
    const KprobeKind kind = requested == "kprobe" ? KprobeKind::kKprobe : KprobeKind::kKprobeMulti;
    const std::string why = try_kprobe_attach(kind, probe_function);
    if (!why.empty())
      throw SystemError("--backend " + requested + " is not available on this kernel (" + why +
                            "); use --backend auto to pick what works",
                        ENOTSUP);
    return {requested, kind, "asked for with --backend " + requested};
  }
  const std::string multi = try_kprobe_attach(KprobeKind::kKprobeMulti, probe_function);
  if (multi.empty()) return {"kprobe-multi", KprobeKind::kKprobeMulti, "the kernel accepts kprobe-multi links"};
  const std::string single = try_kprobe_attach(KprobeKind::kKprobe, probe_function);
  if (single.empty())
    return {"kprobe", KprobeKind::kKprobe, "kprobe-multi refused (" + multi + "); plain kprobes work"};
  return {"tracepoint", std::nullopt,
          "kprobe-multi refused (" + multi + "), kprobe refused (" + single + "): skb tracepoints only"};
}

}  // namespace pwru
