#include "input/catalog.hpp"
#include "input/parse.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

using trackevent::Catalog;
using trackevent::Event;
using trackevent::Limits;
using trackevent::parse_event_line;
using trackevent::ParseOptions;
using trackevent::Rejection;
using trackevent::validate_event;

namespace {

constexpr std::int64_t kNow = 1'795'867'200'123'456LL;  // 2026-11-28T12:00:00.123456Z

// The reason a line is rejected, or "<accepted>".
std::string why(std::string_view line, const ParseOptions& options = {}) {
  const auto r = parse_event_line(line, kNow, options);
  if (const auto* rej = std::get_if<Rejection>(&r)) return rej->reason;
  return "<accepted>";
}

Event ok(std::string_view line, const ParseOptions& options = {}) {
  auto r = parse_event_line(line, kNow, options);
  if (const auto* rej = std::get_if<Rejection>(&r)) {
    ADD_FAILURE() << "rejected: " << rej->reason << "\n  line: " << line;
    return {};
  }
  return std::get<Event>(std::move(r));
}

std::string with_org(std::string_view org) {
  return std::string(R"({"org_id":)") + std::string(org) + R"(,"event_name":"a.b"})";
}
std::string with_user(std::string_view user) {
  return std::string(R"({"org_id":1,"user_id":)") + std::string(user) + R"(,"event_name":"a.b"})";
}
std::string with_meta(std::string_view meta) {
  return std::string(R"({"org_id":1,"event_name":"a.b","metadata":)") + std::string(meta) + "}";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Accepted lines

TEST(ParseLine, FullLine) {
  const Event e = ok(
      R"({"org_id":42,"user_id":7,"event_name":"dataset.uploaded","metadata":{"rows":1200,"ok":true},)"
      R"("occurred_at":"2026-11-28T12:00:00.5Z","event_id":"01890A5D-AC96-774B-BCCE-B302099A8057"})");
  EXPECT_EQ(e.org_id, 42);
  EXPECT_EQ(e.user_id, 7);
  EXPECT_EQ(e.event_name, "dataset.uploaded");
  EXPECT_EQ(e.metadata, R"({"rows":1200,"ok":true})");
  EXPECT_EQ(e.occurred_at_us, 1'795'867'200'500'000LL);
  EXPECT_EQ(e.event_id.to_string(), "01890a5d-ac96-774b-bcce-b302099a8057");
}

TEST(ParseLine, DefaultsAreStamped) {
  const Event e = ok(R"({"org_id":1,"event_name":"user.signed_in"})");
  EXPECT_EQ(e.org_id, 1);
  EXPECT_FALSE(e.user_id);
  EXPECT_EQ(e.metadata, "{}");
  EXPECT_EQ(e.occurred_at_us, kNow);
  EXPECT_EQ(e.event_id.version(), 7);
  EXPECT_EQ(e.event_id.bytes[8] & 0xC0, 0x80);
  std::uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = ms << 8 | e.event_id.bytes[i];
  EXPECT_EQ(ms, static_cast<std::uint64_t>(kNow / 1000));
  // Each line gets its own id.
  EXPECT_NE(ok(R"({"org_id":1,"event_name":"user.signed_in"})").event_id, e.event_id);
}

TEST(ParseLine, NullUserIdIsNoUser) {
  EXPECT_FALSE(ok(with_user("null")).user_id);
  EXPECT_EQ(ok(with_user("9223372036854775807")).user_id, INT64_MAX);
}

TEST(ParseLine, KeyOrderAndWhitespaceDoNotMatter) {
  const Event e =
      ok(" \t{ \"event_name\" : \"a.b\" ,\n \"metadata\" : { \"k\" : [ 1 , 2 , { } ] ,"
         " \"s\" : \"a b\\n\" } , \"org_id\" : 3 } \t");
  EXPECT_EQ(e.org_id, 3);
  EXPECT_EQ(e.metadata, R"({"k":[1,2,{}],"s":"a b\n"})");
}

TEST(ParseLine, MetadataKeepsTextVerbatimButCompact) {
  EXPECT_EQ(
      ok(with_meta(R"({"a":-0.5e+10,"b":"\u00e9\"\\\/","c":null,"d":false,"e":[]})")).metadata,
      R"({"a":-0.5e+10,"b":"\u00e9\"\\\/","c":null,"d":false,"e":[]})");
  EXPECT_EQ(ok(with_meta("{ }")).metadata, "{}");
  EXPECT_EQ(ok(with_meta(R"({ "k" : "q\" x" , "e" : "\\" , "t":"\t " })")).metadata,
            R"({"k":"q\" x","e":"\\","t":"\t "})");
  EXPECT_EQ(ok(with_meta(R"({"utf8":"héllo ✓ 😀"})")).metadata, R"({"utf8":"héllo ✓ 😀"})");
}

TEST(ParseLine, CrlfIsStripped) {
  const Event e = ok("{\"org_id\":1,\"event_name\":\"a.b\"}\r");
  EXPECT_EQ(e.org_id, 1);
}

TEST(ParseLine, ValidSurrogatePairAccepted) {
  EXPECT_EQ(ok(with_meta(R"({"emoji":"\ud83d\ude00","E":"\uD83D\uDE00"})")).metadata,
            R"({"emoji":"\ud83d\ude00","E":"\uD83D\uDE00"})");
}

TEST(ParseLine, EscapedKeysMatch) {
  EXPECT_EQ(ok(R"({"org\u005fid":5,"event_name":"a.b"})").org_id, 5);
}

TEST(ParseLine, EscapedBackslashBeforeU0000IsNotAnEscape) {
  // The string is backslash + "u0000": six ordinary characters.
  EXPECT_EQ(ok(with_meta(R"({"path":"C:\\u0000"})")).metadata, R"({"path":"C:\\u0000"})");
}

TEST(ParseLine, CatalogAcceptsKnownName) {
  const Catalog c = Catalog::from_json(R"({"events":[{"name":"a.b"},{"name":"x.z"}]})");
  ParseOptions o;
  o.catalog = &c;
  EXPECT_EQ(ok(R"({"org_id":1,"event_name":"x.z"})", o).event_name, "x.z");
}

// With the event's name before its metadata, one walk judges and checks the metadata; with the
// name after it, the parser's scan and then the check run. Either way a line gets the same
// answer: the same stored metadata, or the same reason.
TEST(ParseLine, OnePassSchemaCheckAnswersAsTheTwoPasses) {
  const Catalog c = Catalog::from_json(R"({"events":[{"name":"a.b","metadata":{
      "required":["n"],"properties":{"n":{"type":"integer","maximum":10},
      "s":{"type":"string","pattern":"^x"},"o":{"type":"object"},"l":{"type":"array"}}}}]})");
  ParseOptions o;
  o.catalog = &c;
  o.limits.max_depth = 4;
  o.limits.max_keys = 6;
  const std::vector<std::string> metas = {
      R"({"n":1})",
      R"( { "n" : 1 , "s" : "x y" } )",
      R"({"n":1,"s":"x\u00e9\ud83d\ude00\n"})",
      R"({"n":1,"o":{"a":[1,2.5e3,-0,true,false,null,{"b":"c"}]}})",
      R"({"n":1,"o":{"a":{"b":{}}}})",                   // deeper than --max-depth 4
      R"({"n":1,"o":{"a":1,"b":2,"c":3,"d":4,"e":5}})",  // more keys than --max-keys 6
      R"({"n":01})",
      R"({"n":1,"l":[1,]})",
      R"({"n":1,"l":[tru]})",
      R"({"n":1,"l":[truex]})",
      R"({"n":1,"s":"x\u0000"})",
      R"({"n":1,"s":"x\ud800"})",
      R"({"n":1,"s":"x\udc00y"})",
      R"({"n":1,"s":"x\q"})",
      "{\"n\":1,\"s\":\"x\x01\"}",
      R"({"n":1,"o":{"a":1e400}})",
      R"({"n":1,"o":{"a":123456789012345678901234567890}})",
      R"({"n":1,"o":{"a":-}})",
      R"({"n":1 "s":"x"})",
      R"({"n":1,"s":"y"})",  // a violation
      R"({"n":11})",         // a violation
      R"({"s":"x"})",        // a missing required key
      R"({"n":1,"o":[]})",   // a violation
  };
  for (const std::string& m : metas) {
    // The metadata at the same byte in both, as reasons give byte positions.
    const std::string first = R"({"org_id":1,"event_name":"a.b","metadata":)" + m + "}";
    const std::string last =
        R"({"org_id":1,"user_id":12345678,"metadata":)" + m + R"(,"event_name":"a.b"})";
    const auto a = parse_event_line(first, kNow, o);
    const auto b = parse_event_line(last, kNow, o);
    ASSERT_EQ(a.index(), b.index()) << m;
    if (const auto* ra = std::get_if<Rejection>(&a)) {
      EXPECT_EQ(ra->reason, std::get<Rejection>(b).reason) << m;
    } else {
      EXPECT_EQ(std::get<Event>(a).metadata, std::get<Event>(b).metadata) << m;
    }
  }
  EXPECT_EQ(ok(R"({"org_id":1,"event_name":"a.b","metadata": { "n" : 1 } })", o).metadata,
            R"({"n":1})");
}

