// The IMA policy language: parsing, the kernel's rule checks with their
// error positions, first-match evaluation, the built-in policies, the
// canonical printer, and `rotctl policy check` run as a user runs it.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "imarot/policy.h"
#include "test_util.h"

namespace imarot {
namespace {

constexpr uint64_t kExt4Magic = 0xef53;
constexpr uint64_t kTmpfsMagic = 0x01021994;
constexpr uint64_t kProcMagic = 0x9fa0;

std::string errors_text(const ParsedPolicy& parsed) {
  std::string out;
  for (const auto& error : parsed.errors) out += format_diagnostic(error) + "\n";
  return out;
}

ParsedPolicy parse(std::string_view text) { return parse_policy(text, "test.policy"); }

Policy policy_of(std::string_view text) {
  ParsedPolicy parsed = parse(text);
  EXPECT_TRUE(parsed.ok()) << text << "\n" << errors_text(parsed);
  return parsed.policy;
}

PolicyRule rule_of(std::string_view line) {
  Policy policy = policy_of(line);
  if (policy.rules.size() != 1) {
    ADD_FAILURE() << "expected one rule from '" << line << "', got " << policy.rules.size();
    return {};
  }
  return policy.rules.front();
}

// A root process opening a file on ext4 for reading.
PolicyQuery file_read_query() {
  PolicyQuery query;
  query.func = PolicyFunc::file_check;
  query.mask = kMayRead;
  query.fsmagic = kExt4Magic;
  query.fsname = "ext4";
  return query;
}

PolicyQuery with_ids(PolicyQuery query, uint32_t uid, uint32_t euid, uint32_t suid) {
  query.uid = uid;
  query.euid = euid;
  query.suid = suid;
  return query;
}

// ---------------------------------------------------------------------------
// Parsing, one keyword at a time.

TEST(PolicyParse, EveryFuncName) {
  const std::vector<std::pair<std::string, PolicyFunc>> cases = {
      {"FILE_CHECK", PolicyFunc::file_check},
      {"PATH_CHECK", PolicyFunc::file_check},
      {"MMAP_CHECK", PolicyFunc::mmap_check},
      {"FILE_MMAP", PolicyFunc::mmap_check},
      {"MMAP_CHECK_REQPROT", PolicyFunc::mmap_check_reqprot},
      {"BPRM_CHECK", PolicyFunc::bprm_check},
      {"CREDS_CHECK", PolicyFunc::creds_check},
      {"MODULE_CHECK", PolicyFunc::module_check},
      {"FIRMWARE_CHECK", PolicyFunc::firmware_check},
      {"KEXEC_KERNEL_CHECK", PolicyFunc::kexec_kernel_check},
      {"KEXEC_INITRAMFS_CHECK", PolicyFunc::kexec_initramfs_check},
      {"POLICY_CHECK", PolicyFunc::policy_check},
      {"KEXEC_CMDLINE", PolicyFunc::kexec_cmdline},
      {"KEY_CHECK", PolicyFunc::key_check},
      {"CRITICAL_DATA", PolicyFunc::critical_data},
  };
  for (const auto& [name, func] : cases) {
    SCOPED_TRACE(name);
    PolicyRule rule = rule_of("measure func=" + name);
    ASSERT_TRUE(rule.func.has_value());
    EXPECT_EQ(*rule.func, func);
    EXPECT_EQ(format_rule(rule), fmt::format("measure func={}", policy_func_name(func)));
  }

  PolicyRule setxattr = rule_of("appraise func=SETXATTR_CHECK appraise_algos=sha256");
  EXPECT_EQ(setxattr.func, PolicyFunc::setxattr_check);
}

TEST(PolicyParse, MaskEqualAndContains) {
  const std::vector<std::tuple<std::string, uint32_t, bool>> cases = {
      {"MAY_EXEC", kMayExec, false},     {"MAY_WRITE", kMayWrite, false},   {"MAY_READ", kMayRead, false},
      {"MAY_APPEND", kMayAppend, false}, {"^MAY_EXEC", kMayExec, true},     {"^MAY_WRITE", kMayWrite, true},
      {"^MAY_READ", kMayRead, true},     {"^MAY_APPEND", kMayAppend, true},
  };
  for (const auto& [text, bit, contains] : cases) {
    SCOPED_TRACE(text);
    PolicyRule rule = rule_of("measure mask=" + text);
    ASSERT_TRUE(rule.mask.has_value());
    EXPECT_EQ(rule.mask->bit, bit);
    EXPECT_EQ(rule.mask->contains, contains);
  }
}

TEST(PolicyParse, FsmagicIsHexadecimal) {
  const std::vector<std::pair<std::string, uint64_t>> cases = {
      {"0x9fa0", 0x9fa0},         {"9fa0", 0x9fa0},
      {"0X9FA0", 0x9fa0},         {"+0x9fa0", 0x9fa0},
      {"01021994", 0x01021994},   {"ffffffffffffffff", 0xffffffffffffffffULL},
      {"0", 0},
  };
  for (const auto& [text, magic] : cases) {
    SCOPED_TRACE(text);
    PolicyRule rule = rule_of("dont_measure fsmagic=" + text);
    EXPECT_EQ(rule.fsmagic, magic);
  }
}

TEST(PolicyParse, FsuuidAndFsname) {
  PolicyRule rule = rule_of("measure fsuuid=0E5C4D27-3f8b-4a4e-9c1d-2b7a5f6e8d90 fsname=ext4");
  ASSERT_TRUE(rule.fsuuid.has_value());
  EXPECT_EQ(to_hex(ByteView(rule.fsuuid->data(), rule.fsuuid->size())), "0e5c4d273f8b4a4e9c1d2b7a5f6e8d90");
  EXPECT_EQ(rule.fsname, "ext4");
}

TEST(PolicyParse, IdConditionsWithEachOperator) {
  for (std::string key : {"uid", "euid", "gid", "egid", "fowner", "fgroup"}) {
    for (char op : {'=', '<', '>'}) {
      std::string line = fmt::format("measure {}{}1000", key, op);
      SCOPED_TRACE(line);
      PolicyRule rule = rule_of(line);
      std::optional<IdCondition> condition = key == "uid"      ? rule.uid
                                             : key == "euid"   ? rule.euid
                                             : key == "gid"    ? rule.gid
                                             : key == "egid"   ? rule.egid
                                             : key == "fowner" ? rule.fowner
                                                               : rule.fgroup;
      ASSERT_TRUE(condition.has_value());
      EXPECT_EQ(condition->value, 1000u);
      IdOperator expected = IdOperator::equal;
      if (op == '<') expected = IdOperator::less;
      if (op == '>') expected = IdOperator::greater;
      EXPECT_EQ(condition->op, expected);
      EXPECT_EQ(format_rule(rule), line);
    }
  }
}

TEST(PolicyParse, IdRange) {
  EXPECT_EQ(rule_of("measure uid=0").uid->value, 0u);
  EXPECT_EQ(rule_of("measure uid=4294967294").uid->value, 4294967294u);
  EXPECT_FALSE(parse("measure uid=4294967295").ok());
  EXPECT_FALSE(parse("measure uid=4294967296").ok());
}

TEST(PolicyParse, LsmConditionsAreKept) {
  PolicyRule rule = rule_of(
      "measure obj_user=system_u obj_role=object_r obj_type=bin_t subj_user=user_u subj_role=user_r "
      "subj_type=user_t");
  EXPECT_EQ(rule.lsm[static_cast<size_t>(LsmField::obj_user)], "system_u");
  EXPECT_EQ(rule.lsm[static_cast<size_t>(LsmField::obj_role)], "object_r");
  EXPECT_EQ(rule.lsm[static_cast<size_t>(LsmField::obj_type)], "bin_t");
  EXPECT_EQ(rule.lsm[static_cast<size_t>(LsmField::subj_user)], "user_u");
  EXPECT_EQ(rule.lsm[static_cast<size_t>(LsmField::subj_role)], "user_r");
  EXPECT_EQ(rule.lsm[static_cast<size_t>(LsmField::subj_type)], "user_t");
  EXPECT_TRUE(rule.has_lsm_condition());
}

TEST(PolicyParse, PcrRange) {
  EXPECT_EQ(rule_of("measure pcr=0").pcr, 0u);
  EXPECT_EQ(rule_of("measure pcr=11").pcr, 11u);
  EXPECT_EQ(rule_of("measure pcr=63").pcr, 63u);
  EXPECT_FALSE(parse("measure pcr=64").ok());
}

TEST(PolicyParse, TemplateNamesAndFormats) {
  PolicyRule named = rule_of("measure template=ima-sig");
  ASSERT_NE(named.tmpl, nullptr);
  EXPECT_EQ(named.tmpl->name, "ima-sig");

  // A format equal to a built-in template's selects that template.
  PolicyRule builtin_format = rule_of("measure template=d-ng|n-ng");
  ASSERT_NE(builtin_format.tmpl, nullptr);
  EXPECT_EQ(builtin_format.tmpl->name, "ima-ng");

  PolicyRule custom = rule_of("measure template=d-ng|n-ng|iuid|imode");
  ASSERT_NE(custom.tmpl, nullptr);
  EXPECT_EQ(custom.tmpl->name, "");
  EXPECT_EQ(custom.tmpl->list_name(), "d-ng|n-ng|iuid|imode");
  EXPECT_EQ(format_rule(custom), "measure template=d-ng|n-ng|iuid|imode");
}

TEST(PolicyParse, OptionsOfMeasureRules) {
  PolicyRule rule = rule_of("measure func=FILE_CHECK digest_type=verity permit_directio pcr=12 template=ima-ngv2");
  EXPECT_EQ(rule.digest_type, PolicyDigestType::verity);
  EXPECT_TRUE(rule.permit_directio);
  EXPECT_EQ(rule.pcr, 12u);
  ASSERT_NE(rule.tmpl, nullptr);
  EXPECT_EQ(rule.tmpl->name, "ima-ngv2");
}

TEST(PolicyParse, AppraiseOptions) {
  PolicyRule modsig =
      rule_of("appraise func=MODULE_CHECK appraise_type=imasig|modsig appraise_flag=check_blacklist");
  EXPECT_EQ(modsig.action, PolicyAction::appraise);
  EXPECT_EQ(modsig.appraise_type, AppraiseType::imasig_modsig);
  EXPECT_TRUE(modsig.check_blacklist);

  PolicyRule verity = rule_of("appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3");
  EXPECT_EQ(verity.appraise_type, AppraiseType::sigv3);
  EXPECT_EQ(verity.digest_type, PolicyDigestType::verity);

  PolicyRule algos = rule_of("appraise func=SETXATTR_CHECK appraise_algos=sha512,sha256,sha256");
  EXPECT_EQ(algos.appraise_algos, (std::vector<HashAlgo>{HashAlgo::sha256, HashAlgo::sha512}));
  EXPECT_EQ(format_rule(algos), "appraise func=SETXATTR_CHECK appraise_algos=sha256,sha512");

  EXPECT_EQ(rule_of("appraise fowner=0 appraise_type=imasig").appraise_type, AppraiseType::imasig);
  EXPECT_EQ(rule_of("dont_appraise fsmagic=0x9fa0").action, PolicyAction::dont_appraise);
}

TEST(PolicyParse, KeyringsAndLabels) {
  PolicyRule keys = rule_of("measure func=KEY_CHECK keyrings=.ima|.builtin_trusted_keys uid=0 pcr=11 template=ima-buf");
  EXPECT_EQ(keys.keyrings, (std::vector<std::string>{".ima", ".builtin_trusted_keys"}));
  EXPECT_EQ(keys.uid->value, 0u);

  PolicyRule data = rule_of("measure func=CRITICAL_DATA label=selinux|kernel_info");
  EXPECT_EQ(data.labels, (std::vector<std::string>{"selinux", "kernel_info"}));
}

TEST(PolicyParse, EveryAction) {
  const std::vector<std::pair<std::string, PolicyAction>> cases = {
      {"measure", PolicyAction::measure},   {"dont_measure", PolicyAction::dont_measure},
      {"appraise", PolicyAction::appraise}, {"dont_appraise", PolicyAction::dont_appraise},
      {"audit", PolicyAction::audit},       {"dont_audit", PolicyAction::dont_audit},
      {"hash", PolicyAction::hash},         {"dont_hash", PolicyAction::dont_hash},
  };
  for (const auto& [name, action] : cases) {
    SCOPED_TRACE(name);
    EXPECT_EQ(rule_of(name + " func=BPRM_CHECK").action, action);
  }
}

TEST(PolicyParse, ActionMayFollowConditions) {
  PolicyRule rule = rule_of("func=BPRM_CHECK\tmask=MAY_EXEC   measure");
  EXPECT_EQ(rule.action, PolicyAction::measure);
  EXPECT_EQ(format_rule(rule), "measure func=BPRM_CHECK mask=MAY_EXEC");
}

TEST(PolicyParse, CommentsBlankLinesAndLineNumbers) {
  Policy policy = policy_of(
      "# measure executables\n"
      "\n"
      "   \t\n"
      "  # indented comment\n"
      "measure func=BPRM_CHECK\n"
      "\tmeasure func=MMAP_CHECK mask=MAY_EXEC\n"
      "dont_measure fsmagic=0x9fa0");
  ASSERT_EQ(policy.rules.size(), 3u);
  EXPECT_EQ(policy.rule_lines, (std::vector<size_t>{5, 6, 7}));
  EXPECT_EQ(policy.source, "test.policy");
}

TEST(PolicyParse, GoldenKernelPolicy) {
  std::string text = test::read_text(test::golden_path("policy"));
  ASSERT_FALSE(text.empty());
  ParsedPolicy parsed = parse_policy(text, "policy");
  ASSERT_TRUE(parsed.ok()) << errors_text(parsed);
  EXPECT_TRUE(parsed.warnings.empty());

  const Policy& policy = parsed.policy;
  ASSERT_EQ(policy.rules.size(), 7u);
  EXPECT_EQ(policy.rule_lines, (std::vector<size_t>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(format_policy(policy),
            "dont_measure fsmagic=0x1021994\n"
            "dont_measure fsmagic=0x9fa0\n"
            "dont_measure fsmagic=0x62656572\n"
            "dont_measure fsmagic=0x73636673\n"
            "measure func=BPRM_CHECK mask=MAY_EXEC template=ima-ng\n"
            "measure func=MMAP_CHECK mask=MAY_EXEC template=ima-ng\n"
            "measure func=FILE_CHECK mask=^MAY_READ uid=0 template=ima-sig\n");

  // The captured events: executables on ext4 are recorded with ima-ng, files
  // read by root with ima-sig, and nothing on tmpfs.
  PolicyQuery exec = file_read_query();
  exec.func = PolicyFunc::bprm_check;
  exec.mask = kMayExec;
  PolicyDecision exec_decision = match_policy(policy, exec);
  EXPECT_TRUE(exec_decision.measure);
  ASSERT_NE(exec_decision.tmpl, nullptr);
  EXPECT_EQ(exec_decision.tmpl->name, "ima-ng");
  EXPECT_FALSE(exec_decision.pcr.has_value());
  EXPECT_EQ(exec_decision.deciding_rule[static_cast<size_t>(ActionClass::measure)], 4u);

  PolicyDecision read_decision = match_policy(policy, file_read_query());
  EXPECT_TRUE(read_decision.measure);
  ASSERT_NE(read_decision.tmpl, nullptr);
  EXPECT_EQ(read_decision.tmpl->name, "ima-sig");

  PolicyQuery user_read = with_ids(file_read_query(), 1000, 1000, 1000);
  PolicyDecision user_decision = match_policy(policy, user_read);
  EXPECT_FALSE(user_decision.measure);
  EXPECT_FALSE(user_decision.deciding_rule[static_cast<size_t>(ActionClass::measure)].has_value());

  PolicyQuery tmpfs_exec = exec;
  tmpfs_exec.fsmagic = kTmpfsMagic;
  tmpfs_exec.fsname = "tmpfs";
  PolicyDecision tmpfs_decision = match_policy(policy, tmpfs_exec);
  EXPECT_FALSE(tmpfs_decision.measure);
  EXPECT_EQ(tmpfs_decision.deciding_rule[static_cast<size_t>(ActionClass::measure)], 0u);
}

// ---------------------------------------------------------------------------
// Errors: each names the line, the column and the token.

struct ErrorCase {
  std::string text;
  size_t column;
  std::string token;
  std::string message_part;
};

void expect_single_error(const ErrorCase& c) {
  SCOPED_TRACE(c.text);
  ParsedPolicy parsed = parse(c.text);
  ASSERT_EQ(parsed.errors.size(), 1u) << errors_text(parsed);
  const PolicyDiagnostic& error = parsed.errors.front();
  EXPECT_EQ(error.source, "test.policy");
  EXPECT_EQ(error.line, 1u);
  EXPECT_EQ(error.column, c.column);
  EXPECT_EQ(error.token, c.token);
  EXPECT_NE(error.message.find(c.message_part), std::string::npos) << error.message;
  EXPECT_TRUE(parsed.policy.rules.empty());
}

TEST(PolicyErrors, TokenErrors) {
  const std::vector<ErrorCase> cases = {
      {"measure audit", 9, "audit", "second action"},
      {"measure fsmagc=0x9fa0", 9, "fsmagc=0x9fa0", "unknown keyword 'fsmagc'"},
      {"measure fsmagc=0x9fa0", 9, "fsmagc=0x9fa0", "did you mean 'fsmagic'?"},
      {"mesure func=BPRM_CHECK", 1, "mesure", "did you mean 'measure'?"},
      {"measure=yes", 1, "measure=yes", "the action 'measure' takes no value"},
      {"measure permit_directio=1", 9, "permit_directio=1", "permit_directio takes no value"},
      {"measure func", 9, "func", "needs a value"},
      {"measure mask<MAY_READ", 9, "mask<MAY_READ", "mask takes '=', not '<'"},
      {"measure func=", 9, "func=", "missing value after 'func='"},
      {"measure func=BPRM_CHECK func=MMAP_CHECK", 25, "func=MMAP_CHECK", "repeats func, already given at column 9"},
      {"measure pcr=10 pcr=11", 16, "pcr=11", "repeats pcr"},
      {"measure permit_directio permit_directio", 25, "permit_directio", "repeats permit_directio"},
      {"measure subj_type=a_t subj_type=b_t", 23, "subj_type=b_t", "repeats subj_type"},
      {"measure uid=0 euid=0", 15, "euid=0", "cannot be combined with 'uid=0' (column 9)"},
      {"measure egid>10 gid<5", 17, "gid<5", "cannot be combined with 'egid>10'"},
      {"measure func=BPRM_CHEK", 9, "func=BPRM_CHEK", "did you mean 'BPRM_CHECK'?"},
      {"measure func=EXEC_CHECK", 9, "func=EXEC_CHECK", "unknown func 'EXEC_CHECK'"},
      {"measure mask=MAY_RAED", 9, "mask=MAY_RAED", "invalid mask 'MAY_RAED'"},
      {"measure mask=^", 9, "mask=^", "invalid mask '^'"},
      {"measure fsmagic=0xzz", 9, "fsmagic=0xzz", "invalid fsmagic '0xzz'"},
      {"measure fsmagic=0x10000000000000000", 9, "fsmagic=0x10000000000000000", "at most 64 bits"},
      {"measure fsuuid=1234", 9, "fsuuid=1234", "invalid fsuuid '1234'"},
      {"measure fsuuid=0e5c4d27-3f8b-4a4e-9c1d-2b7a5f6e8d90a", 9, "fsuuid=0e5c4d27-3f8b-4a4e-9c1d-2b7a5f6e8d90a",
       "expected a UUID"},
      {"measure fsuuid=0e5c4d27x3f8b-4a4e-9c1d-2b7a5f6e8d90", 9, "fsuuid=0e5c4d27x3f8b-4a4e-9c1d-2b7a5f6e8d90",
       "invalid fsuuid"},
      {"measure uid=-1", 9, "uid=-1", "invalid uid value '-1'"},
      {"measure uid=4294967295", 9, "uid=4294967295", "from 0 to 4294967294"},
      {"measure fowner=abc", 9, "fowner=abc", "invalid fowner value 'abc'"},
      {"measure uid>=5", 9, "uid>=5", "there is no '<=' or '>='"},
      {"measure pcr=64", 9, "pcr=64", "from 0 to 63"},
      {"measure pcr=0x10", 9, "pcr=0x10", "invalid pcr '0x10'"},
      {"measure template=ima-foo", 9, "template=ima-foo", "invalid template"},
      {"measure template=d-ng|n-ng|bogus", 9, "template=d-ng|n-ng|bogus", "unknown template field 'bogus'"},
      {"appraise digest_type=sha256", 10, "digest_type=sha256", "invalid digest_type 'sha256'"},
      {"appraise appraise_type=modsig", 10, "appraise_type=modsig", "invalid appraise_type 'modsig'"},
      {"appraise appraise_flag=check", 10, "appraise_flag=check", "invalid appraise_flag 'check'"},
      {"appraise appraise_algos=sha256,sha999", 10, "appraise_algos=sha256,sha999", "unknown hash algorithm 'sha999'"},
      {"appraise appraise_algos=sha256,", 10, "appraise_algos=sha256,", "unknown hash algorithm ''"},
      {"measure func=KEY_CHECK keyrings=.ima||.evm", 24, "keyrings=.ima||.evm", "empty name in the keyrings list"},
      {"measure func=CRITICAL_DATA label=", 28, "label=", "missing value after 'label='"},
      {"measure #comment", 9, "#comment", "a comment must be on a line of its own"},
      {"measure func=FILE_CHECK # read files  ", 25, "# read files", "a comment must be on a line of its own"},
      {"measure\t#\tread files", 9, "#\tread files", "only at the beginning of a line"},
      {"measure template=foo", 9, "template=foo", "invalid template 'foo' in 'template=foo'"},
  };
  for (const auto& c : cases) expect_single_error(c);
}

TEST(PolicyErrors, RuleChecks) {
  const std::vector<ErrorCase> cases = {
      {"func=FILE_CHECK mask=MAY_READ", 1, "func=FILE_CHECK", "rule has no action"},
      {"dont_measure pcr=11", 14, "pcr=11", "pcr= is allowed only in measure rules"},
      {"audit template=ima-ng", 7, "template=ima-ng", "template= is allowed only in measure rules"},
      {"template=ima-ng measure", 1, "template=ima-ng", "template= must come after the action 'measure'"},
      {"measure appraise_type=imasig", 9, "appraise_type=imasig", "appraise_type= is allowed only in appraise rules"},
      {"hash appraise_algos=sha256", 6, "appraise_algos=sha256", "appraise_algos= is allowed only in appraise rules"},
      {"appraise func=KEY_CHECK", 1, "appraise", "must be measure or dont_measure rules"},
      {"measure func=KEY_CHECK mask=MAY_READ", 24, "mask=MAY_READ", "is not allowed with func=KEY_CHECK"},
      {"measure func=KEY_CHECK subj_type=foo_t", 24, "subj_type=foo_t", "KEY_CHECK rules accept only"},
      {"measure func=KEY_CHECK euid=0", 24, "euid=0", "is not allowed with func=KEY_CHECK"},
      {"measure func=CRITICAL_DATA fsmagic=0x9fa0", 28, "fsmagic=0x9fa0", "CRITICAL_DATA rules accept only"},
      {"measure func=CRITICAL_DATA keyrings=.ima", 28, "keyrings=.ima", "keyrings= is allowed only with func=KEY_CHECK"},
      {"measure label=selinux", 9, "label=selinux", "label= is allowed only with func=CRITICAL_DATA"},
      {"measure func=KEXEC_CMDLINE mask=MAY_READ", 28, "mask=MAY_READ", "is not allowed with func=KEXEC_CMDLINE"},
      {"measure func=KEXEC_CMDLINE permit_directio", 28, "permit_directio", "KEXEC_CMDLINE rules accept only"},
      {"audit func=KEXEC_CMDLINE", 1, "audit", "must be measure or dont_measure rules"},
      {"appraise func=SETXATTR_CHECK", 10, "func=SETXATTR_CHECK", "need appraise_algos="},
      {"appraise func=SETXATTR_CHECK appraise_algos=sha256 fsmagic=0x9fa0", 52, "fsmagic=0x9fa0",
       "is not allowed with func=SETXATTR_CHECK"},
      {"appraise func=FILE_CHECK appraise_type=imasig|modsig", 26, "appraise_type=imasig|modsig",
       "allowed only with func=MODULE_CHECK, KEXEC_KERNEL_CHECK or KEXEC_INITRAMFS_CHECK"},
      {"appraise func=MODULE_CHECK appraise_type=imasig appraise_flag=check_blacklist", 49,
       "appraise_flag=check_blacklist", "requires appraise_type=imasig|modsig"},
      {"appraise func=BPRM_CHECK appraise_flag=check_blacklist", 26, "appraise_flag=check_blacklist",
       "appraise_flag=check_blacklist is allowed only with func=MODULE_CHECK"},
      {"measure func=MODULE_CHECK digest_type=verity", 27, "digest_type=verity",
       "digest_type=verity is not allowed with func=MODULE_CHECK"},
      {"appraise appraise_type=sigv3", 10, "appraise_type=sigv3", "requires digest_type=verity before it"},
      {"appraise appraise_type=sigv3 digest_type=verity", 30, "digest_type=verity",
       "must come before 'appraise_type=sigv3'"},
      {"appraise digest_type=verity appraise_type=imasig", 29, "appraise_type=imasig",
       "cannot be combined with digest_type=verity"},
      {"appraise digest_type=verity", 10, "digest_type=verity", "must require a signature"},
  };
  for (const auto& c : cases) expect_single_error(c);
}

TEST(PolicyErrors, CharactersAndLength) {
  expect_single_error({"measure func=FILE_CHECK\r", 24, "\\r", "carriage return"});
  expect_single_error({std::string("measure\0func=FILE_CHECK", 23), 8, "\\0", "NUL byte"});

  std::string long_line = "measure fsname=" + std::string(4100, 'x');
  ParsedPolicy parsed = parse(long_line);
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].column, 1u);
  EXPECT_NE(parsed.errors[0].message.find("at most 4095 bytes"), std::string::npos);
  EXPECT_TRUE(parse("measure fsname=" + std::string(4080, 'x')).ok());
}

TEST(PolicyErrors, EmptyPolicy) {
  for (std::string text : {"", "\n\n", "# only comments\n  # and more\n"}) {
    SCOPED_TRACE(text);
    ParsedPolicy parsed = parse(text);
    ASSERT_EQ(parsed.errors.size(), 1u);
    EXPECT_EQ(parsed.errors[0].line, 1u);
    EXPECT_NE(parsed.errors[0].message.find("policy has no rules"), std::string::npos);
  }
}

TEST(PolicyErrors, EveryErrorOfEveryLine) {
  ParsedPolicy parsed = parse(
      "measure func=BPRM_CHECK mask=MAY_EXEC\n"
      "measure func=FOO pcr=99\n"
      "# comment\n"
      "\n"
      "dont_measure pcr=3\n"
      "measure func=MMAP_CHECK\n");
  ASSERT_EQ(parsed.errors.size(), 3u) << errors_text(parsed);
  EXPECT_EQ(parsed.errors[0].line, 2u);
  EXPECT_EQ(parsed.errors[0].column, 9u);
  EXPECT_EQ(parsed.errors[0].token, "func=FOO");
  EXPECT_EQ(parsed.errors[1].line, 2u);
  EXPECT_EQ(parsed.errors[1].column, 18u);
  EXPECT_EQ(parsed.errors[1].token, "pcr=99");
  EXPECT_EQ(parsed.errors[2].line, 5u);
  EXPECT_EQ(parsed.errors[2].column, 14u);
  EXPECT_EQ(parsed.errors[2].token, "pcr=3");
  // The whole policy is rejected, not only the invalid lines.
  EXPECT_TRUE(parsed.policy.rules.empty());
  EXPECT_TRUE(parsed.policy.rule_lines.empty());
}

TEST(PolicyErrors, TemplateListedOnce) {
  ParsedPolicy parsed = parse("measure template=foo");
  ASSERT_EQ(parsed.errors.size(), 1u) << errors_text(parsed);
  const std::string& message = parsed.errors[0].message;
  size_t first = message.find("ima-sigv2");
  ASSERT_NE(first, std::string::npos) << message;
  EXPECT_EQ(message.find("ima-sigv2", first + 1), std::string::npos) << message;
}

TEST(PolicyErrors, BinaryBytesAreEscaped) {
  std::string binary = "\x1b[2J\x01\xff";
  ParsedPolicy parsed = parse("measure " + binary + " func=" + binary + "\n");
  ASSERT_EQ(parsed.errors.size(), 2u) << errors_text(parsed);
  EXPECT_EQ(parsed.errors[0].token, binary);
  EXPECT_NE(parsed.errors[0].message.find("unknown keyword '\\x1b[2J\\x01\\xff'"), std::string::npos)
      << parsed.errors[0].message;
  EXPECT_NE(parsed.errors[1].message.find("unknown func '\\x1b[2J\\x01\\xff' in 'func=\\x1b[2J\\x01\\xff'"),
            std::string::npos)
      << parsed.errors[1].message;
  for (const auto& error : parsed.errors) {
    std::string text = format_diagnostic(error);
    for (char c : text) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << text;
  }
}

TEST(PolicyErrors, LongTokenIsCut) {
  std::string token(500, 'q');
  ParsedPolicy parsed = parse("measure " + token + "\n");
  ASSERT_EQ(parsed.errors.size(), 1u) << errors_text(parsed);
  EXPECT_EQ(parsed.errors[0].token, token);
  EXPECT_NE(parsed.errors[0].message.find("'" + std::string(80, 'q') + "...'"), std::string::npos)
      << parsed.errors[0].message;
  EXPECT_EQ(parsed.errors[0].message.find(std::string(81, 'q')), std::string::npos) << parsed.errors[0].message;
}

TEST(PolicyErrors, SeveralRuleErrorsInOneLine) {
  ParsedPolicy parsed = parse("dont_appraise func=SETXATTR_CHECK");
  ASSERT_EQ(parsed.errors.size(), 2u) << errors_text(parsed);
  EXPECT_EQ(parsed.errors[0].column, 1u);
  EXPECT_NE(parsed.errors[0].message.find("must be appraise rules"), std::string::npos);
  EXPECT_EQ(parsed.errors[1].column, 15u);
  EXPECT_NE(parsed.errors[1].message.find("need appraise_algos="), std::string::npos);
}

TEST(PolicyErrors, FormatDiagnostic) {
  ParsedPolicy parsed = parse_policy("\nmeasure pcr=99\n", "/etc/imarotd/policy");
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(format_diagnostic(parsed.errors[0]),
            "/etc/imarotd/policy:2:9: invalid pcr '99' in 'pcr=99'; expected a decimal register index from 0 to 63");
}

TEST(PolicyErrors, LoadPolicyJoinsErrors) {
  auto loaded = load_policy("measure pcr=99\nmeasure func=FOO\n", "p");
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find("p:1:9: invalid pcr"), std::string::npos);
  EXPECT_NE(loaded.error().message.find("\np:2:9: unknown func 'FOO'"), std::string::npos);

