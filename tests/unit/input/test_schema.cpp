// The metadata schema subset: each keyword compiled and checked, the wording of violations, and the
// catalog errors (unsupported keyword, contradictions) with their JSON pointers.
#include "input/catalog.hpp"
#include "input/parse.hpp"
#include "input/schema.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

using trackevent::Catalog;
using trackevent::MetadataSchema;

namespace {

std::shared_ptr<const MetadataSchema> compile(const std::string& schema) {
  auto r = MetadataSchema::compile(nlohmann::json::parse(schema), "/events/0/metadata");
  if (!r) {
    ADD_FAILURE() << r.error().message;
    return nullptr;
  }
  return std::move(r).value();
}

// The violation's message, or "" when the metadata conforms.
std::string check(const std::string& schema, const std::string& metadata) {
  const auto s = compile(schema);
  if (!s) return "no schema";
  const auto v = s->check(metadata);
  return v ? v->message : "";
}

std::string rule(const std::string& schema, const std::string& metadata) {
  const auto s = compile(schema);
  if (!s) return "no schema";
  const auto v = s->check(metadata);
  return v ? v->rule : "";
}

std::string compile_error(const std::string& schema) {
  auto r = MetadataSchema::compile(nlohmann::json::parse(schema), "/events/0/metadata");
  return r ? "" : r.error().message;
}

std::string catalog_error(std::string_view json) {
  try {
    (void)Catalog::from_json(json);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Schema, EmptySchemaAcceptsAnyObject) {
  EXPECT_EQ(check("{}", R"({"a":1,"b":[true,null]})"), "");
  EXPECT_EQ(check("{}", "{}"), "");
}

TEST(Schema, Type) {
  const std::string s = R"({"properties":{"bytes":{"type":"integer"}}})";
  EXPECT_EQ(check(s, R"({"bytes":12})"), "");
  EXPECT_EQ(check(s, R"({"bytes":12.0})"), "");  // JSON Schema: 12.0 is an integer
  EXPECT_EQ(check(s, R"({"bytes":"12"})"), R"(metadata.bytes: expected integer, got string "12")");
  EXPECT_EQ(rule(s, R"({"bytes":"12"})"), "metadata.bytes: type");
  EXPECT_EQ(check(s, R"({"bytes":1.5})"), "metadata.bytes: expected integer, got number 1.5");
  EXPECT_EQ(check(s, R"({"bytes":null})"), "metadata.bytes: expected integer, got null");
  EXPECT_EQ(check(R"({"properties":{"x":{"type":"number"}}})", R"({"x":3})"), "");
  EXPECT_EQ(check(R"({"properties":{"x":{"type":"boolean"}}})", R"({"x":1})"),
            "metadata.x: expected boolean, got integer 1");
  EXPECT_EQ(check(R"({"properties":{"x":{"type":"object"}}})", R"({"x":[]})"),
            "metadata.x: expected object, got array");
  EXPECT_EQ(check(R"({"properties":{"x":{"type":"array"}}})", R"({"x":{}})"),
            "metadata.x: expected array, got object");
  EXPECT_EQ(check(R"({"properties":{"x":{"type":"null"}}})", R"({"x":false})"),
            "metadata.x: expected null, got boolean false");
  EXPECT_EQ(check(R"({"properties":{"x":{"type":"string"}}})", R"({"x":true})"),
            "metadata.x: expected string, got boolean true");
}

TEST(Schema, TypeList) {
  const std::string s = R"({"properties":{"retry":{"type":["integer","null"]}}})";
  EXPECT_EQ(check(s, R"({"retry":null})"), "");
  EXPECT_EQ(check(s, R"({"retry":2})"), "");
  EXPECT_EQ(check(s, R"({"retry":"2"})"),
            R"(metadata.retry: expected integer or null, got string "2")");
  EXPECT_EQ(check(R"({"properties":{"x":{"type":["string","number","boolean"]}}})", R"({"x":[]})"),
            "metadata.x: expected string, number or boolean, got array");
}

TEST(Schema, Required) {
  const std::string s = R"({"required":["plan"],"properties":{"plan":{"type":"string"}}})";
  EXPECT_EQ(check(s, R"({"plan":"pro"})"), "");
  EXPECT_EQ(check(s, R"({"other":1})"), R"(metadata: missing required key "plan")");
  EXPECT_EQ(rule(s, "{}"), "metadata: required");
  // Nested objects report their own path.
  EXPECT_EQ(check(R"({"properties":{"ctx":{"type":"object","required":["id"]}}})", R"({"ctx":{}})"),
            R"(metadata.ctx: missing required key "id")");
}

TEST(Schema, AdditionalPropertiesFalseSuggestsTheDeclaredKey) {
  const std::string s =
      R"({"additionalProperties":false,"properties":{"duration_ms":{"type":"integer"}}})";
  EXPECT_EQ(check(s, R"({"duration_ms":5})"), "");
  EXPECT_EQ(check(s, R"({"durationMs":5})"),
            "metadata.durationMs: unknown key (did you mean duration_ms?)");
  EXPECT_EQ(rule(s, R"({"durationMs":5})"), "metadata.durationMs: additionalProperties");
  EXPECT_EQ(check(s, R"({"zzzzzzzzzzzz":5})"), "metadata.zzzzzzzzzzzz: unknown key");
}

TEST(Schema, AdditionalPropertiesAsASchema) {
  const std::string s =
      R"({"properties":{"id":{"type":"string"}},"additionalProperties":{"type":"integer"}})";
  EXPECT_EQ(check(s, R"({"id":"a","n":1,"m":2})"), "");
  EXPECT_EQ(check(s, R"({"id":"a","n":"x"})"), R"(metadata.n: expected integer, got string "x")");
  // true (the default) lets anything through.
  EXPECT_EQ(check(R"({"additionalProperties":true})", R"({"x":1})"), "");
}

TEST(Schema, Enum) {
  const std::string s = R"({"properties":{"plan":{"enum":["free","pro",3,null]}}})";
  EXPECT_EQ(check(s, R"({"plan":"pro"})"), "");
  EXPECT_EQ(check(s, R"({"plan":3})"), "");
  EXPECT_EQ(check(s, R"({"plan":3.0})"), "");
  EXPECT_EQ(check(s, R"({"plan":null})"), "");
  EXPECT_EQ(check(s, R"({"plan":"gold"})"),
            R"(metadata.plan: expected one of "free", "pro", 3, null, got "gold")");
  EXPECT_EQ(rule(s, R"({"plan":"gold"})"), "metadata.plan: enum");
  // Arrays and objects compare by value.
  EXPECT_EQ(check(R"({"properties":{"x":{"enum":[[1,2],{"a":true}]}}})", R"({"x":{"a":true}})"),
            "");
  EXPECT_NE(check(R"({"properties":{"x":{"enum":[[1,2],{"a":true}]}}})", R"({"x":[2,1]})"), "");
}

TEST(Schema, MinimumMaximum) {
  const std::string s = R"({"properties":{"n":{"minimum":0,"maximum":100}}})";
  EXPECT_EQ(check(s, R"({"n":0})"), "");
  EXPECT_EQ(check(s, R"({"n":100})"), "");
  EXPECT_EQ(check(s, R"({"n":-1})"), "metadata.n: expected >= 0, got -1");
  EXPECT_EQ(check(s, R"({"n":100.5})"), "metadata.n: expected <= 100, got 100.5");
  EXPECT_EQ(rule(s, R"({"n":101})"), "metadata.n: maximum");
  EXPECT_EQ(check(s, R"({"n":"x"})"), "");  // bounds apply to numbers only
  // Beyond 2^53 the comparison stays exact.
  EXPECT_NE(
      check(R"({"properties":{"n":{"maximum":9007199254740992}}})", R"({"n":9007199254740993})"),
      "");
}

TEST(Schema, MinLengthMaxLengthCountCharacters) {
  const std::string s = R"({"properties":{"s":{"minLength":2,"maxLength":3}}})";
  EXPECT_EQ(check(s, R"({"s":"ab"})"), "");
  EXPECT_EQ(check(s, R"({"s":"日本語"})"), "");  // 3 characters, 9 bytes
  EXPECT_EQ(check(s, R"({"s":"a"})"), "metadata.s: expected at least 2 characters, got 1");
  EXPECT_EQ(check(s, R"({"s":"abcd"})"), "metadata.s: expected at most 3 characters, got 4");
  EXPECT_EQ(rule(s, R"({"s":"a"})"), "metadata.s: minLength");
}

TEST(Schema, PatternIsAnUnanchoredPosixExtendedRegex) {
  const std::string s = R"({"properties":{"v":{"pattern":"^[0-9]+\\.[0-9]+$"}}})";
  EXPECT_EQ(check(s, R"({"v":"1.20"})"), "");
  EXPECT_EQ(check(s, R"({"v":"1.x"})"),
            R"(metadata.v: expected a string matching ^[0-9]+\.[0-9]+$, got "1.x")");
  EXPECT_EQ(rule(s, R"({"v":"1.x"})"), "metadata.v: pattern");
  EXPECT_EQ(check(R"({"properties":{"v":{"pattern":"b+"}}})", R"({"v":"abbc"})"), "");
  EXPECT_EQ(check(s, R"({"v":1})"), "");  // a pattern applies to strings only
}

// A pattern ByteRegex leaves to regexec (\\w is a GNU extension it does not take) reads only the
// value, even when the metadata sits in a buffer with no NUL after it: under ASan, reading past
// the buffer's end is an error (regexec's interceptor reads a C string, whatever the flags say).
TEST(Schema, RegexecFallbackReadsOnlyTheValue) {
  const auto s = compile(R"({"properties":{"v":{"pattern":"^\\w+$"}}})");
  ASSERT_TRUE(s);
  for (const std::string text : {R"({"v":"abc"})", R"({"v":"a-c"})"}) {
    const auto buf = std::make_unique<char[]>(text.size());  // exactly sized: no NUL after it
    std::copy(text.begin(), text.end(), buf.get());
    const auto v = s->check(std::string_view(buf.get(), text.size()));
    EXPECT_EQ(v.has_value(), text.find('-') != std::string::npos) << text;
  }
}

// The one-pass path says yes only when the line parser would take the text too (validate_event
// runs its scan) and the text conforms; anything in doubt is a no.
TEST(Schema, ConformsAsWrittenOnlyWhereTheParserAgrees) {
  const auto s = compile(R"({"properties":{"n":{"type":"integer"}}})");
  ASSERT_TRUE(s);
  struct Case {
    std::string text;
    std::size_t depth;
    std::size_t keys;
    bool conforms;
    bool whitespace;
  };
  const std::vector<Case> cases = {
      {R"({"n":1,"a":[1,2.5e-3,-0,"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"]})", 64, 99, true, false},
      {" {\"n\" : 1 ,\t\"a\":{ } }\n", 64, 99, true, true},
      {"{}", 2, 0, true, false},
      {R"({"a":{"b":{}}})", 4, 99, true, false},
      {R"({"a":{"b":{}}})", 3, 99, false, false},  // --max-depth
      {R"({"a":[[1]]})", 3, 99, false, false},
      {R"({"a":1,"b":{"c":2}})", 64, 3, true, false},
      {R"({"a":1,"b":{"c":2}})", 64, 2, false, false},  // --max-keys
      {R"({"n":"1"})", 64, 99, false, false},           // a violation
      {R"({"a":01})", 64, 99, false, false},
      {R"({"a":-01.5})", 64, 99, false, false},
      {R"({"a":1.})", 64, 99, false, false},
      {R"({"a":.5})", 64, 99, false, false},
      {R"({"a":+1})", 64, 99, false, false},
      {R"({"a":1e400})", 64, 99, false, false},  // left to the parser: its numeric range
      {R"({"a":[1,]})", 64, 99, false, false},
      {R"({"a":1,})", 64, 99, false, false},
      {R"({"a":nul})", 64, 99, false, false},
      {R"({"a":nullx})", 64, 99, false, false},
      {R"({"a":"\u0000"})", 64, 99, false, false},
      {R"({"a":"\ud800"})", 64, 99, false, false},
      {R"({"a":"\ud800\u0041"})", 64, 99, false, false},
      {R"({"a":"\udc00"})", 64, 99, false, false},
      {R"({"a":"\x"})", 64, 99, false, false},
      {R"({"a":"\u12"})", 64, 99, false, false},
      {"{\"a\":\"\t\"}", 64, 99, false, false},
      {R"({"a":1}})", 64, 99, false, false},
      {R"({"a" 1})", 64, 99, false, false},
      {R"({a:1})", 64, 99, false, false},
      {R"([1])", 64, 99, false, false},
      {R"({"a":"x)", 64, 99, false, false},
  };
  for (const Case& c : cases) {
    bool ws = false;
    EXPECT_EQ(s->conforms_as_written(c.text, c.depth, c.keys, ws), c.conforms) << c.text;
    if (c.conforms) {
      EXPECT_EQ(ws, c.whitespace) << c.text;
    }
    trackevent::Limits limits;
    limits.max_depth = c.depth;
    limits.max_keys = c.keys;
    trackevent::Event ev;
    ev.org_id = 1;
    ev.event_name = "a.b";
    ev.metadata = c.text;
    const std::string parser = trackevent::validate_event(ev, limits);
    // Each "no" above is the parser's "no" too, but for the violation and the number beyond the
    // fast path, which the parser takes; a "yes" is always the parser's "yes".
    const bool parser_takes = c.text == R"({"n":"1"})" || c.text == R"({"a":1e400})";
    EXPECT_EQ(parser.empty(), c.conforms || parser_takes) << c.text << ": " << parser;
  }
}

TEST(Schema, ItemsReportTheIndexAndCountByRule) {
  const std::string s = R"({"properties":{"tags":{"type":"array","items":{"type":"string"}}}})";
  EXPECT_EQ(check(s, R"({"tags":["a","b"]})"), "");
  EXPECT_EQ(check(s, R"({"tags":["a",2]})"), "metadata.tags[1]: expected string, got integer 2");
  EXPECT_EQ(rule(s, R"({"tags":["a",2]})"), "metadata.tags[]: type");
}

TEST(Schema, AnnotationsAreAccepted) {
  EXPECT_EQ(compile_error(
                R"({"description":"d","title":"t","$comment":"c","examples":[{}],
                    "properties":{"x":{"description":"why"}}})"),
            "");
}

TEST(Schema, KeysAndTypesForTheCli) {
  const auto s =
      compile(R"({"properties":{"bytes":{"type":"integer"},"name":{"type":"string"},"any":{}}})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->keys(), (std::vector<std::string>{"any", "bytes", "name"}));
  EXPECT_EQ(s->property_types("bytes"), trackevent::kTypeInteger);
  EXPECT_EQ(s->property_types("any"), 0U);
  EXPECT_EQ(s->property_types("missing"), 0U);
}

// The check reads the metadata text in place (no DOM): escapes in keys and values are decoded
// before they are compared, counted or matched.
TEST(Schema, EscapesAreDecodedBeforeRulesApply) {
  const std::string s =
      R"({"additionalProperties":false,"properties":{"plan":{"enum":["pro","é"]},)"
      R"("s":{"maxLength":2},"v":{"pattern":"^a\"b$"}}})";
  EXPECT_EQ(check(s, R"({"pl\u0061n":"pr\u006f"})"), "");
  EXPECT_EQ(check(s, R"({"plan":"\u00e9"})"), "");
  EXPECT_EQ(check(s, R"({"plan":"pr\u006F!"})"),
            R"(metadata.plan: expected one of "pro", "é", got "pro!")");
  // One character each: an escape, a surrogate pair, a two-byte UTF-8 sequence.
  EXPECT_EQ(check(s, R"({"s":"\n\ud83d\ude00"})"), "");
  EXPECT_EQ(check(s, R"({"s":"é\u00e9x"})"), "metadata.s: expected at most 2 characters, got 3");
  // Lengths are counted in characters, however many bytes the text spends on each.
  const std::string at_least_two = R"({"properties":{"s":{"minLength":2}}})";
  EXPECT_EQ(check(at_least_two, R"({"s":"\ud83d\ude00\ud83d\ude00"})"), "");
  EXPECT_EQ(check(at_least_two, R"({"s":"\ud83d\ude00a"})"), "");
  EXPECT_EQ(check(at_least_two, R"({"s":"\ud83d\ude00"})"),
            "metadata.s: expected at least 2 characters, got 1");
  EXPECT_EQ(check(at_least_two, R"({"s":"日"})"),
            "metadata.s: expected at least 2 characters, got 1");
  EXPECT_EQ(check(s, R"({"v":"a\"b"})"), "");
  EXPECT_EQ(check(s, R"({"v":"a\\b"})"),
            R"(metadata.v: expected a string matching ^a"b$, got "a\\b")");
  EXPECT_EQ(check(s, R"({"pl\u0061x":1})"), "metadata.plax: unknown key (did you mean plan?)");
}