// ---------------------------------------------------------------------------------------------
// Whole-line rejections

TEST(ParseLineReject, EmptyAndWhitespace) {
  EXPECT_EQ(why(""), "empty line");
  EXPECT_EQ(why("   \t  "), "empty line");
  EXPECT_EQ(why("\r"), "empty line");
  EXPECT_EQ(why(" \r"), "empty line");
}

TEST(ParseLineReject, NotAnObject) {
  EXPECT_EQ(why("[1,2]"), "expected a JSON object, got an array");
  EXPECT_EQ(why("42"), "expected a JSON object, got a number");
  EXPECT_EQ(why(R"("x")"), "expected a JSON object, got a string");
  EXPECT_EQ(why("null"), "expected a JSON object, got null");
  EXPECT_EQ(why("true"), "expected a JSON object, got a boolean");
}

TEST(ParseLineReject, BrokenJson) {
  for (const char* bad :
       {R"({"org_id":1,"event_name":"a.b")", R"({"org_id":1 "event_name":"a.b"})",
        R"({"org_id":1,,"event_name":"a.b"})", R"({"org_id":1,"event_name":"a.b",})",
        R"({org_id:1})", "{", "}", R"({"org_id":1,"event_name":"a.b)"}) {
    EXPECT_EQ(why(bad).rfind("invalid JSON", 0), 0U) << bad << " -> " << why(bad);
  }
}

TEST(ParseLineReject, TrailingContent) {
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b"}})"),
            "invalid JSON: unexpected '}' after the object at byte 32");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b"} {"org_id":2})").rfind("invalid JSON", 0), 0U);
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b"} x)").rfind("invalid JSON", 0), 0U);
}

TEST(ParseLineReject, NulByte) {
  const std::string line("{\"org_id\":1,\"event_name\":\"a.b\",\"metadata\":{\"k\":\"a\0b\"}}", 52);
  EXPECT_EQ(why(line), "NUL byte at byte 50");
  EXPECT_EQ(why(std::string_view("\0", 1)), "NUL byte at byte 1");
}

TEST(ParseLineReject, InvalidUtf8) {
  EXPECT_EQ(why("{\"org_id\":1,\"event_name\":\"a.b\",\"metadata\":{\"k\":\"\xff\"}}"),
            "invalid UTF-8 at byte 49");
  EXPECT_EQ(why("\xc3\x28"), "invalid UTF-8 at byte 1");
  // Overlong encoding, encoded surrogate, truncated sequence.
  EXPECT_EQ(why(with_meta("{\"k\":\"\xc0\xaf\"}")), "invalid UTF-8 at byte 49");
  EXPECT_EQ(why(with_meta("{\"k\":\"\xed\xa0\x80\"}")), "invalid UTF-8 at byte 49");
  EXPECT_EQ(why(with_meta("{\"k\":\"\xe2\x9c\"}")), "invalid UTF-8 at byte 49");
  EXPECT_EQ(why("\x01\x02\x80\x90 binary"), "invalid UTF-8 at byte 3");
}

TEST(ParseLineReject, ControlCharacterInString) {
  EXPECT_EQ(why(with_meta("{\"k\":\"a\tb\"}")),
            "invalid JSON: a control character in a string must be escaped");
}

