#include "bpfobj/shared_maps.h"

#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>
// The skeletons name the ABI types: the ABI header first.
#include "pwru_abi.h"
#include "pwru_bpfprog.skel.h"
#include "pwru_kprobe.skel.h"
#include "pwru_tp.skel.h"
#include "pwru_visit_sweep.skel.h"

namespace pwru {
namespace {

// The maps an embedded object declares, libbpf's own (.rodata, .bss) left out.
template <typename Skel>
std::set<std::string> declared_maps(Skel* (*open)(), void (*destroy)(Skel*)) {
  Skel* skel = open();
  EXPECT_NE(skel, nullptr);
  std::set<std::string> names;
  if (!skel) return names;
  struct bpf_map* map;
  bpf_object__for_each_map(map, skel->obj) {
    const std::string name = bpf_map__name(map);
    if (name.find('.') == std::string::npos) names.insert(name);
  }
  destroy(skel);
  return names;
}

bool listed(std::string_view name) {
  return std::find(kSharedMapNames.begin(), kSharedMapNames.end(), name) != kSharedMapNames.end() ||
         std::find(kPrivateMapNames.begin(), kPrivateMapNames.end(), name) != kPrivateMapNames.end();
}

TEST(SharedMaps, EveryMapTwoObjectsDeclareIsSharedOrPrivateOnPurpose) {
  const std::map<std::string, std::set<std::string>> objects = {
      {"pwru_tp", declared_maps(&pwru_tp__open, &pwru_tp__destroy)},
      {"pwru_kprobe", declared_maps(&pwru_kprobe__open, &pwru_kprobe__destroy)},
      {"pwru_bpfprog", declared_maps(&pwru_bpfprog__open, &pwru_bpfprog__destroy)},
      {"pwru_visit_sweep", declared_maps(&pwru_visit_sweep__open, &pwru_visit_sweep__destroy)}};
  std::map<std::string, std::vector<std::string>> declared_by;
  for (const auto& [object, maps] : objects)
    for (const std::string& map : maps) declared_by[map].push_back(object);
  for (const auto& [map, owners] : declared_by) {
    if (owners.size() < 2) continue;
    std::string who;
    for (const std::string& o : owners) who += o + " ";
    EXPECT_TRUE(listed(map)) << "the map " << map << " is declared by " << who
                             << "but is neither in kSharedMapNames (one instance for the trace) nor in "
                                "kPrivateMapNames (a copy per object on purpose): decide which";
  }
  // The creator has every shared map, or another object would find none to take.
  for (std::string_view name : kSharedMapNames)
    EXPECT_TRUE(objects.at("pwru_tp").count(std::string(name))) << "pwru_tp creates no map " << name;
}

TEST(SharedMaps, NothingToShareIsAnErrorNamingTheMap) {
  pwru_kprobe* skel = pwru_kprobe__open();
  ASSERT_NE(skel, nullptr);
  try {
    SharedMaps().share_with(skel->obj);
    ADD_FAILURE() << "sharing maps nobody created went through";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("sharing the map"), std::string::npos) << e.what();
  }
  pwru_kprobe__destroy(skel);
}

}  // namespace
}  // namespace pwru