  auto good = load_policy("measure func=BPRM_CHECK\n", "p");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->rules.size(), 1u);
}

// ---------------------------------------------------------------------------
// Warnings: valid rules that do not do what their text suggests.

std::vector<std::string> warning_messages(const ParsedPolicy& parsed) {
  std::vector<std::string> out;
  for (const auto& warning : parsed.warnings) out.push_back(format_diagnostic(warning));
  return out;
}

TEST(PolicyWarnings, AppraiseRulesAreUnsupported) {
  ParsedPolicy parsed = parse("measure func=BPRM_CHECK\nappraise func=MODULE_CHECK appraise_type=imasig\n");
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed.warnings.size(), 1u);
  EXPECT_EQ(parsed.warnings[0].line, 2u);
  EXPECT_EQ(parsed.warnings[0].column, 1u);
  EXPECT_EQ(parsed.warnings[0].token, "appraise");
  EXPECT_NE(parsed.warnings[0].message.find("valid but not supported"), std::string::npos);
  EXPECT_EQ(parsed.policy.rules.size(), 2u);
  EXPECT_EQ(format_diagnostic(parsed.warnings[0]).rfind("test.policy:2:1: warning: ", 0), 0u);
}

TEST(PolicyWarnings, LsmConditionsNeverMatch) {
  ParsedPolicy parsed = parse("measure func=FILE_CHECK obj_type=etc_t");
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed.warnings.size(), 1u);
  EXPECT_EQ(parsed.warnings[0].column, 25u);
  EXPECT_EQ(parsed.warnings[0].token, "obj_type=etc_t");
  EXPECT_NE(parsed.warnings[0].message.find("never matches"), std::string::npos);
}