TEST(ParseLineReject, LineTooLong) {
  ParseOptions o;
  o.limits.max_line_bytes = 40;
  const std::string line = with_meta(R"({"pad":"xxxxxxxxxxxxxxxxxxxx"})");
  EXPECT_EQ(why(line, o), "line too long: " + std::to_string(line.size()) +
                              " bytes (limit 40, --max-line-bytes)");
  o.limits.max_line_bytes = line.size();
  EXPECT_EQ(why(line, o), "<accepted>");
  EXPECT_EQ(why(line + "\r", o), "<accepted>");  // the CR does not count
}

TEST(ParseLineReject, UnknownAndDuplicateKeys) {
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","foo":1})"), "unknown key 'foo'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","Org_id":1})"), "unknown key 'Org_id'");
  EXPECT_EQ(why(R"({"org_id":1,"org_id":2,"event_name":"a.b"})"), "duplicate key 'org_id'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","event_name":"a.b"})"),
            "duplicate key 'event_name'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","metadata":{},"metadata":{}})"),
            "duplicate key 'metadata'");
  EXPECT_EQ(why(R"({"org_id":1,"org\u005fid":1,"event_name":"a.b"})"), "duplicate key 'org_id'");
  EXPECT_EQ(why("{\"org_id\":1,\"event_name\":\"a.b\",\"x\\ny\":1}"), "unknown key 'x\\x0ay'");
}

// ---------------------------------------------------------------------------------------------
// org_id and user_id

TEST(ParseLineReject, OrgIdMissing) {
  EXPECT_EQ(why(R"({"event_name":"a.b"})"), "org_id: missing (required, an integer >= 1)");
  EXPECT_EQ(why("{}"), "org_id: missing (required, an integer >= 1)");
}

TEST(ParseLineReject, OrgIdWrongTypes) {
  EXPECT_EQ(why(with_org("1.5")),
            "org_id: expected an integer, got a number with a fraction/exponent '1.5'");
  EXPECT_EQ(why(with_org("1e3")),
            "org_id: expected an integer, got a number with a fraction/exponent '1e3'");
  EXPECT_EQ(why(with_org("1.0")),
            "org_id: expected an integer, got a number with a fraction/exponent '1.0'");
  EXPECT_EQ(why(with_org("1e400")),
            "org_id: expected an integer, got a number with a huge exponent '1e400'");
  EXPECT_EQ(why(with_org("-1E-999999999999")),
            "org_id: expected an integer, got a number with a huge exponent '-1E-999999999999'");
  EXPECT_EQ(why(with_org(R"("x")")), "org_id: expected an integer, got a string");
  EXPECT_EQ(why(with_org(R"("42")")),
            "org_id: expected an integer, got a string (write 42 without quotes)");
  EXPECT_EQ(why(with_org("null")), "org_id: expected an integer >= 1, got null");
  EXPECT_EQ(why(with_org("true")), "org_id: expected an integer, got a boolean");
  EXPECT_EQ(why(with_org("false")), "org_id: expected an integer, got a boolean");
  EXPECT_EQ(why(with_org("{}")), "org_id: expected an integer, got an object");
  EXPECT_EQ(why(with_org("[1]")), "org_id: expected an integer, got an array");
}

TEST(ParseLineReject, OrgIdRange) {
  EXPECT_EQ(why(with_org("0")), "org_id: expected an integer >= 1, got 0");
  EXPECT_EQ(why(with_org("-0")), "org_id: expected an integer >= 1, got -0");
  EXPECT_EQ(why(with_org("-5")), "org_id: expected an integer >= 1, got -5");
  EXPECT_EQ(why(with_org("-9223372036854775808")),
            "org_id: expected an integer >= 1, got -9223372036854775808");
  EXPECT_EQ(why(with_org("9223372036854775808")),
            "org_id: integer '9223372036854775808' is out of range (64-bit: "
            "-9223372036854775808 to 9223372036854775807)");
  EXPECT_EQ(why(with_org("99999999999999999999999")),
            "org_id: integer '99999999999999999999999' is out of range (64-bit: "
            "-9223372036854775808 to 9223372036854775807)");
  EXPECT_EQ(why(with_org("-9223372036854775809")),
            "org_id: integer '-9223372036854775809' is out of range (64-bit: "
            "-9223372036854775808 to 9223372036854775807)");
  EXPECT_EQ(ok(with_org("9223372036854775807")).org_id, INT64_MAX);
}

TEST(ParseLineReject, OrgIdBadNumberText) {
  EXPECT_EQ(why(with_org("01")), "org_id: invalid number '01'");
  EXPECT_EQ(why(with_org("1x")), "org_id: invalid number '1x'");
  EXPECT_EQ(why(with_org("-")), "org_id: invalid number '-'");
  EXPECT_EQ(why(with_org("nul")).rfind("org_id: invalid JSON", 0), 0U);
}

TEST(ParseLineReject, UserIdRules) {
  EXPECT_EQ(why(with_user("0")), "user_id: expected an integer >= 1, got 0");
  EXPECT_EQ(why(with_user("-3")), "user_id: expected an integer >= 1, got -3");
  EXPECT_EQ(why(with_user("2.5")),
            "user_id: expected an integer, got a number with a fraction/exponent '2.5'");
  EXPECT_EQ(why(with_user("1e999")),
            "user_id: expected an integer, got a number with a huge exponent '1e999'");
  EXPECT_EQ(why(with_user(R"("7")")),
            "user_id: expected an integer, got a string (write 7 without quotes)");
  EXPECT_EQ(why(with_user("true")), "user_id: expected an integer, got a boolean");
  EXPECT_EQ(why(with_user("{}")), "user_id: expected an integer, got an object");
  EXPECT_EQ(why(with_user("[]")), "user_id: expected an integer, got an array");
  EXPECT_EQ(why(with_user("18446744073709551616")),
            "user_id: integer '18446744073709551616' is out of range (64-bit: "
            "-9223372036854775808 to 9223372036854775807)");
}

// ---------------------------------------------------------------------------------------------
// event_name

TEST(ParseLineReject, EventName) {
  EXPECT_EQ(why(R"({"org_id":1})"), "event_name: missing (required)");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"User.SignedIn"})"),
            "event_name: 'User.SignedIn' is not a valid event name (expected lowercase dotted "
            "words, like 'user.signed_in')");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":""})"),
            "event_name: '' is not a valid event name (expected lowercase dotted words, like "
            "'user.signed_in')");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":5})"), "event_name: expected a string, got a number");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":null})"), "event_name: expected a string, got null");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":["a.b"]})"),
            "event_name: expected a string, got an array");
}

