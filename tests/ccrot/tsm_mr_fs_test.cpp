// ccrot-fs in tsm-mr mode against the sysfs behaviour it reproduces, with
// plain system calls: the backends' tests rely on it being faithful.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "ccrot_mount.h"

namespace imarot::test {
namespace {

class TsmMrFs : public ::testing::Test {
 protected:
  static std::unique_ptr<CcrotMount>& mount() {
    static std::unique_ptr<CcrotMount> instance;
    return instance;
  }
  static std::string& error() {
    static std::string instance;
    return instance;
  }
  static void SetUpTestSuite() {
    std::vector<std::string> files = tdx_measurement_files();
    files.push_back("rem0:sha256=rw");
    auto started = CcrotMount::tsm_mr(files);
    if (started) {
      mount() = std::move(*started);
    } else {
      error() = started.error().message;
    }
  }
  static void TearDownTestSuite() { mount().reset(); }
  void SetUp() override { ASSERT_TRUE(mount()) << error(); }

  std::string path(const std::string& name) const { return mount()->file(name); }

  static Bytes read_all(const std::string& file) {
    int fd = ::open(file.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0) << file << ": " << std::strerror(errno);
    Bytes out(256);
    ssize_t got = ::read(fd, out.data(), out.size());
    ::close(fd);
    EXPECT_GE(got, 0);
    out.resize(static_cast<size_t>(std::max<ssize_t>(got, 0)));
    return out;
  }

  // pwrite on a fresh descriptor; returns the result and errno.
  static std::pair<ssize_t, int> write_at(const std::string& file, ByteView data, off_t offset) {
    int fd = ::open(file.c_str(), O_WRONLY);
    if (fd < 0) return {-1, errno};
    ssize_t written = ::pwrite(fd, data.data(), data.size(), offset);
    int err = errno;
    ::close(fd);
    return {written, written < 0 ? err : 0};
  }

  static Digest extended(HashAlgo algo, const Bytes& old_value, ByteView input) {
    Bytes data = old_value;
    data.insert(data.end(), input.begin(), input.end());
    return *hash_bytes(algo, data);
  }
};

TEST_F(TsmMrFs, ModesAndSizesAsSysfs) {
  struct stat info {};
  ASSERT_EQ(::stat(path("mrtd:sha384").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0444u);
  EXPECT_EQ(info.st_size, 48);
  ASSERT_EQ(::stat(path("rtmr2:sha384").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
  EXPECT_EQ(info.st_size, 48);
  ASSERT_EQ(::stat(path("mrconfigid").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0444u);
  ASSERT_EQ(::stat(path("rem0:sha256").c_str(), &info), 0);
  EXPECT_EQ(info.st_size, 32);
}

TEST_F(TsmMrFs, ReadReturnsRawBytes) {
  Bytes value = read_all(path("mrtd:sha384"));
  ASSERT_EQ(value.size(), 48u);
  EXPECT_EQ(Digest(value), tdx_initial_value("mrtd"));

  int fd = ::open(path("rtmr0:sha384").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  uint8_t tail[64];
  ssize_t got = ::pread(fd, tail, sizeof tail, 40);
  ::close(fd);
  ASSERT_EQ(got, 8);
  EXPECT_EQ(tail[0], 0xb0);
}

TEST_F(TsmMrFs, ExactWriteExtends) {
  Bytes before = read_all(path("rtmr3:sha384"));
  Digest input = Digest::filled(48, 0x42);
  auto [written, err] = write_at(path("rtmr3:sha384"), input.view(), 0);
  ASSERT_EQ(written, 48) << std::strerror(err);
  EXPECT_EQ(Digest(read_all(path("rtmr3:sha384"))), extended(HashAlgo::sha384, before, input.view()));
}

TEST_F(TsmMrFs, ShortWriteIsInvalid) {
  Bytes before = read_all(path("rtmr3:sha384"));
  Bytes input(47, 0x01);
  auto [written, err] = write_at(path("rtmr3:sha384"), input, 0);
  EXPECT_EQ(written, -1);
  EXPECT_EQ(err, EINVAL);
  EXPECT_EQ(read_all(path("rtmr3:sha384")), before);
}

TEST_F(TsmMrFs, WriteAtOffsetIsInvalid) {
  Bytes before = read_all(path("rtmr3:sha384"));
  Bytes input(47, 0x01);
  auto [written, err] = write_at(path("rtmr3:sha384"), input, 1);
  EXPECT_EQ(written, -1);
  EXPECT_EQ(err, EINVAL);
  EXPECT_EQ(read_all(path("rtmr3:sha384")), before);
}

TEST_F(TsmMrFs, WritePastSizeIsTooLarge) {
  Bytes input(48, 0x01);
  auto [written, err] = write_at(path("rtmr3:sha384"), input, 48);
  EXPECT_EQ(written, -1);
  EXPECT_EQ(err, EFBIG);
}

// sysfs cuts a write to a binary attribute at the attribute's size before
// calling the driver, so 49 bytes at offset 0 extend with the first 48.
TEST_F(TsmMrFs, LongWriteIsCutToSize) {
  Bytes before = read_all(path("rtmr3:sha384"));
  Bytes input(49, 0x07);
  auto [written, err] = write_at(path("rtmr3:sha384"), input, 0);
  ASSERT_EQ(written, 48) << std::strerror(err);
  EXPECT_EQ(Digest(read_all(path("rtmr3:sha384"))),
            extended(HashAlgo::sha384, before, ByteView(input.data(), 48)));
}

TEST_F(TsmMrFs, ReadOnlyFileRejectsOpenForWrite) {
  int fd = ::open(path("mrtd:sha384").c_str(), O_WRONLY);
  int err = errno;
  if (fd >= 0) ::close(fd);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(err, EACCES);
  EXPECT_EQ(Digest(read_all(path("mrtd:sha384"))), tdx_initial_value("mrtd"));
}

TEST_F(TsmMrFs, ValuesPersistAcrossOpens) {
  Bytes before = read_all(path("rem0:sha256"));
  Digest input = Digest::filled(32, 0x99);
  int fd = ::open(path("rem0:sha256").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, input.data(), input.size()), 32);
  // The file position is now at the end, so a second write() on the same
  // descriptor lands past the size.
  EXPECT_EQ(::write(fd, input.data(), input.size()), -1);
  EXPECT_EQ(errno, EFBIG);
  ::close(fd);

  Digest expected = extended(HashAlgo::sha256, before, input.view());
  EXPECT_EQ(Digest(read_all(path("rem0:sha256"))), expected);
  EXPECT_EQ(Digest(read_all(path("rem0:sha256"))), expected);
}

TEST_F(TsmMrFs, ShellRedirectionExtends) {
  Bytes before = read_all(path("rem0:sha256"));
  std::string input_file = mount()->scratch("input.bin");
  Digest input = Digest::filled(32, 0x3c);
  write_text_file(input_file, std::string(reinterpret_cast<const char*>(input.data()), input.size()));
  CommandResult result = run_command({"sh", "-c", fmt::format("cat '{}' > '{}'", input_file, path("rem0:sha256"))});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(Digest(read_all(path("rem0:sha256"))), extended(HashAlgo::sha256, before, input.view()));
}

}  // namespace
}  // namespace imarot::test