TEST(PolicyWarnings, UnreachableRules) {
  ParsedPolicy parsed = parse(
      "dont_measure\n"
      "\tmeasure func=BPRM_CHECK\n"
      "measure func=KEY_CHECK\n"
      "audit func=BPRM_CHECK\n");
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed.warnings.size(), 1u) << ::testing::PrintToString(warning_messages(parsed));
  EXPECT_EQ(parsed.warnings[0].line, 2u);
  EXPECT_EQ(parsed.warnings[0].column, 2u);
  EXPECT_EQ(parsed.warnings[0].token, "measure");
  EXPECT_NE(parsed.warnings[0].message.find("'dont_measure' at line 1"), std::string::npos);
}

TEST(PolicyWarnings, OtherWarnings) {
  ParsedPolicy gid = parse("measure func=KEY_CHECK gid=0");
  ASSERT_EQ(gid.warnings.size(), 1u);
  EXPECT_NE(gid.warnings[0].message.find("never compares it"), std::string::npos);

  ParsedPolicy flag = parse("appraise func=MODULE_CHECK appraise_type=imasig|modsig appraise_flag=no_blacklist");
  ASSERT_TRUE(flag.ok()) << errors_text(flag);
  ASSERT_EQ(flag.warnings.size(), 2u);
  EXPECT_EQ(flag.warnings[1].token, "appraise_flag=no_blacklist");
  EXPECT_TRUE(flag.policy.rules[0].check_blacklist);

  ParsedPolicy verity = parse("measure func=BPRM_CHECK digest_type=verity template=ima-ng");
  ASSERT_EQ(verity.warnings.size(), 1u);
  EXPECT_EQ(verity.warnings[0].token, "template=ima-ng");
  EXPECT_TRUE(parse("measure func=BPRM_CHECK digest_type=verity template=ima-ngv2").warnings.empty());
}