TEST(ParseLineReject, EventNameQuoteIsTruncated) {
  const std::string name = "a." + std::string(300, 'b');
  const std::string r = why(R"({"org_id":1,"event_name":")" + name + "\"}");
  EXPECT_EQ(r, "event_name: '" + name.substr(0, 64) + "...' is 302 bytes long (limit 200)");
  const std::string bad = "Bad." + std::string(100, 'x');
  EXPECT_EQ(why(R"({"org_id":1,"event_name":")" + bad + "\"}"),
            "event_name: '" + bad.substr(0, 64) +
                "...' is not a valid event name (expected lowercase dotted words, like "
                "'user.signed_in')");
  // Cut on a UTF-8 boundary: 63 ASCII bytes then a 2-byte character straddling byte 64.
  const std::string utf = std::string(63, 'X') + "é" + "tail";
  const std::string r2 = why(R"({"org_id":1,"event_name":")" + utf + "\"}");
  EXPECT_NE(r2.find("'" + std::string(63, 'X') + "...'"), std::string::npos) << r2;
}

TEST(ParseLineReject, EventNameNotInCatalog) {
  const Catalog c = Catalog::from_json(
      R"({"events":[{"name":"user.signed_in"},{"name":"x.z"},{"name":"backup.completed"}]})");
  ParseOptions o;
  o.catalog = &c;
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"x.y"})", o),
            "event_name: 'x.y' is not in the catalog; did you mean 'x.z'?");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"user.signedin"})", o),
            "event_name: 'user.signedin' is not in the catalog; did you mean 'user.signed_in'?");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"invoice.paid"})", o),
            "event_name: 'invoice.paid' is not in the catalog");
  // Without a catalog any valid name passes.
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"invoice.paid"})"), "<accepted>");
}

// ---------------------------------------------------------------------------------------------
// metadata

TEST(ParseLineReject, MetadataType) {
  EXPECT_EQ(why(with_meta("[]")), "metadata: expected an object, got an array");
  EXPECT_EQ(why(with_meta("null")), "metadata: expected an object, got null");
  EXPECT_EQ(why(with_meta(R"("{}")")), "metadata: expected an object, got a string");
  EXPECT_EQ(why(with_meta("1")), "metadata: expected an object, got a number");
  EXPECT_EQ(why(with_meta("true")), "metadata: expected an object, got a boolean");
}

TEST(ParseLineReject, MetadataInvalidJsonInside) {
  // simdjson skips metadata lazily; our own scan must still catch what is wrong inside it.
  EXPECT_EQ(why(with_meta(R"({"a":[1,2 3]})")),
            "metadata: invalid JSON: unexpected '3' at byte 53 (expected ',' or ']')");
  EXPECT_EQ(why(with_meta(R"({"a":01})")), "metadata: invalid JSON: bad number '01' at byte 48");
  EXPECT_EQ(why(with_meta(R"({"a":1.})")), "metadata: invalid JSON: bad number '1.' at byte 48");
  EXPECT_EQ(why(with_meta(R"({"a":tru})")), "metadata: invalid JSON: bad literal at byte 48");
  EXPECT_EQ(why(with_meta(R"({"a":truex})")), "metadata: invalid JSON: bad literal at byte 48");
  EXPECT_EQ(why(with_meta(R"({"a" 1})")).rfind("metadata: invalid JSON", 0), 0U);
  EXPECT_EQ(why(with_meta(R"({1:2})")),
            "metadata: invalid JSON: unexpected '1' at byte 44 (expected a key)");
  EXPECT_EQ(why(with_meta(R"({"a":"\x"})")), "metadata: invalid JSON: bad escape '\\x' at byte 49");
  EXPECT_EQ(why(with_meta(R"({"a":"\u12g4"})")),
            "metadata: invalid JSON: bad \\u escape at byte 49");
  EXPECT_EQ(why(with_meta(R"({"a":[1,]})")), "metadata: invalid JSON: unexpected ']' at byte 51");
  EXPECT_EQ(why(with_meta(R"({"a":1,})")),
            "metadata: invalid JSON: unexpected '}' at byte 50 (expected a key)");
}

TEST(ParseLineReject, MetadataNumberOutOfRangeForPostgres) {
  // Boundaries measured against PostgreSQL 15's jsonb input.
  const std::string tail =
      " is out of range for PostgreSQL (at most 131072 digits before the decimal point and 16383 "
      "after)";
  EXPECT_EQ(why(with_meta(R"({"a":1e131072})")), "metadata: number '1e131072' at byte 48" + tail);
  EXPECT_EQ(why(with_meta(R"({"a":1e-16384})")), "metadata: number '1e-16384' at byte 48" + tail);
  EXPECT_EQ(why(with_meta(R"({"a":1.5e-16383})")),
            "metadata: number '1.5e-16383' at byte 48" + tail);
  EXPECT_EQ(why(with_meta(R"({"a":0.1e-16383})")),
            "metadata: number '0.1e-16383' at byte 48" + tail);
  EXPECT_EQ(why(with_meta(R"({"a":0.0e-20000})")),
            "metadata: number '0.0e-20000' at byte 48" + tail);
  EXPECT_EQ(why(with_meta(R"({"a":-1e999999999999})")),
            "metadata: number '-1e999999999999' at byte 48" + tail);
  EXPECT_EQ(why(with_meta(R"({"a":1e131071,"b":1e-16383,"c":0e999999,"d":-0.001e131073})")),
            "<accepted>");
}

TEST(ParseLineReject, MetadataSizeLimit) {
  ParseOptions o;
  o.limits.max_metadata_bytes = 20;
  EXPECT_EQ(why(with_meta(R"({"k":"0123456789abc"})"), o),
            "metadata: 21 bytes (limit 20, --max-metadata-bytes)");
  // The limit applies to the compact form: whitespace does not count.
  EXPECT_EQ(why(with_meta(R"({ "k" : "0123456789ab" })"), o), "<accepted>");
}

