// BackendSet: one measurement list extended into several roots of trust.
//
// Every backend keeps the index of the next entry it needs and the register
// values it expects before each of its recent entries. A failed operation
// marks the backend degraded. Before such a backend extends again, and
// before an idle one extends, the register is read and matched against those
// values. So an extend that reached the device before the connection dropped
// is not sent twice, and a device that lost recent extends gets exactly the
// lost entries again.
#include <algorithm>
#include <cassert>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "imarot/replay.h"
#include "imarot/rot_backend_set.h"

namespace imarot::rot {

using RegisterState = std::vector<Digest>;  // one value per bank, in description order

struct BackendSet::Queued {
  Entry entry;
  // Extend digests computed so far, shared by backends with the same bank.
  std::vector<std::pair<HashAlgo, Digest>> digests;
};

struct BackendSet::Member {
  std::string id;
  std::unique_ptr<RotBackend> backend;
  uint32_t reg = 0;
  std::vector<HashAlgo> banks;
  BackendState state = BackendState::ok;
  uint64_t next = 0;  // list index of the next entry to extend
  // expected[k] is the register state before entry history_base + k, so
  // expected.back() is the state before entry `next`.
  std::deque<RegisterState> expected;
  uint64_t history_base = 0;
  // The last failure was an extend of entry `next`, which may have reached
  // the device.
  bool extend_in_doubt = false;
  uint32_t consecutive_failures = 0;
  std::optional<Clock::time_point> next_retry;
  Clock::time_point last_contact;  // last operation that succeeded
  uint64_t extends = 0;
  uint64_t failures = 0;
  uint64_t applied_in_doubt = 0;
  uint64_t rollbacks = 0;
  std::string last_error;