TEST(Schema, AMissingRequiredKeyIsReportedBeforeABadValue) {
  const std::string s =
      R"({"required":["plan"],"additionalProperties":false,)"
      R"("properties":{"plan":{"type":"string"},"n":{"type":"integer"},"ctx":{"type":"object"}}})";
  EXPECT_EQ(check(s, R"({"n":"x","ctx":{"a":[1,{"b":"}"}]}})"),
            R"(metadata: missing required key "plan")");
  EXPECT_EQ(check(s, R"({"zz":1,"ctx":{}})"), R"(metadata: missing required key "plan")");
  // With the key there, the first bad value is reported, however deep the walk had gone.
  EXPECT_EQ(check(s, R"({"ctx":[1],"n":"x","plan":"p"})"),
            "metadata.ctx: expected object, got array");
  EXPECT_EQ(check(s, R"({"n":1,"plan":"p","ctx":{"a":"b"}})"), "");
}

TEST(Schema, MoreThan64RequiredKeys) {
  nlohmann::json schema = {{"required", nlohmann::json::array()}};
  nlohmann::json metadata = nlohmann::json::object();
  for (int i = 0; i < 70; ++i) {
    schema["required"].push_back("k" + std::to_string(i));
    metadata["k" + std::to_string(i)] = i;
  }
  EXPECT_EQ(check(schema.dump(), metadata.dump()), "");
  metadata.erase("k68");
  EXPECT_EQ(check(schema.dump(), metadata.dump()), R"(metadata: missing required key "k68")");
  metadata["k68"] = 0;
  metadata.erase("k3");
  EXPECT_EQ(check(schema.dump(), metadata.dump()), R"(metadata: missing required key "k3")");
}