TEST(ParseLineReject, DepthLimit) {
  ParseOptions o;
  o.limits.max_depth = 4;  // line object, metadata, two more levels
  EXPECT_EQ(why(with_meta(R"({"a":{"b":[1]}})"), o), "<accepted>");
  EXPECT_EQ(why(with_meta(R"({"a":{"b":[[1]]}})"), o),
            "metadata: nested deeper than 4 levels (--max-depth)");
  // The default limit (64) holds against absurd nesting too.
  std::string deep =
      with_meta(std::string(5000, '[').insert(0, "{\"a\":") + std::string(5000, ']') + "}");
  EXPECT_EQ(why(deep), "metadata: nested deeper than 64 levels (--max-depth)");
}

TEST(ParseLineReject, KeyLimitCountsNestedKeys) {
  ParseOptions o;
  o.limits.max_keys = 3;
  EXPECT_EQ(why(with_meta(R"({"a":1,"b":{"c":2}})"), o), "<accepted>");
  EXPECT_EQ(why(with_meta(R"({"a":1,"b":{"c":2,"d":3}})"), o),
            "metadata: more than 3 keys (--max-keys)");
  EXPECT_EQ(why(with_meta(R"({"a":[{"x":1},{"y":2},{"z":3}]})"), o),
            "metadata: more than 3 keys (--max-keys)");
}

TEST(ParseLineReject, U0000Escape) {
  EXPECT_EQ(why(with_meta(R"({"k":"a\u0000b"})")),
            "\\u0000 escape at byte 50 (PostgreSQL jsonb cannot store NUL characters)");
  EXPECT_EQ(why(with_meta(R"({"k\u0000":1})")),
            "\\u0000 escape at byte 46 (PostgreSQL jsonb cannot store NUL characters)");
  // Anywhere in the line, not only metadata.
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b\u0000"})"),
            "\\u0000 escape at byte 30 (PostgreSQL jsonb cannot store NUL characters)");
}

TEST(ParseLineReject, LoneSurrogates) {
  EXPECT_EQ(why(with_meta(R"({"k":"\ud800"})")),
            "lone surrogate escape \\ud800 at byte 49 (a high surrogate must be followed by a low "
            "one)");
  EXPECT_EQ(why(with_meta(R"({"k":"\uD800x"})")),
            "lone surrogate escape \\uD800 at byte 49 (a high surrogate must be followed by a low "
            "one)");
  EXPECT_EQ(why(with_meta(R"({"k":"\ud800\u0041"})")),
            "lone surrogate escape \\ud800 at byte 49 (a high surrogate must be followed by a low "
            "one)");
  EXPECT_EQ(why(with_meta(R"({"k":"\ud800\ud800"})")),
            "lone surrogate escape \\ud800 at byte 49 (a high surrogate must be followed by a low "
            "one)");
  EXPECT_EQ(why(with_meta(R"({"k":"\udc00"})")),
            "lone surrogate escape \\udc00 at byte 49 (a low surrogate without a high one before "
            "it)");
  EXPECT_EQ(why(with_meta(R"({"k":"\ud83d\ude00\ude00"})")),
            "lone surrogate escape \\ude00 at byte 61 (a low surrogate without a high one before "
            "it)");
}

// ---------------------------------------------------------------------------------------------
// occurred_at and event_id

TEST(ParseLineReject, OccurredAt) {
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","occurred_at":"yesterday"})"),
            "occurred_at: expected an RFC 3339 timestamp like '2026-11-28T12:00:00Z', got "
            "'yesterday'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","occurred_at":"2026-02-30T00:00:00Z"})"),
            "occurred_at: expected an RFC 3339 timestamp like '2026-11-28T12:00:00Z', got "
            "'2026-02-30T00:00:00Z'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","occurred_at":1795867200})"),
            "occurred_at: expected an RFC 3339 timestamp string, got a number");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","occurred_at":null})"),
            "occurred_at: expected an RFC 3339 timestamp string, got null");
  EXPECT_EQ(ok(R"({"org_id":1,"event_name":"a.b","occurred_at":"2026-11-28T13:00:00+01:00"})")
                .occurred_at_us,
            1'795'867'200'000'000LL);
}

TEST(ParseLineReject, EventId) {
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","event_id":"not-a-uuid"})"),
            "event_id: expected a UUID like '01890a5d-ac96-774b-bcce-b302099a8057', got "
            "'not-a-uuid'");
  EXPECT_EQ(
      why(R"({"org_id":1,"event_name":"a.b","event_id":"{01890a5d-ac96-774b-bcce-b302099a8057}"})"),
      "event_id: expected a UUID like '01890a5d-ac96-774b-bcce-b302099a8057', got "
      "'{01890a5d-ac96-774b-bcce-b302099a8057}'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","event_id":7})"),
            "event_id: expected a UUID string, got a number");
  // Any version is accepted with occurred_at (here v4).
  EXPECT_EQ(
      ok(R"({"org_id":1,"event_name":"a.b","event_id":"9b2e4c1a-3f5d-4e8b-9a7c-1d2e3f4a5b6c",)"
         R"("occurred_at":"2026-11-28T12:00:00Z"})")
          .event_id.version(),
      4);
}