  std::string label() const {
    return fmt::format("backend '{}' ({} {})", id, backend->description().register_kind, reg);
  }
};

namespace {

std::string entry_count(uint64_t count) { return fmt::format("{} {}", count, count == 1 ? "entry" : "entries"); }

std::string bank_names(const std::vector<HashAlgo>& banks) {
  std::vector<std::string_view> names;
  for (HashAlgo bank : banks) names.push_back(hash_name(bank));
  return fmt::format("{}", fmt::join(names, ","));
}

}  // namespace

std::string BackendSet::last_extended_text(const Member& member) const {
  return member.next > options_.first_index ? fmt::format("list entry {}", member.next - 1)
                                            : std::string("no list entry");
}

std::string_view backend_state_name(BackendState state) {
  switch (state) {
    case BackendState::ok: return "ok";
    case BackendState::degraded: return "degraded";
    case BackendState::refused: return "refused";
  }
  return "unknown";
}

BackendSet::BackendSet(BackendSetOptions options)
    : options_(std::move(options)), queue_base_(options_.first_index), next_index_(options_.first_index) {
  if (options_.plugin_dir.empty()) options_.plugin_dir = default_plugin_dir();
}

BackendSet::BackendSet(BackendSet&&) noexcept = default;
BackendSet& BackendSet::operator=(BackendSet&&) noexcept = default;
BackendSet::~BackendSet() = default;

RotResult<BackendSet> BackendSet::open(const std::vector<BackendSpec>& specs, BackendSetOptions options) {
  BackendSet set(std::move(options));
  for (const BackendSpec& spec : specs) {
    auto backend = RotBackend::load(spec.backend, spec.config_json, set.options_.plugin_dir);
    if (!backend) return backend.error();
    auto added = set.add(spec.id.empty() ? spec.backend : spec.id, std::move(*backend), spec.register_index);
    if (!added) return added.error();
  }
  return set;
}

RotResult<void> BackendSet::add(std::string id, std::unique_ptr<RotBackend> backend,
                                std::optional<uint32_t> register_index) {
  auto invalid = [&](std::string message) { return RotError{Status::invalid, 0, std::move(message)}; };
  for (const auto& member : members_) {
    if (member->id == id) return invalid(fmt::format("backend id '{}' is used twice", id));
  }
  if (next_index_ != options_.first_index) {
    return invalid(fmt::format("backend '{}' cannot be added after entries were submitted", id));
  }

  const Description& description = backend->description();
  uint32_t reg = register_index.value_or(description.default_register);
  if (auto checked = backend->check_register(reg); !checked) {
    RotError error = checked.error();
    error.message = fmt::format("backend '{}': {} {} cannot be used: {}", id, description.register_kind, reg,
                                error.message);
    return error;
  }
  if (auto conflict = check_kernel_ima_conflict(options_.securityfs_root, id, description, reg); !conflict) {
    return conflict.error();
  }
  for (HashAlgo bank : description.bank_algos()) {
    if (!hash_supported(bank)) {
      return invalid(fmt::format("backend '{}': its {} bank cannot be extended because OpenSSL here does not provide "
                                 "{}; leaving an active bank unextended would let anyone extend it with forged "
                                 "values",
                                 id, hash_name(bank), hash_name(bank)));
    }
  }

  auto member = std::make_unique<Member>();
  member->id = std::move(id);
  member->reg = reg;
  member->banks = description.bank_algos();
  member->backend = std::move(backend);
  member->next = next_index_;
  member->history_base = next_index_;

  RegisterState start;
  for (HashAlgo bank : member->banks) {
    const uint32_t regs[] = {reg};
    auto read = member->backend->read_bank(bank, regs);
    if (!read) {
      RotError error = read.error();
      error.message = fmt::format("{}: cannot read the starting value: {}", member->label(), error.message);
      return error;
    }
    if (!read->allocated) {
      return RotError{Status::failed, 0,
                      fmt::format("{}: its {} bank reads as unallocated", member->label(), hash_name(bank))};
    }
    start.push_back(read->values.front());
  }
  member->expected.push_back(std::move(start));
  member->last_contact = Clock::now();
  spdlog::info("{}: extending from list entry {} on, banks {}", member->label(), next_index_,
               bank_names(member->banks));
  members_.push_back(std::move(member));
  return Ok{};
}

uint64_t BackendSet::submit(Entry entry) {
  queue_.push_back(Queued{std::move(entry), {}});
  return next_index_++;
}

Result<std::vector<Digest>> BackendSet::entry_digests(uint64_t index, const std::vector<HashAlgo>& banks) {
  assert(index >= queue_base_);
  assert(index < next_index_);
  Queued& item = queue_[static_cast<size_t>(index - queue_base_)];
  std::vector<Digest> out;
  out.reserve(banks.size());
  for (HashAlgo bank : banks) {
    auto cached = std::find_if(item.digests.begin(), item.digests.end(),
                               [bank](const auto& pair) { return pair.first == bank; });
    if (cached != item.digests.end()) {
      out.push_back(cached->second);
      continue;
    }
    // add() rejects banks that OpenSSL cannot compute, so this fails only
    // if OpenSSL itself does.
    auto digest = extend_digest(item.entry, bank);
    if (!digest) return digest.error();
    item.digests.emplace_back(bank, *digest);
    out.push_back(*digest);
  }
  return out;
}

namespace {

Result<RegisterState> extended_state(const std::vector<HashAlgo>& banks, const RegisterState& before,
                                     const std::vector<Digest>& digests) {
  RegisterState after;
  after.reserve(banks.size());
  for (size_t i = 0; i < banks.size(); ++i) {
    auto value = extend_value(banks[i], before[i], digests[i]);
    if (!value) return value.error();
    after.push_back(*value);
  }
  return after;
}

}  // namespace

void BackendSet::extend_one(Member& member, uint64_t index) {
  auto digests = entry_digests(index, member.banks);
  Result<RegisterState> after = digests ? extended_state(member.banks, member.expected.back(), *digests)
                                        : Result<RegisterState>(digests.error());
  if (!after) {
    refuse(member, fmt::format("computing the extend of list entry {} failed: {}", index, after.error().message));
    return;
  }

  auto extended = member.backend->extend_digests(member.reg, *digests);
  if (!extended) {
    member.extend_in_doubt = true;
    fail(member, extended.error(), fmt::format("extending list entry {}", index));
    return;
  }
  member.expected.push_back(std::move(*after));
  ++member.next;
  ++member.extends;
  member.last_contact = Clock::now();
  while (member.expected.size() > options_.history + 1) {
    member.expected.pop_front();
    ++member.history_base;
  }
}

void BackendSet::fail(Member& member, const RotError& error, std::string_view operation) {
  ++member.failures;
  if (!is_transient(error.status) && error.status != Status::failed) {
    refuse(member, fmt::format("{} failed: {}", operation, error.message));
    return;
  }
  ++member.consecutive_failures;
  member.last_error = fmt::format("{} failed: {}", operation, error.message);
  member.state = BackendState::degraded;

  auto backoff = options_.initial_backoff;
  for (uint32_t i = 1; i < member.consecutive_failures && backoff < options_.max_backoff; ++i) backoff *= 2;
  backoff = std::min(backoff, options_.max_backoff);
  member.next_retry = Clock::now() + backoff;

  if (member.consecutive_failures == 1) {
    spdlog::warn("{} degraded: {}; {} stay queued, retrying in {} ms", member.label(), member.last_error,
                 entry_count(next_index_ - member.next), backoff.count());
  } else {
    spdlog::debug("{}: attempt {} failed: {}; retrying in {} ms", member.label(), member.consecutive_failures,
                  member.last_error, backoff.count());
  }
}

void BackendSet::refuse(Member& member, std::string message) {
  member.state = BackendState::refused;
  member.next_retry.reset();
  member.last_error = std::move(message);
  spdlog::error("{} refused: {}; its register contains {} and it extends nothing more", member.label(),
                member.last_error, last_extended_text(member));
}

void BackendSet::reconcile(Member& member) {
  RegisterState current;
  for (HashAlgo bank : member.banks) {
    const uint32_t regs[] = {member.reg};
    auto read = member.backend->read_bank(bank, regs);
    if (!read) {
      fail(member, read.error(), fmt::format("reading the {} value back", hash_name(bank)));
      return;
    }
    if (!read->allocated) {
      refuse(member, fmt::format("its {} bank is no longer allocated", hash_name(bank)));
      return;
    }
    current.push_back(read->values.front());
  }

  const bool was_degraded = member.state == BackendState::degraded;
  auto settle = [&](std::string_view how) {
    if (was_degraded) {
      spdlog::info("{} recovered after {} failed attempts: {}; {} queued", member.label(),
                   member.consecutive_failures, how, entry_count(next_index_ - member.next));
    }
    member.state = BackendState::ok;
    member.consecutive_failures = 0;
    member.next_retry.reset();
    member.extend_in_doubt = false;
    member.last_contact = Clock::now();
  };

  if (current == member.expected.back()) {
    settle(fmt::format("the register contains {} as expected", last_extended_text(member)));
    return;
  }

  if (member.extend_in_doubt && member.next < next_index_) {
    auto digests = entry_digests(member.next, member.banks);
    auto after = digests ? extended_state(member.banks, member.expected.back(), *digests)
                         : Result<RegisterState>(digests.error());
    if (after && current == *after) {
      member.expected.push_back(std::move(*after));
      ++member.applied_in_doubt;
      settle(fmt::format("the extend of list entry {} had reached the device before the failure", member.next));
      ++member.next;
      return;
    }
  }

  for (size_t k = member.expected.size() - 1; k-- > 0;) {
    if (current != member.expected[k]) continue;
    uint64_t from = member.history_base + k;
    spdlog::warn("{}: the register contains the value from before list entry {}, so the device lost the extends of "
                 "entries {} to {} (it may have restarted from older saved state); extending them again",
                 member.label(), from, from, member.next - 1);
    member.expected.resize(k + 1);
    member.next = from;
    ++member.rollbacks;
    settle(fmt::format("rolled back to list entry {}", from));
    return;
  }

  std::vector<std::string> mismatches;
  for (size_t i = 0; i < member.banks.size(); ++i) {
    mismatches.push_back(fmt::format("{} {} (expected {})", hash_name(member.banks[i]), current[i].hex(),
                                member.expected.back()[i].hex()));
  }
  refuse(member, fmt::format("the register matches no state of the last {} list entries: {}; something else "
                             "extended it or the device was reset",
                             member.expected.size() - 1, fmt::join(mismatches, ", ")));
}

void BackendSet::pump() {
  const auto now = Clock::now();
  for (auto& member : members_) {
    if (member->state == BackendState::degraded && member->next_retry && *member->next_retry <= now) {
      reconcile(*member);
    } else if (member->state == BackendState::ok && member->next < next_index_ &&
               now - member->last_contact >= options_.verify_after_idle) {
      reconcile(*member);
    }
  }

  // Entry by entry, each into every backend in list order; a backend that
  // recovered behind the others catches up first.
  std::optional<uint64_t> lowest;
  for (const auto& member : members_) {
    if (member->state == BackendState::ok && member->next < next_index_) {
      lowest = std::min(lowest.value_or(member->next), member->next);
    }
  }
  if (lowest) {
    for (uint64_t index = *lowest; index < next_index_; ++index) {
      bool any_ok = false;
      for (auto& member : members_) {
        if (member->state != BackendState::ok) continue;
        any_ok = true;
        if (member->next == index) extend_one(*member, index);
      }
      if (!any_ok) break;
    }
  }
  trim();
}

void BackendSet::trim() {
  // Entries stay while a backend may still extend them: its queued entries
  // and, for reconciling, its recent history.
  uint64_t keep = next_index_;
  for (const auto& member : members_) {
    if (member->state != BackendState::refused) keep = std::min(keep, member->history_base);
  }
  while (queue_base_ < keep && !queue_.empty()) {
    queue_.pop_front();
    ++queue_base_;
  }
}

bool BackendSet::drain(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    pump();
    bool caught_up = std::all_of(members_.begin(), members_.end(), [this](const auto& member) {
      return member->state == BackendState::refused ||
             (member->state == BackendState::ok && member->next == next_index_);
    });
    if (caught_up) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    auto wake = next_retry().value_or(deadline);
    std::this_thread::sleep_until(std::min(std::max(wake, now), deadline));
  }
}

