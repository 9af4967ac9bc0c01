// The in-kernel filter of the eBPF LSM source, derived from the policy.
#include <limits>
#include <optional>

#include "bpf_source.h"

namespace imarotd {
namespace {

constexpr size_t kHookCount = 9;

bool is_measure_class(const imarot::PolicyRule& rule) {
  return rule.action == imarot::PolicyAction::measure || rule.action == imarot::PolicyAction::dont_measure;
}

// Conditions other than func=.
bool has_conditions_besides_func(const imarot::PolicyRule& rule) {
  return rule.mask || rule.fsmagic || rule.fsname || rule.fsuuid || rule.uid || rule.euid || rule.gid ||
         rule.egid || rule.fowner || rule.fgroup || rule.has_lsm_condition() || rule.keyrings || rule.labels;
}

bool has_conditions_besides_fsmagic(const imarot::PolicyRule& rule) {
  return rule.func || rule.mask || rule.fsname || rule.fsuuid || rule.uid || rule.euid || rule.gid || rule.egid ||
         rule.fowner || rule.fgroup || rule.has_lsm_condition() || rule.keyrings || rule.labels;
}

// The task uids a uid= condition accepts, or nullopt when it accepts none.
std::optional<BpfFilter::UidRange> uid_range(const imarot::IdCondition& condition) {
  constexpr uint32_t kMax = std::numeric_limits<uint32_t>::max();
  switch (condition.op) {
    case imarot::IdOperator::equal:
      return BpfFilter::UidRange{condition.value, condition.value};
    case imarot::IdOperator::less:
      if (condition.value == 0) return std::nullopt;
      return BpfFilter::UidRange{0, condition.value - 1};
    case imarot::IdOperator::greater:
      if (condition.value == kMax) return std::nullopt;
      return BpfFilter::UidRange{condition.value + 1, kMax};
  }
  return std::nullopt;
}

// The access masks (0 to 15) a mask= condition accepts, one bit each.
uint16_t mask_bitmap(const std::optional<imarot::MaskCondition>& condition) {
  if (!condition) return 0xffff;
  uint16_t bitmap = 0;
  for (uint32_t mask = 0; mask < 16; ++mask) {
    bool matches = condition->contains ? (mask & condition->bit) == condition->bit : mask == condition->bit;
    if (matches) bitmap = static_cast<uint16_t>(bitmap | (1u << mask));
  }
  return bitmap;
}

}  // namespace

BpfFilter derive_bpf_filter(const imarot::Policy& policy, uint32_t default_pcr) {
  BpfFilter filter;

  for (size_t hook = 0; hook < kHookCount; ++hook) {
    const imarot::PolicyFunc func = policy_func(static_cast<Hook>(hook));
    std::vector<BpfFilter::UidRange> ranges;
    bool every_uid = false;
    for (const auto& rule : policy.rules) {
      if (!is_measure_class(rule) || (rule.func && *rule.func != func)) continue;
      if (rule.action == imarot::PolicyAction::dont_measure) {
        // Matches every event of the hook: nothing after it can measure.
        if (!has_conditions_besides_func(rule)) break;
        continue;
      }
      filter.hooks |= 1u << hook;
      filter.masks[hook] |= mask_bitmap(rule.mask);
      if (!rule.uid) {
        every_uid = true;
      } else if (auto range = uid_range(*rule.uid)) {
        ranges.push_back(*range);
      }
    }
    // More ranges than the programs check: let every uid through.
    if (every_uid || ranges.size() > BpfFilter::kMaxUidRanges) ranges.clear();
    filter.uid_ranges[hook] = std::move(ranges);
  }

  // A filesystem is skipped when an unconditional dont_measure fsmagic=X
  // comes before every measure rule that could match a file on it.
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    const auto& rule = policy.rules[i];
    if (rule.action != imarot::PolicyAction::dont_measure || !rule.fsmagic || has_conditions_besides_fsmagic(rule)) {
      continue;
    }
    bool reachable = false;
    for (size_t j = 0; j < i; ++j) {
      const auto& earlier = policy.rules[j];
      if (earlier.action != imarot::PolicyAction::measure) continue;
      if (!earlier.fsmagic || *earlier.fsmagic == *rule.fsmagic) reachable = true;
    }
    if (!reachable) filter.ignored_fsmagic.push_back(*rule.fsmagic);
  }

  std::optional<uint32_t> pcr;
  filter.use_cache = true;
  for (const auto& rule : policy.rules) {
    if (rule.action != imarot::PolicyAction::measure) continue;
    uint32_t rule_pcr = rule.pcr.value_or(default_pcr);
    if (pcr && *pcr != rule_pcr) filter.use_cache = false;
    pcr = rule_pcr;
  }
  return filter;
}

}  // namespace imarotd