TEST(Schema, NumbersBeyondInt64AndDoubleAreCheckedByValue) {
  const std::string s =
      R"({"properties":{"n":{"type":"integer","maximum":1e300},"x":{"maximum":0.1}}})";
  EXPECT_EQ(check(s, R"({"n":123456789012345678901234567890})"), "");
  EXPECT_EQ(check(s, R"({"n":1e400})"), "metadata.n: expected <= 1e+300, got 1e400");
  EXPECT_EQ(check(s, R"({"n":12345678901234567890.5})"), "");  // integral once a double
  EXPECT_EQ(check(s, R"({"n":-9223372036854775809})"), "");
  // The bound and the value round the same way: 0.1 is not above 0.1, 0.1000000000000000056 is
  // the same double, and 0.10000000000000002 is the next one.
  EXPECT_EQ(check(s, R"({"x":0.1})"), "");
  EXPECT_EQ(check(s, R"({"x":1e-1})"), "");
  EXPECT_EQ(check(s, R"({"x":0.1000000000000000056})"), "");
  EXPECT_EQ(check(s, R"({"x":0.10000000000000002})"),
            "metadata.x: expected <= 0.1, got 0.10000000000000002");
  EXPECT_EQ(check(s, R"({"x":-36.5e0})"), "");
}