// "Stored once": occurred_at is in the key, so an event_id without it must fix its time.
TEST(ParseLine, AUuidV7EventIdWithoutOccurredAtGivesItsTime) {
  // 0x01890a5dac96 ms = 2023-06-30T03:34:18.518Z: the 48-bit timestamp, not the time of parsing.
  const Event e =
      ok(R"({"org_id":1,"event_name":"a.b","event_id":"01890a5d-ac96-774b-bcce-b302099a8057"})");
  EXPECT_EQ(e.occurred_at_us, 0x01890a5dac96LL * 1000);
  EXPECT_NE(e.occurred_at_us, kNow);
  // The same line parsed later is the same event.
  const Event again =
      ok(R"({"org_id":1,"event_name":"a.b","event_id":"01890a5d-ac96-774b-bcce-b302099a8057"})");
  EXPECT_EQ(again.occurred_at_us, e.occurred_at_us);
  EXPECT_EQ(again.event_id, e.event_id);
  // An explicit occurred_at wins over the id's time.
  EXPECT_EQ(
      ok(R"({"org_id":1,"event_name":"a.b","event_id":"01890a5d-ac96-774b-bcce-b302099a8057",)"
         R"("occurred_at":"2026-11-28T12:00:00Z"})")
          .occurred_at_us,
      1'795'867'200'000'000LL);
}

TEST(ParseLineReject, AnEventIdThatIsNotAUuidV7NeedsOccurredAt) {
  const std::string reason =
      "event_id is not a UUIDv7; give occurred_at with it, so a second delivery is recognised as "
      "the same event";
  EXPECT_EQ(
      why(R"({"org_id":1,"event_name":"a.b","event_id":"9b2e4c1a-3f5d-4e8b-9a7c-1d2e3f4a5b6c"})"),
      reason);
  // Version 7 with the wrong variant bits is not a UUIDv7 either.
  EXPECT_EQ(
      why(R"({"org_id":1,"event_name":"a.b","event_id":"01890a5d-ac96-774b-0cce-b302099a8057"})"),
      reason);
}

TEST(ParseLine, NeverThrowsOnGarbage) {
  // A cheap sweep; the fuzzer does the real work.
  std::string line = with_meta(R"({"a":[1,{"b":"\ud83d\ude00"}],"c":"x"})");
  for (std::size_t i = 0; i < line.size(); ++i) {
    for (const char c : {'\0', '"', '\\', '{', '}', '[', ']', ',', ':', 'x', '\xff'}) {
      std::string mutated = line;
      mutated[i] = c;
      (void)why(mutated);
      (void)why(std::string_view(mutated).substr(0, i));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// validate_event

namespace {
Event good_event() {
  Event e;
  e.org_id = 1;
  e.user_id = 2;
  e.event_name = "user.signed_in";
  e.metadata = R"({"a":1})";
  return e;
}
}  // namespace

TEST(ValidateEvent, AcceptsGood) {
  EXPECT_EQ(validate_event(good_event()), "");
  Event e = good_event();
  e.user_id.reset();
  e.metadata = "{ \"x\" : [ 1 , 2 ] }";
  EXPECT_EQ(validate_event(e), "");
}

TEST(ValidateEvent, RejectsEachField) {
  Event e = good_event();
  e.event_name = "Bad";
  EXPECT_EQ(validate_event(e),
            "event_name: 'Bad' is not a valid event name (expected lowercase dotted words, like "
            "'user.signed_in')");
  e = good_event();
  e.org_id = 0;
  EXPECT_EQ(validate_event(e), "org_id: expected an integer >= 1, got 0");
  e = good_event();
  e.user_id = -4;
  EXPECT_EQ(validate_event(e), "user_id: expected an integer >= 1 or none, got -4");
  e = good_event();
  e.metadata = "[]";
  EXPECT_EQ(validate_event(e), "metadata: expected an object");
  e.metadata = "";
  EXPECT_EQ(validate_event(e), "metadata: expected an object");
  e.metadata = R"({"a":1} x)";
  EXPECT_EQ(validate_event(e),
            "metadata: invalid JSON: unexpected 'x' at byte 9 (expected the end of the object)");
  e.metadata = R"({"a":1)";
  EXPECT_EQ(validate_event(e), "metadata: invalid JSON: unexpected end");
  e.metadata = R"({"a":"\u0000"})";
  EXPECT_EQ(validate_event(e),
            "metadata: \\u0000 escape at byte 7 (PostgreSQL jsonb cannot store NUL characters)");
  e.metadata = R"({"a":"\udfff"})";
  EXPECT_EQ(validate_event(e),
            "metadata: lone surrogate escape \\udfff at byte 7 (a low surrogate without a high one "
            "before it)");
  e.metadata = std::string("{\"a\":\"\0\"}", 9);
  EXPECT_EQ(validate_event(e),
            "metadata: invalid JSON: control character '\\x00' in a string must be escaped at "
            "byte 7");
  e.metadata = "{\"a\":\"\xff\"}";
  EXPECT_EQ(validate_event(e), "metadata: invalid UTF-8 at byte 7");
}

TEST(ValidateEvent, Limits) {
  Event e = good_event();
  Limits l;
  l.max_metadata_bytes = 5;
  EXPECT_EQ(validate_event(e, l), "metadata: 7 bytes (limit 5, --max-metadata-bytes)");
  l = Limits{};
  l.max_keys = 0;
  EXPECT_EQ(validate_event(e, l), "metadata: more than 0 keys (--max-keys)");
  l = Limits{};
  l.max_depth = 2;
  e.metadata = R"({"a":{}})";
  EXPECT_EQ(validate_event(e, l), "metadata: nested deeper than 2 levels (--max-depth)");
}

// Found by the fuzzer: with --max-depth 1 a line without metadata was accepted, then its default
// `{}` failed validate_event's depth check. Depth limits below 2 now mean 2 in both.
TEST(ParseRegression, DepthLimitBelowTwoKeepsParseAndValidateInAgreement) {
  ParseOptions options;
  options.limits.max_depth = 1;
  const auto result = parse_event_line(R"({"org_id":105,"event_name":"a.b"})", 1, options);
  ASSERT_TRUE(std::holds_alternative<Event>(result));
  EXPECT_EQ(validate_event(std::get<Event>(result), options.limits), "");
  const auto nested =
      parse_event_line(R"({"org_id":1,"event_name":"a.b","metadata":{"x":{}}})", 1, options);
  ASSERT_TRUE(std::holds_alternative<Rejection>(nested));
  EXPECT_NE(std::get<Rejection>(nested).reason.find("nested deeper than 2"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Edge cases of the metadata scanner's fast paths: strings are skipped 8 bytes at a time, plain
// integers skip the full number grammar, containers are tracked in a bit stack up to 64 levels.

namespace {
// `len` bytes of 'a' with `x` inserted at `at`.
std::string padded(std::size_t len, std::size_t at, std::string_view x) {
  std::string s(at, 'a');
  s += x;
  s.append(len - at, 'a');
  return s;
}
}  // namespace

TEST(ParseScanner, EscapesAtEveryWordBoundary) {
  for (std::size_t len = 0; len <= 25; ++len) {
    for (std::size_t at = 0; at <= len; ++at) {
      for (const char* esc : {R"(\")", R"(\\)", R"(\n)", R"(\/)", R"(\u00e9)", R"(\ud83d\ude00)"}) {
        const std::string meta = R"({"k":")" + padded(len, at, esc) + "\"}";
        EXPECT_EQ(ok(with_meta(meta)).metadata, meta) << meta;
        EXPECT_EQ(validate_event([&] {
                    Event e;
                    e.org_id = 1;
                    e.event_name = "a.b";
                    e.metadata = meta;
                    return e;
                  }()),
                  "")
            << meta;
      }
      // Keys go through the same scan.
      const std::string key_meta = "{\"" + padded(len, at, R"(\")") + "\":1}";
      EXPECT_EQ(ok(with_meta(key_meta)).metadata, key_meta);
    }
  }
}

TEST(ParseScanner, OrdinaryBytesNextToSpecialOnesAreNotSpecial) {
  // Neighbours of '"' (0x22), '\\' (0x5c) and 0x1f, DEL and multi-byte UTF-8 are ordinary.
  for (const char* x : {" ", "!", "#", "[", "]", "\x7f", "é", "日本", "😀", "~"}) {
    for (std::size_t len = 0; len <= 17; ++len) {
      for (std::size_t at = 0; at <= len; ++at) {
        const std::string meta = R"({"k":")" + padded(len, at, x) + "\"}";
        EXPECT_EQ(ok(with_meta(meta)).metadata, meta) << meta;
      }
    }
  }
}

TEST(ParseScanner, ControlBytesAndUnterminatedStringsAtEveryWordBoundary) {
  Event e;
  e.org_id = 1;
  e.event_name = "a.b";
  for (std::size_t len = 0; len <= 25; ++len) {
    for (std::size_t at = 0; at <= len; ++at) {
      for (const char ctl : {'\x01', '\x1f', '\n', '\0'}) {
        e.metadata = R"({"k":")" + padded(len, at, std::string_view(&ctl, 1)) + "\"}";
        static constexpr char kHex[] = "0123456789abcdef";
        const std::string shown = {'\\', 'x', kHex[ctl >> 4], kHex[ctl & 0xf]};
        EXPECT_EQ(validate_event(e), "metadata: invalid JSON: control character '" + shown +
                                         "' in a string must be escaped at byte " +
                                         std::to_string(7 + at))
            << len << " " << at;
        // A control byte right after an escape or a quote-like neighbour.
        e.metadata = R"({"k":")" + padded(len, at, std::string("\\\\") + ctl) + "\"}";
        EXPECT_EQ(validate_event(e), "metadata: invalid JSON: control character '" + shown +
                                         "' in a string must be escaped at byte " +
                                         std::to_string(9 + at));
      }
    }
    // The string runs to the end of the text, at every distance from a word boundary.
    e.metadata = R"({"k":")" + std::string(len, 'a');
    EXPECT_EQ(validate_event(e),
              "metadata: invalid JSON: unterminated string at byte " + std::to_string(7 + len));
    e.metadata = R"({"k":")" + std::string(len, 'a') + "\\";
    EXPECT_EQ(validate_event(e),
              "metadata: invalid JSON: unterminated string at byte " + std::to_string(7 + len));
    e.metadata = R"({"k":")" + std::string(len, 'a') + "\"";
    EXPECT_EQ(validate_event(e), "metadata: invalid JSON: unexpected end");
  }
}

