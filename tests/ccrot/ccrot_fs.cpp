// ccrot-fs: a FUSE filesystem that behaves like the kernel interfaces the
// confidential-computing backends use, for tests on machines without TDX or
// CCA hardware. Runs single-threaded in the foreground until unmounted.
//
//   ccrot-fs MOUNTPOINT tsm-mr SPEC...
//     Measurement register files as drivers/virt/coco/guest/tsm-mr.c and
//     fs/sysfs/file.c (Linux 6.16) present them. SPEC is NAME[:HASH]=ro|rw
//     with an optional ,HEX initial value (zeros otherwise; a file without a
//     hash needs the value). Reads return the raw bytes, from any offset. A
//     write at an offset at or past the size fails with EFBIG; a longer one
//     is cut to the size, as sysfs cuts writes to binary attributes; then
//     anything but the whole size at offset 0 fails with EINVAL, and the
//     whole size extends: new = H(old || data). Opening a file without a
//     write bit for writing fails with EACCES, as kernfs does even for root.
//
//   ccrot-fs MOUNTPOINT tsm-report PROVIDER CLAIMS_JSON
//     A configfs-tsm report directory. mkdir makes a report with inblob
//     (write-only, 32 to 64 bytes, taken on close), outblob, provider and
//     generation, and rmdir removes it. outblob is a CCA attestation token built
//     from CLAIMS_JSON, {"format": "arm_cca"|"virtcca", "algo": "sha-256",
//     "rim": HEX, "rems": [HEX x4]}, with the inblob zero-padded to 64 bytes
//     as its challenge.
#include <fuse.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cca_token_builder.h"
#include "imarot/hash.h"

