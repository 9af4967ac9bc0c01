// Files in the runtime directory that publish the list while imarotd runs:
// binary_runtime_measurements (a link to the durable list),
// ascii_runtime_measurements (appended on every commit) and status.json.
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "log_store.h"
#include "pipeline.h"
#include "rot_target.h"

namespace imarotd {

class Exporter : public CommitTarget {
 public:
  // Rewrites the ascii file from the list and links the binary one.
  static imarot::Result<std::unique_ptr<Exporter>> open(const std::string& runtime_directory, const LogStore& log,
                                                        RotTarget& rot);

  void extend(const std::vector<imarot::Entry>& entries, uint64_t first_index) override;
  void committed(const std::vector<imarot::Entry>& entries, uint64_t first_index) override;

  // Writes status.json atomically (write to a temporary file, then rename).
  void write_status(const nlohmann::json& status);
  const std::string& directory() const { return directory_; }

  // Called at the end of every committed() with the same arguments, on the
  // writer thread. Set it before the pipeline starts.
  using CommitHook = std::function<void(const std::vector<imarot::Entry>&, uint64_t first_index)>;
  void set_commit_hook(CommitHook hook) { commit_hook_ = std::move(hook); }

 private:
  Exporter(std::string directory, RotTarget& rot) : directory_(std::move(directory)), rot_(rot) {}
  std::string directory_;
  RotTarget& rot_;
  std::mutex mutex_;
  UniqueFd ascii_fd_;
  CommitHook commit_hook_;
};

}  // namespace imarotd