TEST(ParseScanner, BadEscapesAtEveryWordBoundary) {
  for (std::size_t len = 0; len <= 17; ++len) {
    for (std::size_t at = 0; at <= len; ++at) {
      const std::string meta = R"({"k":")" + padded(len, at, R"(\u0000)") + "\"}";
      EXPECT_EQ(why(with_meta(meta)), "\\u0000 escape at byte " + std::to_string(49 + at) +
                                          " (PostgreSQL jsonb cannot store NUL characters)");
      Event e;
      e.org_id = 1;
      e.event_name = "a.b";
      e.metadata = R"({"k":")" + padded(len, at, R"(\q)") + "\"}";
      EXPECT_EQ(validate_event(e),
                "metadata: invalid JSON: bad escape '\\q' at byte " + std::to_string(7 + at));
    }
  }
}

TEST(ParseScanner, IntegerFastPathEdges) {
  for (const char* n : {"0", "-0", "7", "-7", "10", "1234567890123456789012345678901234567890",
                        "-9223372036854775809", "1.5", "-0.5", "0e5", "1E+2", "12e-3"}) {
    const std::string meta = std::string(R"({"a":)") + n + R"(,"b":[)" + n + "]}";
    EXPECT_EQ(ok(with_meta(meta)).metadata, meta) << n;
  }
  for (const char* n : {"01", "-01", "00", "-", "--1", "1-", "1+", "1.", "1e", "-.5", "1.2.3",
                        "0x1", "1e+-2", "-00"}) {
    const std::string meta = std::string(R"({"a":)") + n + "}";
    const std::string r = why(with_meta(meta));
    EXPECT_EQ(r.rfind("metadata: invalid JSON: ", 0), 0U) << n << " -> " << r;
  }
  EXPECT_EQ(why(with_meta(R"({"a":1-})")), "metadata: invalid JSON: bad number '1-' at byte 48");
  EXPECT_EQ(why(with_meta(R"({"a":-01})")), "metadata: invalid JSON: bad number '-01' at byte 48");
  // The fast path stops at numeric's limit of 131072 integer digits.
  const std::string tail =
      " is out of range for PostgreSQL (at most 131072 digits before the decimal point and 16383 "
      "after)";
  ParseOptions big;
  big.limits.max_metadata_bytes = 200'000;
  for (const char* sign : {"", "-"}) {
    const std::string max = sign + std::string(131072, '9');
    const Event e = ok(with_meta(R"({"a":)" + max + "}"), big);
    EXPECT_TRUE(e.metadata == R"({"a":)" + max + "}");  // not EXPECT_EQ: 128 KiB on failure
    const std::string over = sign + std::string(131073, '1');
    EXPECT_EQ(why(with_meta(R"({"a":)" + over + "}"), big),
              "metadata: number '" + over.substr(0, 64) + "...' at byte 48" + tail);
  }
  // A number ending the text (validate_event has no padding after it).
  Event e;
  e.org_id = 1;
  e.event_name = "a.b";
  e.metadata = R"({"a":12)";
  EXPECT_EQ(validate_event(e), "metadata: invalid JSON: unexpected end");
  e.metadata = R"({"a":-)";
  EXPECT_EQ(validate_event(e), "metadata: invalid JSON: bad number '-' at byte 6");
}

