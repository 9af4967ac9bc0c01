// First-match evaluation of a policy, following the kernel's
// ima_match_rules() and ima_match_policy().
#include <algorithm>

#include "imarot/policy.h"

namespace imarot {
namespace {

bool compare_id(const IdCondition& condition, uint32_t actual) {
  switch (condition.op) {
    case IdOperator::less:
      return actual < condition.value;
    case IdOperator::greater:
      return actual > condition.value;
    case IdOperator::equal:
      break;
  }
  return actual == condition.value;
}

// euid= and egid=: a task that has CAP_SETUID (CAP_SETGID) can switch to its
// saved or real id at any time, so any of the three ids matching counts.
bool compare_effective_id(const IdCondition& condition, bool capable, uint32_t effective, uint32_t saved,
                          uint32_t real) {
  if (compare_id(condition, effective)) return true;
  return capable && (compare_id(condition, saved) || compare_id(condition, real));
}

// KEY_CHECK and CRITICAL_DATA events match only rules that name their hook,
// are filtered by uid= and by the keyring or label list, and ignore every
// other condition.
bool buffer_data_rule_matches(const PolicyRule& rule, const PolicyQuery& query) {
  if (rule.func != query.func) return false;
  // NOTE: the kernel accepts gid= in these rules but does not compare it, so
  // neither does this function.
  if (rule.uid && !compare_id(*rule.uid, query.uid)) return false;

  const auto& names = query.func == PolicyFunc::key_check ? rule.keyrings : rule.labels;
  if (!names) return true;
  if (!query.func_data) return false;
  return std::find(names->begin(), names->end(), *query.func_data) != names->end();
}

}  // namespace

bool rule_matches(const PolicyRule& rule, const PolicyQuery& query) {
  if (rule.func && *rule.func != query.func) return false;
  if (query.func == PolicyFunc::key_check || query.func == PolicyFunc::critical_data) {
    return buffer_data_rule_matches(rule, query);
  }

  if (rule.mask) {
    bool mask_matches = rule.mask->contains ? (query.mask & rule.mask->bit) != 0 : query.mask == rule.mask->bit;
    if (!mask_matches) return false;
  }
  if (rule.fsmagic && *rule.fsmagic != query.fsmagic) return false;
  if (rule.fsname && *rule.fsname != query.fsname) return false;
  if (rule.fsuuid && *rule.fsuuid != query.fsuuid.value_or(FsUuid{})) return false;
  if (rule.uid && !compare_id(*rule.uid, query.uid)) return false;
  if (rule.euid && !compare_effective_id(*rule.euid, query.cap_setuid, query.euid, query.suid, query.uid)) {
    return false;
  }
  if (rule.gid && !compare_id(*rule.gid, query.gid)) return false;
  if (rule.egid && !compare_effective_id(*rule.egid, query.cap_setgid, query.egid, query.sgid, query.gid)) {
    return false;
  }
  if (rule.fowner && !compare_id(*rule.fowner, query.fowner)) return false;
  if (rule.fgroup && !compare_id(*rule.fgroup, query.fgroup)) return false;

  // Without an LSM hook no subj_ or obj_ condition can hold.
  return !rule.has_lsm_condition();
}

PolicyDecision match_policy(const Policy& policy, const PolicyQuery& query) {
  PolicyDecision decision;
  std::array<bool, kActionClassCount> open = {query.classes.measure, query.classes.appraise, query.classes.audit,
                                               query.classes.hash};

  for (size_t i = 0; i < policy.rules.size(); ++i) {
    const PolicyRule& rule = policy.rules[i];
    ActionClass cls = action_class(rule.action);
    size_t slot = static_cast<size_t>(cls);
    if (!open[slot] || !rule_matches(rule, query)) continue;

    if (rule.permit_directio) decision.permit_directio = true;
    if (rule.digest_type == PolicyDigestType::verity) decision.digest_type = PolicyDigestType::verity;

    bool positive = is_positive_action(rule.action);
    switch (cls) {
      case ActionClass::measure:
        decision.measure = positive;
        decision.pcr = rule.pcr;
        decision.tmpl = rule.tmpl;
        break;
      case ActionClass::appraise:
        decision.appraise = positive;
        // A matching appraise rule clears a hash decision taken so far, but a
        // hash rule later in the policy can still set it.
        if (positive) decision.hash = false;
        break;
      case ActionClass::audit:
        decision.audit = positive;
        break;
      case ActionClass::hash:
        decision.hash = positive;
        break;
    }
    open[slot] = false;
    decision.deciding_rule[slot] = i;

    if (std::none_of(open.begin(), open.end(), [](bool still_open) { return still_open; })) break;
  }
  return decision;
}

}  // namespace imarot
