// ByteRegex against glibc: for every supported pattern, search() must give regexec's answer
// (REG_EXTENDED | REG_NOSUB, C locale) on hand-picked, every-single-byte and pseudo-random
// subjects.
#include "input/byte_regex.hpp"

#include <gtest/gtest.h>

#include <regex.h>

#include <clocale>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using trackevent::detail::ByteRegex;

namespace {

struct Glibc {
  regex_t re{};
  bool ok = false;
  explicit Glibc(const std::string& p) {
    ok = regcomp(&re, p.c_str(), REG_EXTENDED | REG_NOSUB) == 0;
  }
  Glibc(const Glibc&) = delete;
  Glibc& operator=(const Glibc&) = delete;
  ~Glibc() {
    if (ok) regfree(&re);
  }
  bool search(const std::string& s) const { return regexec(&re, s.c_str(), 0, nullptr, 0) == 0; }
};

const std::vector<std::string> kSupported = {
    // The bench's.
    "^[a-z]{2}-[A-Z]{2}$",
    "^[0-9]+\\.[0-9]+\\.[0-9]+$",
    "^/api/v[0-9]+/",
    "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$",
    "^x*$",
    // Literals, dot, alternation, groups, quantifiers.
    "abc",
    "a.c",
    ".",
    "a|b|cd",
    "(ab|c)+",
    "^(ab|cd)*$",
    "colou?r",
    "a{3}",
    "^a{2,}$",
    "^a{1,2}b{0,2}$",
    "x(ab){2,3}y",
    "(a*)*b",
    "(a|b)*abb",
    "((a|b)c?)+d",
    "^(a|ab)(c|bcd)(d*)$",
    "[0-9]{2,4}-[0-9]{2}",
    "a.*b",
    "^.{3}$",
    "(a?){3}a{3}",
    "(foo|foobar)baz",
    "a\nb",
    "\xe9+",
    "a]}",
    "^a{255}$",
    // Bracket expressions.
    "[]a]",
    "[^]a]",
    "[-a]",
    "[a-]",
    "^[^a-c]+$",
    "[a-cx-z]{2}",
    "[a\\]+",
    "[.*+?]",
    "[:alpha:]",
    "[a[]",
    "[^\n]+$",
    "[a-c-]",
    "[^-]",
    // Classes (C locale: ASCII).
    "[[:alpha:]]+[[:digit:]]",
    "^[[:alnum:]_]+$",
    "[[:upper:]][[:lower:]]",
    "[[:space:]]",
    "[[:punct:]]",
    "^[[:xdigit:]]{4}$",
    "[[:cntrl:]]",
    "^[[:print:]]*$",
    "[[:graph:]]",
    "[[:blank:]]",
    "[^[:alpha:][:digit:]]",
    // Escapes.
    "\\.\\\\\\*\\+\\?",
    "\\(\\)\\[\\]\\{\\}\\|\\^\\$",
    "a\\/b\\-c",
    "^(\\.|[a-z])+$",
    // Anchors.
    "^$",
    "^",
    "$",
    "a$",
    "^a|b$",
    "(^a|b)c",
    "x(y|$)",
    "$^",
    "(^|/)ab",
    "ab($|/)",
    "^^a$$",
};

// Subjects for every pattern: edge cases, then each single byte.
std::vector<std::string> common_subjects() {
  std::vector<std::string> v = {
      "",          "a",        "ab",     "abc",  "abb",    "aab",       "fr-FR",
      "1.12.3",    "10.1.2.3", "xxxx",   "x",    "colour", "color",     "/api/v1/rows",
      "abcd",      "\n",       "a\nb",   "\na",  "a\n",    "foobarbaz", "foobaz",
      "xababy",    "xaby",     "a.c",    "a]}",  "[a-z]",  "\\",        ".\\*+?",
      "()[]{}|^$", "a/b-c",    "AbCd12", "  \t", "\x7f",   "\xe9\xe9",  "255.255.0.1",
      "1.2.3.4.5", "ab/",      "/ab",    "xy",   "ddd"};
  v.emplace_back(255, 'a');
  v.emplace_back(256, 'a');
  for (int b = 1; b < 256; ++b) v.emplace_back(1, static_cast<char>(b));
  return v;
}

// Deterministic pseudo-random subjects over the pattern's bytes plus a few others.
std::vector<std::string> random_subjects(const std::string& pattern, std::uint32_t seed) {
  std::string alphabet = pattern + "aZ0.-/\n\x80\xff ";
  std::vector<std::string> v;
  std::uint32_t x = seed * 2654435761U + 1;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
  };
  for (int i = 0; i < 300; ++i) {
    std::string s;
    const std::uint32_t len = next() % 14;
    for (std::uint32_t j = 0; j < len; ++j) {
      const char c = alphabet[next() % alphabet.size()];
      if (c != '\0') s.push_back(c);
    }
    v.push_back(std::move(s));
  }
  return v;
}

class ByteRegexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The comparison only holds in the C locale, where the tests run.
    ASSERT_STREQ(std::setlocale(LC_ALL, nullptr), "C");
    ASSERT_EQ(MB_CUR_MAX, 1U);
  }
};