TEST(Schema, WhitespaceIsAllowedAndBrokenTextIsReportedNotTrusted) {
  const std::string s =
      R"({"required":["a"],"properties":{"a":{"type":"array","items":{"type":"integer"}}}})";
  EXPECT_EQ(check(s, " { \"a\" : [ 1 , 2 ] } "), "");
  EXPECT_EQ(check(s, "{\"a\":[1,\n\"x\"]}"), R"(metadata.a[1]: expected integer, got string "x")");
  for (const std::string broken : {"", "[]", "{", R"({"a")", R"({"a":[1,)", R"({"a":[1]} x)",
                                   R"({"a":"\)", R"({"a)", "{\"a\":[1]", R"({"a":[1] "b":2})"}) {
    EXPECT_EQ(rule(s, broken), "metadata: json") << broken;
  }
}

TEST(SchemaCompile, UnsupportedKeywordNamesKeywordAndPointer) {
  const std::string e = compile_error(R"({"properties":{"mail":{"format":"email"}}})");
  EXPECT_NE(e.find("/events/0/metadata/properties/mail/format: unsupported keyword \"format\""),
            std::string::npos)
      << e;
  EXPECT_NE(compile_error(R"({"oneOf":[]})").find("/events/0/metadata/oneOf: unsupported"),
            std::string::npos);
  // Pointer segments are escaped (RFC 6901).
  EXPECT_NE(compile_error(R"({"properties":{"a/b~c":{"const":1}}})")
                .find("/properties/a~1b~0c/const: unsupported keyword"),
            std::string::npos);
}

TEST(SchemaCompile, BadKeywordValues) {
  EXPECT_NE(compile_error(R"({"properties":{"x":{"type":"int"}}})").find("unknown type \"int\""),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"x":{"type":[]}}})").find("/type: expected"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"x":{"type":["null","null"]}}})").find("/type/1"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"required":"plan"})").find("/required: expected an array"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"required":["a","a"]})").find("/required/1"), std::string::npos);
  EXPECT_NE(compile_error(R"({"enum":[]})").find("/enum: expected a non-empty array"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"x":{"minimum":"1"}}})").find("/minimum: expected"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"x":{"maxLength":-1}}})").find("/maxLength: expected"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"x":{"items":[{}]}}})").find("tuple form"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"x":1}})").find("/properties/x: expected a schema"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"type":"string"})").find("metadata is always an object"),
            std::string::npos);
}