// ---------------------------------------------------------------------------
// Matching, one condition at a time.

TEST(PolicyMatch, FuncMustMatch) {
  PolicyRule rule = rule_of("measure func=BPRM_CHECK");
  PolicyQuery query = file_read_query();
  EXPECT_FALSE(rule_matches(rule, query));
  query.func = PolicyFunc::bprm_check;
  EXPECT_TRUE(rule_matches(rule, query));
  query.func = PolicyFunc::creds_check;
  EXPECT_FALSE(rule_matches(rule, query));

  // MMAP_CHECK and MMAP_CHECK_REQPROT are different hooks.
  PolicyQuery mmap = file_read_query();
  mmap.func = PolicyFunc::mmap_check_reqprot;
  EXPECT_FALSE(rule_matches(rule_of("measure func=MMAP_CHECK"), mmap));
  EXPECT_TRUE(rule_matches(rule_of("measure func=MMAP_CHECK_REQPROT"), mmap));
}

TEST(PolicyMatch, MaskEqualsOrContains) {
  struct Case {
    std::string rule;
    uint32_t mask;
    bool matches;
  };
  const std::vector<Case> cases = {
      {"measure mask=MAY_READ", kMayRead, true},
      {"measure mask=MAY_READ", kMayRead | kMayWrite, false},
      {"measure mask=MAY_READ", kMayWrite, false},
      {"measure mask=^MAY_READ", kMayRead, true},
      {"measure mask=^MAY_READ", kMayRead | kMayWrite, true},
      {"measure mask=^MAY_READ", kMayWrite | kMayAppend, false},
      {"measure mask=MAY_EXEC", kMayExec, true},
      {"measure mask=^MAY_APPEND", kMayWrite | kMayAppend, true},
      {"measure mask=MAY_WRITE", kMayWrite, true},
      {"measure mask=MAY_WRITE", 0, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(fmt::format("{} with mask {:#x}", c.rule, c.mask));
    PolicyQuery query = file_read_query();
    query.mask = c.mask;
    EXPECT_EQ(rule_matches(rule_of(c.rule), query), c.matches);
  }
}

TEST(PolicyMatch, Filesystem) {
  PolicyQuery query = file_read_query();
  EXPECT_TRUE(rule_matches(rule_of("measure fsmagic=0xef53"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure fsmagic=0x9fa0"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure fsname=ext4"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure fsname=xfs"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure fsname=ext"), query));

  PolicyRule uuid_rule = rule_of("measure fsuuid=0e5c4d27-3f8b-4a4e-9c1d-2b7a5f6e8d90");
  EXPECT_FALSE(rule_matches(uuid_rule, query));
  query.fsuuid = *uuid_rule.fsuuid;
  EXPECT_TRUE(rule_matches(uuid_rule, query));
  (*query.fsuuid)[15] ^= 1;
  EXPECT_FALSE(rule_matches(uuid_rule, query));

  // A filesystem without a UUID compares as 16 zero bytes.
  PolicyQuery no_uuid = file_read_query();
  EXPECT_TRUE(rule_matches(rule_of("measure fsuuid=00000000-0000-0000-0000-000000000000"), no_uuid));
}

TEST(PolicyMatch, IdOperators) {
  struct Case {
    std::string rule;
    uint32_t id;
    bool matches;
  };
  const std::vector<Case> cases = {
      {"measure uid=1000", 1000, true},  {"measure uid=1000", 999, false},  {"measure uid<1000", 999, true},
      {"measure uid<1000", 1000, false}, {"measure uid>1000", 1001, true},  {"measure uid>1000", 1000, false},
      {"measure uid<0", 0, false},       {"measure uid>0", 4294967295u, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(fmt::format("{} with uid {}", c.rule, c.id));
    PolicyQuery query = with_ids(file_read_query(), c.id, 5, 5);
    EXPECT_EQ(rule_matches(rule_of(c.rule), query), c.matches);
  }
}

TEST(PolicyMatch, EachIdComparesItsOwnField) {
  PolicyQuery query = file_read_query();
  query.uid = 1;
  query.euid = 2;
  query.suid = 3;
  query.gid = 4;
  query.egid = 5;
  query.sgid = 6;
  query.fowner = 7;
  query.fgroup = 8;
  EXPECT_TRUE(rule_matches(rule_of("measure uid=1"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure euid=2"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure gid=4"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure egid=5"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure fowner=7"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure fgroup=8"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure uid=2"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure gid=5"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure fowner=1"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure fgroup=4"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure fowner<8 fgroup>7"), query));
}

TEST(PolicyMatch, EffectiveIdsWithCapabilities) {
  PolicyRule euid_root = rule_of("measure euid=0");
  // A setuid-root program: real uid 1000, effective 0.
  EXPECT_TRUE(rule_matches(euid_root, with_ids(file_read_query(), 1000, 0, 0)));
  // Root that dropped to 1000 but can switch back: only with CAP_SETUID do
  // the saved and real ids count.
  PolicyQuery dropped = with_ids(file_read_query(), 0, 1000, 0);
  EXPECT_FALSE(rule_matches(euid_root, dropped));
  dropped.cap_setuid = true;
  EXPECT_TRUE(rule_matches(euid_root, dropped));
  PolicyQuery saved_only = with_ids(file_read_query(), 1000, 1000, 0);
  saved_only.cap_setuid = true;
  EXPECT_TRUE(rule_matches(euid_root, saved_only));
  saved_only.suid = 1000;
  EXPECT_FALSE(rule_matches(euid_root, saved_only));

  PolicyRule egid_rule = rule_of("measure egid<100");
  PolicyQuery group = file_read_query();
  group.gid = 50;
  group.egid = 500;
  group.sgid = 500;
  EXPECT_FALSE(rule_matches(egid_rule, group));
  group.cap_setuid = true;  // CAP_SETUID does not count for group ids.
  EXPECT_FALSE(rule_matches(egid_rule, group));
  group.cap_setgid = true;
  EXPECT_TRUE(rule_matches(egid_rule, group));
}

TEST(PolicyMatch, LsmRulesNeverMatch) {
  PolicyQuery query = file_read_query();
  EXPECT_FALSE(rule_matches(rule_of("measure subj_type=unconfined_t"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure func=FILE_CHECK obj_user=system_u"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure func=FILE_CHECK"), query));
}

TEST(PolicyMatch, KeyringsOfKeyCheck) {
  PolicyQuery query;
  query.func = PolicyFunc::key_check;
  query.func_data = ".ima";

  EXPECT_TRUE(rule_matches(rule_of("measure func=KEY_CHECK"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure func=KEY_CHECK keyrings=.builtin_trusted_keys|.ima"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure func=KEY_CHECK keyrings=.evm"), query));
  // Only rules that name the hook match buffer events.
  EXPECT_FALSE(rule_matches(rule_of("measure"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure func=CRITICAL_DATA"), query));

  EXPECT_TRUE(rule_matches(rule_of("measure func=KEY_CHECK uid=0"), query));
  query.uid = 1000;
  EXPECT_FALSE(rule_matches(rule_of("measure func=KEY_CHECK uid=0"), query));
  // gid= is accepted but, as in the kernel, not compared.
  EXPECT_TRUE(rule_matches(rule_of("measure func=KEY_CHECK gid=12345"), query));

  PolicyQuery no_name = query;
  no_name.func_data.reset();
  EXPECT_FALSE(rule_matches(rule_of("measure func=KEY_CHECK keyrings=.ima"), no_name));
  EXPECT_TRUE(rule_matches(rule_of("measure func=KEY_CHECK"), no_name));
}

TEST(PolicyMatch, LabelsOfCriticalData) {
  PolicyQuery query;
  query.func = PolicyFunc::critical_data;
  query.func_data = "selinux";
  EXPECT_TRUE(rule_matches(rule_of("measure func=CRITICAL_DATA"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure func=CRITICAL_DATA label=kernel_info|selinux"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure func=CRITICAL_DATA label=kernel_info"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure func=KEY_CHECK"), query));
}

TEST(PolicyMatch, KexecCmdlineMatchesRulesWithoutFunc) {
  PolicyQuery query;
  query.func = PolicyFunc::kexec_cmdline;
  query.fsmagic = kExt4Magic;
  EXPECT_TRUE(rule_matches(rule_of("measure"), query));
  EXPECT_TRUE(rule_matches(rule_of("measure func=KEXEC_CMDLINE"), query));
  EXPECT_FALSE(rule_matches(rule_of("measure func=KEXEC_CMDLINE fsmagic=0x9fa0"), query));
}

// ---------------------------------------------------------------------------
// First match per action class.

TEST(PolicyFirstMatch, DontMeasureBeforeMeasure) {
  Policy policy = policy_of(
      "dont_measure fsmagic=0x1021994\n"
      "measure func=FILE_CHECK\n");
  PolicyQuery query = file_read_query();
  PolicyDecision decision = match_policy(policy, query);
  EXPECT_TRUE(decision.measure);
  EXPECT_EQ(decision.deciding_rule[static_cast<size_t>(ActionClass::measure)], 1u);

  query.fsmagic = kTmpfsMagic;
  decision = match_policy(policy, query);
  EXPECT_FALSE(decision.measure);
  EXPECT_EQ(decision.deciding_rule[static_cast<size_t>(ActionClass::measure)], 0u);
}

TEST(PolicyFirstMatch, PcrAndTemplateOfFirstMeasureRule) {
  Policy policy = policy_of(
      "measure func=FILE_CHECK uid=0 pcr=11 template=ima-sig\n"
      "measure func=FILE_CHECK pcr=12 template=ima-ng\n"
      "measure pcr=13\n");
  PolicyDecision root = match_policy(policy, file_read_query());
  EXPECT_TRUE(root.measure);
  EXPECT_EQ(root.pcr, 11u);
  ASSERT_NE(root.tmpl, nullptr);
  EXPECT_EQ(root.tmpl->name, "ima-sig");

  PolicyDecision user = match_policy(policy, with_ids(file_read_query(), 1000, 1000, 1000));
  EXPECT_EQ(user.pcr, 12u);
  ASSERT_NE(user.tmpl, nullptr);
  EXPECT_EQ(user.tmpl->name, "ima-ng");

  PolicyQuery exec = file_read_query();
  exec.func = PolicyFunc::bprm_check;
  PolicyDecision other = match_policy(policy, exec);
  EXPECT_EQ(other.pcr, 13u);
  EXPECT_EQ(other.tmpl, nullptr);
}

TEST(PolicyFirstMatch, ClassesAreDecidedIndependently) {
  Policy policy = policy_of(
      "audit func=BPRM_CHECK\n"
      "dont_measure fsmagic=0x9fa0\n"
      "measure func=BPRM_CHECK\n"
      "dont_audit\n"
      "hash func=BPRM_CHECK\n"
      "audit\n");
  PolicyQuery exec = file_read_query();
  exec.func = PolicyFunc::bprm_check;
  PolicyDecision decision = match_policy(policy, exec);
  EXPECT_TRUE(decision.measure);
  EXPECT_TRUE(decision.audit);
  EXPECT_TRUE(decision.hash);
  EXPECT_FALSE(decision.appraise);
  EXPECT_EQ(decision.deciding_rule[static_cast<size_t>(ActionClass::audit)], 0u);
  EXPECT_EQ(decision.deciding_rule[static_cast<size_t>(ActionClass::measure)], 2u);
  EXPECT_EQ(decision.deciding_rule[static_cast<size_t>(ActionClass::hash)], 4u);
  EXPECT_FALSE(decision.deciding_rule[static_cast<size_t>(ActionClass::appraise)].has_value());

  // The first audit-class rule that matches a read is dont_audit.
  PolicyDecision read = match_policy(policy, file_read_query());
  EXPECT_FALSE(read.audit);
  EXPECT_EQ(read.deciding_rule[static_cast<size_t>(ActionClass::audit)], 3u);

  exec.fsmagic = kProcMagic;
  PolicyDecision proc = match_policy(policy, exec);
  EXPECT_FALSE(proc.measure);
  EXPECT_TRUE(proc.audit);
}

TEST(PolicyFirstMatch, AppraiseRuleIsReportedAndClearsHash) {
  Policy policy = policy_of(
      "hash func=MODULE_CHECK\n"
      "appraise func=MODULE_CHECK appraise_type=imasig\n"
      "measure func=MODULE_CHECK\n");
  PolicyQuery module;
  module.func = PolicyFunc::module_check;
  PolicyDecision decision = match_policy(policy, module);
  EXPECT_TRUE(decision.appraise);
  EXPECT_FALSE(decision.hash);
  EXPECT_TRUE(decision.measure);
  EXPECT_EQ(decision.deciding_rule[static_cast<size_t>(ActionClass::appraise)], 1u);

  // A hash rule after the appraise rule decides the hash class afterwards.
  Policy later = policy_of(
      "appraise func=MODULE_CHECK appraise_type=imasig\n"
      "hash func=MODULE_CHECK\n");
  EXPECT_TRUE(match_policy(later, module).hash);

  Policy dont = policy_of("dont_appraise func=MODULE_CHECK\nhash\n");
  PolicyDecision dont_decision = match_policy(dont, module);
  EXPECT_FALSE(dont_decision.appraise);
  EXPECT_TRUE(dont_decision.hash);
}

TEST(PolicyFirstMatch, RequestedClassesOnly) {
  Policy policy = policy_of("audit\nmeasure\n");
  PolicyQuery query = file_read_query();
  query.classes.audit = false;
  PolicyDecision decision = match_policy(policy, query);
  EXPECT_FALSE(decision.audit);
  EXPECT_TRUE(decision.measure);
  EXPECT_FALSE(decision.deciding_rule[static_cast<size_t>(ActionClass::audit)].has_value());
}

TEST(PolicyFirstMatch, DirectioAndVerityFromAnyConsideredRule) {
  Policy policy = policy_of(
      "audit func=FILE_CHECK permit_directio\n"
      "dont_hash func=FILE_CHECK digest_type=verity\n"
      "measure func=FILE_CHECK\n"
      "measure permit_directio\n");
  PolicyDecision decision = match_policy(policy, file_read_query());
  EXPECT_TRUE(decision.measure);
  EXPECT_TRUE(decision.permit_directio);
  EXPECT_EQ(decision.digest_type, PolicyDigestType::verity);

  // A rule of an already decided class is not considered.
  Policy skipped = policy_of("measure func=FILE_CHECK\nmeasure permit_directio digest_type=verity\n");
  PolicyDecision skipped_decision = match_policy(skipped, file_read_query());
  EXPECT_FALSE(skipped_decision.permit_directio);
  EXPECT_EQ(skipped_decision.digest_type, PolicyDigestType::ima);
}

// ---------------------------------------------------------------------------
// Built-in policies.

constexpr std::string_view kDontMeasurePrefix =
    "dont_measure fsmagic=0x9fa0\n"
    "dont_measure fsmagic=0x62656572\n"
    "dont_measure fsmagic=0x64626720\n"
    "dont_measure fsmagic=0x01021994\n"
    "dont_measure fsmagic=0x1cd1\n"
    "dont_measure fsmagic=0x42494e4d\n"
    "dont_measure fsmagic=0x73636673\n"
    "dont_measure fsmagic=0xf97cff8c\n"
    "dont_measure fsmagic=0x43415d53\n"
    "dont_measure fsmagic=0x27e0eb\n"
    "dont_measure fsmagic=0x63677270\n"
    "dont_measure fsmagic=0x6e736673\n"
    "dont_measure fsmagic=0xde5e81e4\n";

TEST(PolicyBuiltin, TcbMatchesKernelList) {
  std::string expected = std::string(kDontMeasurePrefix) +
                         "measure func=MMAP_CHECK mask=MAY_EXEC\n"
                         "measure func=BPRM_CHECK mask=MAY_EXEC\n"
                         "measure func=FILE_CHECK mask=^MAY_READ euid=0\n"
                         "measure func=FILE_CHECK mask=^MAY_READ uid=0\n"
                         "measure func=MODULE_CHECK\n"
                         "measure func=FIRMWARE_CHECK\n"
                         "measure func=POLICY_CHECK\n";
  auto tcb = builtin_policy("tcb");
  ASSERT_TRUE(tcb) << tcb.error().message;
  EXPECT_EQ(tcb->source, "builtin:tcb");
  ASSERT_EQ(tcb->rules.size(), 20u);
  EXPECT_EQ(tcb->rules, policy_of(expected).rules);

  auto text = builtin_policy_text("tcb");
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, format_policy(*tcb));
}

TEST(PolicyBuiltin, TcbDecisions) {
  auto tcb = builtin_policy("tcb");
  ASSERT_TRUE(tcb);

  PolicyQuery exec = with_ids(file_read_query(), 1000, 1000, 1000);
  exec.func = PolicyFunc::bprm_check;
  exec.mask = kMayExec;
  EXPECT_TRUE(match_policy(*tcb, exec).measure);

  PolicyQuery mmap = exec;
  mmap.func = PolicyFunc::mmap_check;
  EXPECT_TRUE(match_policy(*tcb, mmap).measure);

  EXPECT_TRUE(match_policy(*tcb, file_read_query()).measure);
  PolicyQuery read_write = file_read_query();
  read_write.mask = kMayRead | kMayWrite;
  EXPECT_TRUE(match_policy(*tcb, read_write).measure);
  PolicyQuery write_only = file_read_query();
  write_only.mask = kMayWrite;
  EXPECT_FALSE(match_policy(*tcb, write_only).measure);

  EXPECT_FALSE(match_policy(*tcb, with_ids(file_read_query(), 1000, 1000, 1000)).measure);
  EXPECT_TRUE(match_policy(*tcb, with_ids(file_read_query(), 1000, 0, 1000)).measure);

  PolicyQuery proc = file_read_query();
  proc.fsmagic = kProcMagic;
  EXPECT_FALSE(match_policy(*tcb, proc).measure);

  PolicyQuery module;
  module.func = PolicyFunc::module_check;
  EXPECT_TRUE(match_policy(*tcb, module).measure);
  PolicyQuery key;
  key.func = PolicyFunc::key_check;
  EXPECT_FALSE(match_policy(*tcb, key).measure);
}

TEST(PolicyBuiltin, OriginalTcb) {
  auto original = builtin_policy("ima_tcb");
  ASSERT_TRUE(original);
  std::string expected = std::string(kDontMeasurePrefix) +
                         "measure func=MMAP_CHECK mask=MAY_EXEC\n"
                         "measure func=BPRM_CHECK mask=MAY_EXEC\n"
                         "measure func=FILE_CHECK mask=MAY_READ uid=0\n"
                         "measure func=MODULE_CHECK\n"
                         "measure func=FIRMWARE_CHECK\n";
  EXPECT_EQ(original->rules, policy_of(expected).rules);
}

TEST(PolicyBuiltin, AppraisePolicies) {
  auto secure_boot = builtin_policy_text("secure_boot");
  ASSERT_TRUE(secure_boot);
  EXPECT_EQ(*secure_boot,
            "appraise func=MODULE_CHECK appraise_type=imasig\n"
            "appraise func=FIRMWARE_CHECK appraise_type=imasig\n"
            "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig\n"
            "appraise func=POLICY_CHECK appraise_type=imasig\n");

  const std::string dont_appraise =
      "dont_appraise fsmagic=0x9fa0\n"
      "dont_appraise fsmagic=0x62656572\n"
      "dont_appraise fsmagic=0x64626720\n"
      "dont_appraise fsmagic=0x1021994\n"
      "dont_appraise fsmagic=0x858458f6\n"
      "dont_appraise fsmagic=0x1cd1\n"
      "dont_appraise fsmagic=0x42494e4d\n"
      "dont_appraise fsmagic=0x73636673\n"
      "dont_appraise fsmagic=0xf97cff8c\n"
      "dont_appraise fsmagic=0x43415d53\n"
      "dont_appraise fsmagic=0x6e736673\n"
      "dont_appraise fsmagic=0xde5e81e4\n"
      "dont_appraise fsmagic=0x27e0eb\n"
      "dont_appraise fsmagic=0x63677270\n";
  EXPECT_EQ(*builtin_policy_text("appraise_tcb"),
            dont_appraise + "appraise func=POLICY_CHECK appraise_type=imasig\nappraise fowner=0\n");
  BuiltinPolicyOptions options;
  options.write_policy = false;
  options.appraise_signed_init = true;
  EXPECT_EQ(*builtin_policy_text("appraise_tcb", options), dont_appraise + "appraise fowner=0 appraise_type=imasig\n");

  // Appraise rules parse and stay in the policy; each is reported.
  ParsedPolicy parsed = parse_policy(*builtin_policy_text("appraise_tcb"), "builtin");
  ASSERT_TRUE(parsed.ok()) << errors_text(parsed);
  EXPECT_EQ(parsed.policy.rules.size(), 16u);
  EXPECT_EQ(parsed.warnings.size(), 16u);
}

TEST(PolicyBuiltin, AssemblyOrder) {
  auto text = builtin_policy_text("critical_data|appraise_tcb secure_boot|tcb");
  ASSERT_TRUE(text);
  auto tcb = builtin_policy_text("tcb");
  auto secure_boot = builtin_policy_text("secure_boot");
  auto appraise_tcb = builtin_policy_text("appraise_tcb");
  auto critical_data = builtin_policy_text("critical_data");
  EXPECT_EQ(*critical_data, "measure func=CRITICAL_DATA\n");
  EXPECT_EQ(*text, *tcb + *secure_boot + *appraise_tcb + *critical_data);
  EXPECT_TRUE(builtin_policy("critical_data|appraise_tcb secure_boot|tcb"));
}

TEST(PolicyBuiltin, BadNames) {
  auto unknown = builtin_policy_text("tbc");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown built-in policy 'tbc'"), std::string::npos);
  EXPECT_FALSE(builtin_policy_text(""));
  EXPECT_FALSE(builtin_policy_text("|"));
  EXPECT_FALSE(builtin_policy_text("tcb|ima_tcb"));
  EXPECT_FALSE(builtin_policy_text("fail_securely"));
  EXPECT_EQ(builtin_policy_names().size(), 5u);
  for (std::string_view name : builtin_policy_names()) EXPECT_TRUE(builtin_policy(name)) << name;
}

TEST(PolicyBuiltin, DefaultConfigEqualsTcb) {
  std::string path = std::string(IMAROT_TEST_DATA_DIR) + "/../../config/imarotd.policy";
  std::string text = test::read_text(path);
  ASSERT_FALSE(text.empty()) << path;
  ParsedPolicy parsed = parse_policy(text, path);
  ASSERT_TRUE(parsed.ok()) << errors_text(parsed);
  EXPECT_TRUE(parsed.warnings.empty());
  auto tcb = builtin_policy("tcb");
  ASSERT_TRUE(tcb);
  EXPECT_EQ(parsed.policy.rules, tcb->rules);
}

// ---------------------------------------------------------------------------
// Printing: text -> rules -> text.

TEST(PolicyPrint, CanonicalForms) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"measure func=PATH_CHECK", "measure func=FILE_CHECK"},
      {"measure func=FILE_MMAP mask=MAY_EXEC", "measure func=MMAP_CHECK mask=MAY_EXEC"},
      {"dont_measure fsmagic=01021994", "dont_measure fsmagic=0x1021994"},
      {"dont_measure fsmagic=0XDE5E81E4", "dont_measure fsmagic=0xde5e81e4"},
      {"measure uid=+007", "measure uid=7"},
      {"measure pcr=+010", "measure pcr=10"},
      {"measure fsuuid=0E5C4D27-3F8B-4A4E-9C1D-2B7A5F6E8D90", "measure fsuuid=0e5c4d27-3f8b-4a4e-9c1d-2b7a5f6e8d90"},
      {"measure template=ima-sig uid=0 mask=^MAY_READ func=FILE_CHECK",
       "measure func=FILE_CHECK mask=^MAY_READ uid=0 template=ima-sig"},
      {"measure template=d-ng|n-ng|sig", "measure template=ima-sig"},
      {"appraise appraise_algos=sha512,sha1,sha256 func=SETXATTR_CHECK",
       "appraise func=SETXATTR_CHECK appraise_algos=sha1,sha256,sha512"},
      {"appraise func=MODULE_CHECK appraise_flag=blacklist appraise_type=imasig|modsig",
       "appraise func=MODULE_CHECK appraise_type=imasig|modsig appraise_flag=check_blacklist"},
      {"measure\tfunc=BPRM_CHECK   permit_directio", "measure func=BPRM_CHECK permit_directio"},
  };
  for (const auto& [input, expected] : cases) {
    SCOPED_TRACE(input);
    EXPECT_EQ(format_rule(rule_of(input)), expected);
  }
}

TEST(PolicyPrint, RoundTrip) {
  const std::string text =
      "# a policy that uses every keyword\n"
      "dont_measure fsmagic=0x9fa0\n"
      "dont_measure fsname=tmpfs\n"
      "measure func=BPRM_CHECK mask=MAY_EXEC fsuuid=0e5c4d27-3f8b-4a4e-9c1d-2b7a5f6e8d90 pcr=11 template=ima-sig\n"
      "measure func=MMAP_CHECK_REQPROT mask=^MAY_EXEC euid<1000 egid>0 fowner=0 fgroup<10\n"
      "measure func=FILE_CHECK mask=^MAY_READ uid>999 gid=100 permit_directio digest_type=verity "
      "template=ima-ngv2\n"
      "measure func=CREDS_CHECK obj_user=u obj_role=r obj_type=t subj_user=su subj_role=sr subj_type=st\n"
      "measure func=KEXEC_CMDLINE pcr=12 template=ima-buf\n"
      "measure func=KEY_CHECK keyrings=.ima|.evm uid=0 pcr=13\n"
      "dont_measure func=CRITICAL_DATA label=selinux|kernel_info\n"
      "audit func=BPRM_CHECK\n"
      "dont_audit\n"
      "hash func=FILE_CHECK\n"
      "dont_hash fsmagic=0x1021994\n"
      "appraise func=MODULE_CHECK appraise_type=imasig|modsig appraise_flag=check_blacklist\n"
      "appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3 appraise_algos=sha256,sha384\n"
      "appraise func=SETXATTR_CHECK appraise_algos=sha256\n"
      "dont_appraise fsmagic=0x62656572\n"
      "measure template=d-ng|n-ng|iuid|igid|imode\n";
  Policy first = policy_of(text);
  ASSERT_EQ(first.rules.size(), 18u);
  std::string printed = format_policy(first);
  Policy second = policy_of(printed);
  EXPECT_EQ(second.rules, first.rules);
  EXPECT_EQ(format_policy(second), printed);
}

TEST(PolicyPrint, RuleTerms) {
  std::vector<PolicyTerm> terms = rule_terms(rule_of("measure uid<5 permit_directio"));
  ASSERT_EQ(terms.size(), 2u);
  EXPECT_EQ(terms[0].key, "uid");
  EXPECT_EQ(terms[0].op, '<');
  EXPECT_EQ(terms[0].value, "5");
  EXPECT_EQ(terms[1].key, "permit_directio");
  EXPECT_EQ(terms[1].op, '\0');
}

// ---------------------------------------------------------------------------
// rotctl policy check, run as a user would.

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class RotctlPolicy : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "rotctl-policy-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  // Runs rotctl with `arguments` (already quoted for the shell) and
  // optionally a file on standard input.
  CommandResult run(const std::string& arguments, const std::string& stdin_path = "/dev/null") {
    std::string out_path = dir_ + "/stdout";
    std::string err_path = dir_ + "/stderr";
    std::string command = fmt::format("'{}' {} <'{}' >'{}' 2>'{}'", ROTCTL_PATH, arguments, stdin_path, out_path,
                                      err_path);
    int status = std::system(command.c_str());
    CommandResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = test::read_text(out_path);
    result.err = test::read_text(err_path);
    return result;
  }

  std::string dir_;
};

TEST_F(RotctlPolicy, GoodFilePrintsRulesWithLines) {
  std::string path = write("good.policy",
                           "# executables\n"
                           "measure func=BPRM_CHECK mask=MAY_EXEC\n"
                           "\n"
                           "dont_measure fsmagic=01021994\n");
  CommandResult result = run("policy check '" + path + "'");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "    2  measure func=BPRM_CHECK mask=MAY_EXEC\n"
            "    4  dont_measure fsmagic=0x1021994\n");
  EXPECT_EQ(result.err, "");
}

TEST_F(RotctlPolicy, TrailingCommentIsOneError) {
  std::string path = write("comment.policy", "measure func=FILE_CHECK # read files\n");
  CommandResult result = run("policy check '" + path + "'");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find(path + ":1:25: '# read files': a comment must be on a line of its own"),
            std::string::npos)
      << result.err;
  EXPECT_EQ(result.err.find("unknown keyword"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find(": 1 error;"), std::string::npos) << result.err;
}

TEST_F(RotctlPolicy, BinaryFileIsNotEchoed) {
  std::string bytes;
  for (int i = 0; i < 512; ++i) bytes.push_back(static_cast<char>((i * 37 + 11) % 256));
  std::string path = write("random.policy", bytes);
  CommandResult result = run("policy check '" + path + "'");
  EXPECT_EQ(result.exit_code, 2);
  for (char c : result.err) {
    ASSERT_TRUE(c == '\n' || (c >= 0x20 && c < 0x7f)) << "byte " << static_cast<int>(static_cast<unsigned char>(c));
  }
  EXPECT_NE(result.err.find("\\x"), std::string::npos) << result.err;
}

TEST_F(RotctlPolicy, GoldenPolicy) {
  CommandResult result = run("policy check '" + test::golden_path("policy") + "'");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("    7  measure func=FILE_CHECK mask=^MAY_READ uid=0 template=ima-sig\n"),
            std::string::npos)
      << result.out;
}

TEST_F(RotctlPolicy, BadFileListsEveryError) {
  std::string path = write("bad.policy",
                           "measure func=BPRM_CHECK\n"
                           "measure func=EXEC_CHECK\n"
                           "dont_measure pcr=10\n");
  CommandResult result = run("policy check '" + path + "'");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.out, "");
  EXPECT_NE(result.err.find(path + ":2:9: unknown func 'EXEC_CHECK' in 'func=EXEC_CHECK'"), std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find(path + ":3:14: 'pcr=10': pcr= is allowed only in measure rules"), std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("2 errors"), std::string::npos) << result.err;
}