TEST(ParseScanner, Literals) {
  EXPECT_EQ(ok(with_meta(R"({"a":true,"b":false,"c":null,"d":[true,false,null]})")).metadata,
            R"({"a":true,"b":false,"c":null,"d":[true,false,null]})");
  for (const char* bad :
       {"tru", "truex", "true1", "falsE", "false_", "nul", "nullZ", "nulll", "fals", "t", "n"}) {
    const std::string r = why(with_meta(std::string(R"({"a":)") + bad + "}"));
    EXPECT_EQ(r.rfind("metadata: invalid JSON", 0), 0U) << bad << " -> " << r;
  }
  Event e;
  e.org_id = 1;
  e.event_name = "a.b";
  for (const char* bad : {"truex}", "nullA}", "false9}", "tru", "nul", "t"}) {
    e.metadata = std::string(R"({"a":)") + bad;
    EXPECT_EQ(validate_event(e), "metadata: invalid JSON: bad literal at byte 6") << bad;
  }
  e.metadata = R"({"a":true)";
  EXPECT_EQ(validate_event(e), "metadata: invalid JSON: unexpected end");
  e.metadata = R"({"a":true-})";
  EXPECT_EQ(validate_event(e),
            "metadata: invalid JSON: unexpected '-' at byte 10 (expected ',' or '}')");
}

TEST(ParseScanner, DeepNestingBeyondTheInlineStack) {
  ParseOptions o;
  o.limits.max_depth = 200;
  // Alternating objects and arrays, 150 levels: past the 64 levels kept in bits.
  std::string open;
  std::string close;
  for (int i = 0; i < 150; ++i) {
    open += i % 3 == 0 ? "[" : R"({"k":)";
    close += i % 3 == 0 ? ']' : '}';
  }
  std::reverse(close.begin(), close.end());
  const std::string meta = "{\"m\":" + open + "1" + close + "}";
  EXPECT_EQ(ok(with_meta(meta), o).metadata, meta);
  // Whitespace and siblings at every depth, then the wrong closer deep down and shallow.
  std::string spaced = "{ \"m\" : " + open + " 1 " + close + " , \"z\" : [ ] }";
  EXPECT_EQ(ok(with_meta(spaced), o).metadata, "{\"m\":" + open + "1" + close + ",\"z\":[]}");
  for (const std::size_t flip : {0UL, 30UL, 60UL, 62UL, 63UL, 64UL, 65UL, 100UL, 149UL}) {
    std::string wrong = close;
    wrong[flip] = wrong[flip] == '}' ? ']' : '}';
    const std::string line = with_meta("{\"m\":" + open + "1" + wrong + "}");
    const std::string expected_closer = close[flip] == '}' ? "',' or '}'" : "',' or ']'";
    EXPECT_EQ(why(line, o), "metadata: invalid JSON: unexpected '" + std::string(1, wrong[flip]) +
                                "' at byte " + std::to_string(line.find(wrong) + flip + 1) +
                                " (expected " + expected_closer + ")")
        << flip;
  }
  // The limit itself, far beyond 64.
  o.limits.max_depth = 151;
  EXPECT_EQ(why(with_meta(meta), o), "metadata: nested deeper than 151 levels (--max-depth)");
  o.limits.max_depth = 152;
  EXPECT_EQ(why(with_meta(meta), o), "<accepted>");
}

TEST(ParseScanner, EventIdHexDigitsAndTheirNeighbours) {
  const std::string good = "01890a5d-ac96-774b-bcce-b302099a8057";
  for (std::size_t at = 0; at < good.size(); ++at) {
    if (good[at] == '-') continue;
    for (const char c : {'0', '9', 'a', 'f', 'A', 'F', '/', ':', '@', 'G', '`', 'g', '\x80'}) {
      std::string id = good;
      id[at] = c;
      // occurred_at given: the id's version and variant digits vary too.
      const std::string line =
          R"({"org_id":1,"event_name":"a.b","occurred_at":"2026-11-28T12:00:00Z","event_id":")" +
          id + "\"}";
      const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      if (hex) {
        std::string lower = id;
        for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        EXPECT_EQ(ok(line).event_id.to_string(), lower);
      } else if (c != '\x80') {
        EXPECT_EQ(why(line),
                  "event_id: expected a UUID like '01890a5d-ac96-774b-bcce-b302099a8057', "
                  "got '" +
                      id + "'");
      } else {
        EXPECT_NE(why(line), "<accepted>");
      }
    }
  }
}

TEST(ParseScanner, KeysThatAlmostMatchAField) {
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","org_i":1})"), "unknown key 'org_i'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","org_idx":1})"), "unknown key 'org_idx'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","metadata2":{}})"), "unknown key 'metadata2'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","org_id\"":1})"), "unknown key 'org_id\"'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","org_id\\":1})"), "unknown key 'org_id\\'");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","":1})"), "unknown key ''");
  EXPECT_EQ(why(R"({"org_id":1,"event_\u006eame":"a.b","event_name":"a.b"})"),
            "duplicate key 'event_name'");
  EXPECT_EQ(ok(R"({"\u006frg_id":1,"ev\u0065nt_name":"a.b","m\u0065tadata":{"k":1}})").metadata,
            R"({"k":1})");
  EXPECT_EQ(why(R"({"org_id":1,"event_name":"a.b","\x":1})"), "invalid JSON: bad string escape");
}

TEST(ParseScanner, IdFastPathEdges) {
  EXPECT_EQ(ok(with_org("1")).org_id, 1);
  EXPECT_EQ(ok(with_org("999999999999999999")).org_id, 999'999'999'999'999'999LL);     // 18 digits
  EXPECT_EQ(ok(with_org("1000000000000000000")).org_id, 1'000'000'000'000'000'000LL);  // 19
  EXPECT_EQ(ok(with_user("123456789012345678")).user_id, 123'456'789'012'345'678LL);
  EXPECT_EQ(ok(with_org("42 ")).org_id, 42);
  EXPECT_EQ(why(with_org("0")), "org_id: expected an integer >= 1, got 0");
  EXPECT_EQ(why(with_org("007")), "org_id: invalid number '007'");
  EXPECT_EQ(why(with_org("12a")), "org_id: invalid number '12a'");
  EXPECT_EQ(why(with_org("12.0")),
            "org_id: expected an integer, got a number with a fraction/exponent '12.0'");
}