TEST_F(ByteRegexTest, AgreesWithRegexecOnSupportedPatterns) {
  const std::vector<std::string> common = common_subjects();
  std::size_t compared = 0;
  for (std::size_t i = 0; i < kSupported.size(); ++i) {
    const std::string& p = kSupported[i];
    SCOPED_TRACE("pattern /" + p + "/");
    const auto re = ByteRegex::compile(p);
    ASSERT_TRUE(re.has_value());
    const Glibc g(p);
    ASSERT_TRUE(g.ok);
    std::vector<std::string> subjects = random_subjects(p, static_cast<std::uint32_t>(i));
    subjects.insert(subjects.end(), common.begin(), common.end());
    for (const std::string& s : subjects) {
      ASSERT_EQ(re->search(s), g.search(s)) << "subject \"" << s << "\"";
      ++compared;
    }
  }
  EXPECT_GT(compared, 30000U);
}

TEST_F(ByteRegexTest, BenchPatternsAnswerAsExpected) {
  EXPECT_TRUE(ByteRegex::compile("^[a-z]{2}-[A-Z]{2}$")->search("fr-FR"));
  EXPECT_FALSE(ByteRegex::compile("^[a-z]{2}-[A-Z]{2}$")->search("fr-FR\n"));
  EXPECT_TRUE(ByteRegex::compile("^[0-9]+\\.[0-9]+\\.[0-9]+$")->search("1.12.3"));
  EXPECT_FALSE(ByteRegex::compile("^[0-9]+\\.[0-9]+\\.[0-9]+$")->search("1.12"));
  EXPECT_TRUE(ByteRegex::compile("^/api/v[0-9]+/")->search("/api/v1/datasets/123/rows"));
  EXPECT_FALSE(ByteRegex::compile("^/api/v[0-9]+/")->search("x/api/v1/"));
  EXPECT_TRUE(ByteRegex::compile("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$")->search("10.1.2.3"));
  EXPECT_FALSE(ByteRegex::compile("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$")->search("1000.1.2.3"));
  EXPECT_TRUE(ByteRegex::compile("^x*$")->search("xxxx"));
  EXPECT_FALSE(ByteRegex::compile("^x*$")->search("xxyx"));
}

TEST_F(ByteRegexTest, NulEndsTheSubjectAsForRegexec) {
  for (const char* p : {"c", "b$", "^ab$", "a.c", "[^x]c", "^$"}) {
    SCOPED_TRACE(p);
    const auto re = ByteRegex::compile(p);
    ASSERT_TRUE(re.has_value());
    const Glibc g(p);
    ASSERT_TRUE(g.ok);
    for (const std::string& s :
         {std::string("ab\0c", 4), std::string("\0", 1), std::string("abc")}) {
      EXPECT_EQ(re->search(s), g.search(s));
    }
  }
}

TEST_F(ByteRegexTest, RefusesWhatItDoesNotImplement) {
  const std::vector<std::string> refused = {"",
                                            "a|",
                                            "|a",
                                            "()",
                                            "a||b",
                                            "(|a)",
                                            "a**",
                                            "a+?",
                                            "a{2}*",
                                            "*a",
                                            "+a",
                                            "{1}a",
                                            "\\1",
                                            "(a)\\1",
                                            "\\w",
                                            "\\W",
                                            "\\s",
                                            "\\b",
                                            "\\B",
                                            "\\<",
                                            "\\>",
                                            "\\'",
                                            "\\`",
                                            "\\a",
                                            "\\n",
                                            "a\\",
                                            "[[=a=]]",
                                            "[[.a.]]",
                                            "[[:foo:]]",
                                            "[[:alpha:]",
                                            "[\xe9]",
                                            "[a-\xe9]",
                                            "[z-a]",
                                            "[a-c-e]",
                                            "[--a]",
                                            "[[:alpha:]-z]",
                                            "[a-[:digit:]]",
                                            "[a",
                                            "[]",
                                            "a{",
                                            "a{1",
                                            "a{,2}",
                                            "a{0}",
                                            "a{0,0}",
                                            "a{2,1}",
                                            "a{256}",
                                            "a{1,256}",
                                            "a{0001}",
                                            "a)",
                                            "(a",
                                            "((a)",
                                            "^*",
                                            "$+",
                                            "(^a)*",
                                            "(a$)?",
                                            "a^b",
                                            "a$b",
                                            "x*^a",
                                            "$a",
                                            "(a|$)b",
                                            "a(^b)",
                                            "(a|b)*a(a|b){12}",
                                            std::string("a\0b", 3),
                                            std::string("[a\0]", 4)};
  for (const std::string& p : refused) {
    EXPECT_FALSE(ByteRegex::compile(p).has_value()) << "pattern /" << p << "/";
  }
}

TEST_F(ByteRegexTest, StateCapRefusesBlowup) {
  // Remembering the last 13 bytes needs 2^13 states; the last 6 only 2^6.
  EXPECT_FALSE(ByteRegex::compile("(a|b)*a(a|b){12}").has_value());
  const auto small = ByteRegex::compile("(a|b)*a(a|b){5}");
  ASSERT_TRUE(small.has_value());
  EXPECT_LE(small->state_count(), 2048U);
  EXPECT_TRUE(small->search("xxabbbbb"));
  EXPECT_FALSE(small->search("abbbb"));
  // An NFA too large to build is refused too.
  EXPECT_FALSE(ByteRegex::compile("((a{255}){255}){255}").has_value());
}

}  // namespace