TEST_F(RotctlPolicy, StandardInput) {
  std::string path = write("stdin.policy", "measure func=MODULE_CHECK\nmeasure mask=MAY_FOO\n");
  CommandResult result = run("policy check -", path);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("<stdin>:2:9: invalid mask 'MAY_FOO'"), std::string::npos) << result.err;

  std::string good = write("good.policy", "measure func=MODULE_CHECK\n");
  CommandResult ok = run("policy check -", good);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "    1  measure func=MODULE_CHECK\n");
}

TEST_F(RotctlPolicy, WarningsKeepExitZero) {
  std::string path = write("appraise.policy", "appraise func=MODULE_CHECK appraise_type=imasig\n");
  CommandResult result = run("policy check '" + path + "'");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, "    1  appraise func=MODULE_CHECK appraise_type=imasig\n");
  EXPECT_NE(result.err.find(path + ":1:1: warning: 'appraise' rules are valid but not supported"), std::string::npos)
      << result.err;
}

TEST_F(RotctlPolicy, BuiltinPrintsPolicyText) {
  CommandResult result = run("policy check --builtin tcb");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, *builtin_policy_text("tcb"));

  CommandResult both = run("policy check --builtin 'tcb|critical_data'");
  EXPECT_EQ(both.exit_code, 0) << both.err;
  EXPECT_EQ(both.out, *builtin_policy_text("tcb|critical_data"));

  CommandResult unknown = run("policy check --builtin nope");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("unknown built-in policy 'nope'"), std::string::npos) << unknown.err;
}