std::optional<BackendSet::Clock::time_point> BackendSet::next_retry() const {
  std::optional<Clock::time_point> earliest;
  for (const auto& member : members_) {
    if (member->state == BackendState::degraded && member->next_retry) {
      earliest = std::min(earliest.value_or(*member->next_retry), *member->next_retry);
    }
  }
  return earliest;
}

std::vector<BackendStatus> BackendSet::status() const {
  std::vector<BackendStatus> out;
  for (const auto& member : members_) {
    BackendStatus status;
    status.id = member->id;
    status.backend = member->backend->description().name;
    status.register_index = member->reg;
    status.state = member->state;
    if (member->next > options_.first_index) status.last_extended = member->next - 1;
    status.pending = next_index_ - member->next;
    status.extends = member->extends;
    status.failures = member->failures;
    status.applied_in_doubt = member->applied_in_doubt;
    status.rollbacks = member->rollbacks;
    status.last_error = member->last_error;
    status.next_retry = member->next_retry;
    out.push_back(std::move(status));
  }
  return out;
}

size_t BackendSet::size() const { return members_.size(); }

RotBackend& BackendSet::backend(size_t index) { return *members_.at(index)->backend; }

uint64_t BackendSet::next_index() const { return next_index_; }

}  // namespace imarot::rot