TEST(SchemaCompile, PatternsThatCouldCostMuchAreRefused) {
  EXPECT_NE(compile_error(R"({"properties":{"x":{"pattern":"(a"}}})")
                .find("/properties/x/pattern: invalid POSIX extended regex"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"x":{"pattern":"(a)\\1"}}})").find("back-references"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"x":{"pattern":"(a{1000}){1000}"}}})")
                .find("repetition count"),
            std::string::npos);
  EXPECT_EQ(compile_error(R"({"properties":{"x":{"pattern":"^a{1,255}$"}}})"), "");
}

TEST(SchemaCompile, ContradictionsAreErrors) {
  EXPECT_NE(compile_error(R"({"properties":{"n":{"minimum":5,"maximum":1}}})")
                .find("/properties/n/minimum: minimum 5 is greater than maximum 1"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"s":{"minLength":5,"maxLength":1}}})")
                .find("/properties/s/minLength: minLength 5 is greater than maxLength 1"),
            std::string::npos);
  EXPECT_NE(
      compile_error(R"({"additionalProperties":false,"required":["plan"],"properties":{}})")
          .find("/events/0/metadata/required/0: \"plan\" is required, but additionalProperties"),
      std::string::npos);
  EXPECT_NE(compile_error(R"({"properties":{"x":{"type":"string","required":["a"]}}})")
                .find("excludes object"),
            std::string::npos);
}