TEST_F(RotctlPolicy, JsonOutput) {
  std::string path = write("json.policy", "measure func=FILE_CHECK uid<1000 permit_directio\n");
  CommandResult result = run("policy check --json '" + path + "'");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("\"valid\": true"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("\"rule\": \"measure func=FILE_CHECK uid<1000 permit_directio\""), std::string::npos)
      << result.out;
  EXPECT_NE(result.out.find("\"operator\": \"<\""), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("\"line\": 1"), std::string::npos) << result.out;

  std::string bad = write("bad.policy", "measure pcr=99\n");
  CommandResult invalid = run("policy check --json '" + bad + "'");
  EXPECT_EQ(invalid.exit_code, 2);
  EXPECT_NE(invalid.out.find("\"valid\": false"), std::string::npos) << invalid.out;
  EXPECT_NE(invalid.out.find("\"token\": \"pcr=99\""), std::string::npos) << invalid.out;
  EXPECT_NE(invalid.out.find("\"column\": 9"), std::string::npos) << invalid.out;
  EXPECT_NE(invalid.err.find(bad + ":1:9: invalid pcr"), std::string::npos) << invalid.err;
}

TEST_F(RotctlPolicy, UsageErrors) {
  CommandResult neither = run("policy check");
  EXPECT_EQ(neither.exit_code, 2);
  EXPECT_NE(neither.err.find("give either a policy FILE"), std::string::npos) << neither.err;

  std::string path = write("p.policy", "measure\n");
  CommandResult both = run("policy check --builtin tcb '" + path + "'");
  EXPECT_EQ(both.exit_code, 2);

  CommandResult missing = run("policy check '" + dir_ + "/missing.policy'");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("missing.policy"), std::string::npos) << missing.err;

  CommandResult no_subcommand = run("policy");
  EXPECT_EQ(no_subcommand.exit_code, 2);
}

}  // namespace
}  // namespace imarot