namespace {

using imarot::Bytes;

struct MrFile {
  std::optional<imarot::HashAlgo> algo;  // nullopt: a value without a hash, which cannot be writable
  bool writable = false;
  Bytes value;
};

struct Report {
  Bytes inblob;       // the challenge taken at the last close of inblob
  Bytes pending;      // bytes written since inblob was opened
  bool writing = false;
  uint64_t generation = 0;
};

struct State {
  bool report_mode = false;
  std::map<std::string, MrFile> files;  // tsm-mr mode, by file name
  std::string provider;                 // tsm-report mode
  nlohmann::json claims;
  std::map<std::string, Report> reports;
};

State state;

constexpr size_t kInblobMin = 32;
constexpr size_t kInblobMax = 64;
constexpr size_t kAttributeSize = 4096;  // configfs reports this size for its attributes

// "/a/b" as {"a", "b"}.
std::vector<std::string> split_path(const char* path) {
  std::vector<std::string> parts;
  std::stringstream stream(path);
  std::string part;
  while (std::getline(stream, part, '/')) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

bool is_report_file(const std::string& name) {
  return name == "inblob" || name == "outblob" || name == "provider" || name == "generation";
}

Bytes build_token(const Report& report) {
  Bytes challenge = report.inblob;
  challenge.resize(64, 0);
  std::string algo_name = state.claims.at("algo").get<std::string>();
  auto rim = imarot::from_hex(state.claims.at("rim").get<std::string>());
  std::array<imarot::Digest, 4> rems;
  for (size_t i = 0; i < 4; ++i) rems[i] = imarot::Digest(*imarot::from_hex(state.claims.at("rems")[i].get<std::string>()));
  bool platform = state.claims.value("format", "arm_cca") == "arm_cca";
  return imarot::test::realm_token(challenge, algo_name, imarot::Digest(*rim), rems, platform);
}

Bytes report_file_content(const Report& report, const std::string& name) {
  if (name == "outblob") return build_token(report);
  std::string text = name == "provider" ? state.provider : std::to_string(report.generation);
  text += '\n';
  return Bytes(text.begin(), text.end());
}

int fs_getattr(const char* path, struct stat* info, fuse_file_info*) {
  std::memset(info, 0, sizeof *info);
  std::vector<std::string> parts = split_path(path);
  info->st_nlink = 1;
  if (parts.empty()) {
    info->st_mode = S_IFDIR | 0755;
    info->st_nlink = 2;
    return 0;
  }
  if (!state.report_mode) {
    auto found = state.files.find(parts[0]);
    if (parts.size() != 1 || found == state.files.end()) return -ENOENT;
    info->st_mode = S_IFREG | (found->second.writable ? 0644 : 0444);
    info->st_size = static_cast<off_t>(found->second.value.size());
    return 0;
  }
  auto report = state.reports.find(parts[0]);
  if (report == state.reports.end()) return -ENOENT;
  if (parts.size() == 1) {
    info->st_mode = S_IFDIR | 0755;
    info->st_nlink = 2;
    return 0;
  }
  if (parts.size() != 2 || !is_report_file(parts[1])) return -ENOENT;
  info->st_mode = S_IFREG | (parts[1] == "inblob" ? 0200 : 0444);
  info->st_size = parts[1] == "inblob" || parts[1] == "outblob" ? 0 : static_cast<off_t>(kAttributeSize);
  return 0;
}

int fs_readdir(const char* path, void* buffer, fuse_fill_dir_t fill, off_t, fuse_file_info*, fuse_readdir_flags) {
  std::vector<std::string> parts = split_path(path);
  fill(buffer, ".", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  fill(buffer, "..", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  if (parts.empty()) {
    if (state.report_mode) {
      for (const auto& [name, report] : state.reports) fill(buffer, name.c_str(), nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
    } else {
      for (const auto& [name, file] : state.files) fill(buffer, name.c_str(), nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
    }
    return 0;
  }
  if (!state.report_mode || parts.size() != 1 || state.reports.count(parts[0]) == 0) return -ENOTDIR;
  for (const char* name : {"inblob", "outblob", "provider", "generation"}) {
    fill(buffer, name, nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  }
  return 0;
}

bool wants_write(const fuse_file_info* fi) { return (fi->flags & O_ACCMODE) != O_RDONLY; }
bool wants_read(const fuse_file_info* fi) { return (fi->flags & O_ACCMODE) != O_WRONLY; }

int fs_open(const char* path, fuse_file_info* fi) {
  std::vector<std::string> parts = split_path(path);
  // Every read and write reaches this process with its own offset and size,
  // as they reach a sysfs attribute.
  fi->direct_io = 1;
  if (!state.report_mode) {
    auto found = state.files.find(parts.empty() ? "" : parts[0]);
    if (parts.size() != 1 || found == state.files.end()) return -ENOENT;
    if (wants_write(fi) && !found->second.writable) return -EACCES;
    return 0;
  }
  if (parts.size() != 2 || state.reports.count(parts[0]) == 0 || !is_report_file(parts[1])) return -ENOENT;
  bool inblob = parts[1] == "inblob";
  if (inblob ? wants_read(fi) : wants_write(fi)) return -EACCES;
  if (inblob) {
    Report& report = state.reports[parts[0]];
    report.pending.clear();
    report.writing = true;
  }
  return 0;
}

int fs_read(const char* path, char* buffer, size_t size, off_t offset, fuse_file_info*) {
  std::vector<std::string> parts = split_path(path);
  Bytes content;
  if (!state.report_mode) {
    content = state.files.at(parts[0]).value;
  } else {
    Report& report = state.reports.at(parts[0]);
    if (parts[1] == "outblob" && (report.inblob.size() < kInblobMin || report.inblob.size() > kInblobMax)) return -EINVAL;
    content = report_file_content(report, parts[1]);
  }
  auto position = static_cast<size_t>(offset);
  if (position >= content.size()) return 0;
  size_t count = std::min(size, content.size() - position);
  std::memcpy(buffer, content.data() + position, count);
  return static_cast<int>(count);
}

int fs_write(const char* path, const char* data, size_t size, off_t offset, fuse_file_info*) {
  std::vector<std::string> parts = split_path(path);
  auto position = static_cast<size_t>(offset);
  if (state.report_mode) {
    Report& report = state.reports.at(parts[0]);
    if (position + size > kInblobMax) return -EFBIG;
    if (report.pending.size() < position + size) report.pending.resize(position + size);
    std::memcpy(report.pending.data() + position, data, size);
    return static_cast<int>(size);
  }
  MrFile& file = state.files.at(parts[0]);
  size_t register_size = file.value.size();
  if (position >= register_size) return -EFBIG;
  size_t count = std::min(size, register_size - position);
  if (count == 0) return 0;
  if (position != 0 || count != register_size) return -EINVAL;
  Bytes input = file.value;
  input.insert(input.end(), data, data + count);
  auto digest = imarot::hash_bytes(*file.algo, input);
  if (!digest) return -EIO;
  file.value.assign(digest->view().begin(), digest->view().end());
  return static_cast<int>(count);
}

// configfs takes a written binary attribute when the file is closed.
// fi->flags is not set for flush, but inblob opens only for writing.
int fs_flush(const char* path, fuse_file_info*) {
  std::vector<std::string> parts = split_path(path);
  if (!state.report_mode || parts.size() != 2 || parts[1] != "inblob") return 0;
  Report& report = state.reports.at(parts[0]);
  if (report.writing && !report.pending.empty()) {
    report.inblob = report.pending;
    ++report.generation;
  }
  report.writing = false;
  return 0;
}

// sysfs ignores size changes, so "echo > file" opens with O_TRUNC and works.
int fs_truncate(const char*, off_t, fuse_file_info*) { return 0; }

int fs_mkdir(const char* path, mode_t) {
  std::vector<std::string> parts = split_path(path);
  if (!state.report_mode || parts.size() != 1) return -EPERM;
  if (state.reports.count(parts[0]) != 0) return -EEXIST;
  state.reports[parts[0]] = Report{};
  return 0;
}

int fs_rmdir(const char* path) {
  std::vector<std::string> parts = split_path(path);
  if (!state.report_mode || parts.size() != 1) return -EPERM;
  return state.reports.erase(parts[0]) == 1 ? 0 : -ENOENT;
}

void* fs_init(fuse_conn_info*, fuse_config* config) {
  config->direct_io = 1;
  config->kernel_cache = 0;
  config->attr_timeout = 0;
  config->entry_timeout = 0;
  config->negative_timeout = 0;
  return nullptr;
}

bool parse_register(const std::string& spec) {
  size_t equals = spec.find('=');
  if (equals == std::string::npos) return false;
  std::string file_name = spec.substr(0, equals);
  std::string rest = spec.substr(equals + 1);
  std::string mode = rest.substr(0, rest.find(','));
  MrFile file;
  if (mode != "ro" && mode != "rw") return false;
  file.writable = mode == "rw";
  size_t colon = file_name.find(':');
  if (colon != std::string::npos) {
    file.algo = imarot::hash_algo_from_name(file_name.substr(colon + 1));
    if (!file.algo) return false;
    file.value.assign(imarot::digest_size(*file.algo), 0);
  } else if (file.writable) {
    return false;
  }
  if (size_t comma = rest.find(','); comma != std::string::npos) {
    auto value = imarot::from_hex(rest.substr(comma + 1));
    if (!value || (file.algo && value->size() != file.value.size())) return false;
    file.value = *value;
  }
  if (file.value.empty()) return false;
  state.files[file_name] = std::move(file);
  return true;
}

int usage() {
  std::cerr << "usage: ccrot-fs MOUNTPOINT tsm-mr NAME[:HASH]=ro|rw[,HEX]...\n"
               "       ccrot-fs MOUNTPOINT tsm-report PROVIDER CLAIMS_JSON\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  std::string mode = argv[2];
  if (mode == "tsm-mr") {
    for (int i = 3; i < argc; ++i) {
      if (!parse_register(argv[i])) {
        std::cerr << "ccrot-fs: invalid register '" << argv[i] << "'\n";
        return usage();
      }
    }
  } else if (mode == "tsm-report" && argc == 5) {
    state.report_mode = true;
    state.provider = argv[3];
    std::ifstream in(argv[4]);
    try {
      state.claims = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      std::cerr << "ccrot-fs: " << argv[4] << ": " << e.what() << '\n';
      return 2;
    }
  } else {
    return usage();
  }

  fuse_operations operations{};
  operations.getattr = fs_getattr;
  operations.readdir = fs_readdir;
  operations.open = fs_open;
  operations.read = fs_read;
  operations.write = fs_write;
  operations.flush = fs_flush;
  operations.truncate = fs_truncate;
  operations.mkdir = fs_mkdir;
  operations.rmdir = fs_rmdir;
  operations.init = fs_init;

  std::vector<std::string> arguments = {argv[0], "-f", "-s", "-o", "fsname=ccrot-fs,subtype=ccrot", argv[1]};
  std::vector<char*> fuse_argv;
  for (std::string& argument : arguments) fuse_argv.push_back(argument.data());
  return fuse_main(static_cast<int>(fuse_argv.size()), fuse_argv.data(), &operations, nullptr);
}