TEST(CatalogSchema, LoadsVersionAndSchemasAndChecksByName) {
  const Catalog c = Catalog::from_json(R"({"version":"2026-12",
    "events":[{"name":"backup.completed","metadata":{"required":["bytes"],
                "properties":{"bytes":{"type":"integer","minimum":0}}}},
              {"name":"user.signed_in"}]})");
  EXPECT_EQ(c.version(), "2026-12");
  EXPECT_EQ(c.schema_count(), 1U);
  ASSERT_NE(c.find("backup.completed"), nullptr);
  EXPECT_TRUE(c.find("backup.completed")->schema);
  EXPECT_FALSE(c.find("user.signed_in")->schema);
  EXPECT_EQ(c.find("nope.x"), nullptr);
  EXPECT_FALSE(c.check("backup.completed", R"({"bytes":5})"));
  const auto v = c.check("backup.completed", R"({"bytes":"5"})");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->message, R"(metadata.bytes: expected integer, got string "5")");
  EXPECT_FALSE(c.check("user.signed_in", R"({"anything":[1]})"));
  EXPECT_EQ(Catalog::from_json(R"({"version":3,"events":[]})").version(), "3");
}

TEST(CatalogSchema, ErrorsNameThePointer) {
  EXPECT_NE(catalog_error(R"({"events":[{"name":"a.b"},{"name":"c.d","metadata":
              {"properties":{"n":{"minimum":2,"maximum":1}}}}]})")
                .find("/events/1/metadata/properties/n/minimum"),
            std::string::npos);
  EXPECT_NE(catalog_error(R"({"events":[{"name":"a.b","schema":{}}]})")
                .find("/events/0/schema: unknown key \"schema\""),
            std::string::npos);
  EXPECT_NE(catalog_error(R"({"events":[],"versoin":"1"})").find("/versoin: unknown key"),
            std::string::npos);
  EXPECT_NE(catalog_error(R"({"version":[1],"events":[]})").find("/version: expected"),
            std::string::npos);
  // A key given twice in one object is not silently resolved to the last one.
  EXPECT_NE(catalog_error(R"({"events":[{"name":"a.b"},{"name":"c.d","metadata":{"properties":
              {"n":{"type":"integer"},"m":[1,{"x":1}],"n":{"type":"string"}}}}]})")
                .find("/events/1/metadata/properties/n: key given twice in one object"),
            std::string::npos);
  EXPECT_NE(catalog_error(R"({"events":[{"name":"a.b","name":"c.d"}]})")
                .find("/events/0/name: key given twice"),
            std::string::npos);
  EXPECT_NE(catalog_error(R"({"events":[{"name":"a.b","metadata":[]}]})")
                .find("/events/0/metadata: expected a schema"),
            std::string::npos);
}
