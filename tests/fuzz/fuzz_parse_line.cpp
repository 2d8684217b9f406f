// libFuzzer target for the JSONL line parser and the catalog's metadata schemas (compiler and
// checker). Besides "no crash, no sanitizer report" it checks that whatever the parser accepts is
// an event the rest of the system can trust, and that it conforms to the catalog's schema.
#include "trackevent/event.hpp"
#include "trackevent/uuid.hpp"

#include "input/byte_regex.hpp"
#include "input/catalog.hpp"
#include "input/parse.hpp"

#include <nlohmann/json.hpp>

#include <regex.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "invariant broken: %s\ninput (%zu bytes): %.*s\n", what, input.size(),
               static_cast<int>(input.size()), input.data());
  std::abort();
}

// Every schema keyword appears in one of these entries.
const trackevent::Catalog& catalog() {
  static const trackevent::Catalog c = trackevent::Catalog::from_json(R"({"version": "1",
    "events":[{"name":"user.signed_in"},
      {"name":"dataset.uploaded","metadata":{"required":["rows"],"additionalProperties":false,
        "properties":{"rows":{"type":"integer","minimum":0,"maximum":1000000},
                      "ratio":{"type":["number","null"]},
                      "tags":{"type":"array","items":{"type":"string","maxLength":8}},
                      "ok":{"type":"boolean"},
                      "ctx":{"type":"object","properties":{"id":{"pattern":"^[a-z]+[0-9]*$"}},
                             "additionalProperties":{"type":"integer"}}}}},
      {"name":"a.b","metadata":{"properties":{"plan":{"enum":["free","pro",1,null,[1],{"a":1}]},
        "name":{"type":"string","minLength":1,"maxLength":4,"pattern":"(ab|c)+"}}}}]})");
  return c;
}

// ByteRegex must refuse what it does not implement exactly: whatever it compiles, regcomp must
// compile too, and both must give the same answer.
void check_byte_regex(std::string_view pattern, std::string_view subject, std::string_view input) {
  const auto re = trackevent::detail::ByteRegex::compile(pattern);
  if (!re) return;
  if (pattern.find('\0') != std::string_view::npos) fail("ByteRegex compiled a NUL", input);
  const std::string p(pattern);
  regex_t g;
  if (regcomp(&g, p.c_str(), REG_EXTENDED | REG_NOSUB) != 0) {
    fail("ByteRegex compiled a pattern regcomp refuses", input);
  }
  // regexec reads a C string: it stops at a NUL, as search() does.
  const std::string s(subject);
  const bool expected = regexec(&g, s.c_str(), 0, nullptr, 0) == 0;
  regfree(&g);
  if (re->search(subject) != expected) fail("ByteRegex and regexec disagree", input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks options, so small limits and the catalog path get exercised too.
  const std::uint8_t mode = data[0];
  std::string_view line(reinterpret_cast<const char*>(data + 1), size - 1);
  trackevent::ParseOptions options;
  if ((mode & 1) != 0) options.catalog = &catalog();
  if ((mode & 2) != 0) {
    // Limits stay in their documented domain: depth >= 2 and metadata >= 2 bytes, the size and
    // depth of the `{}` a line without metadata gets.
    options.limits.max_depth = 2 + (mode >> 5);
    options.limits.max_keys = (mode >> 4) & 7;
    options.limits.max_metadata_bytes = 2U + 16U * ((mode >> 2) & 3);
    options.limits.max_line_bytes = 64U * ((mode >> 4) + 1);
  }
  // With the top bit: the input's first line is a metadata schema, compiled (refused cleanly or
  // compiled) and then run over the rest of the input, read as metadata text.
  if ((mode & 0x80) != 0 && (mode & 1) == 0) {
    const auto nl = line.find('\n');
    if (nl != std::string_view::npos) {
      const auto doc = nlohmann::json::parse(line.substr(0, nl), nullptr, false);
      if (!doc.is_discarded()) {
        auto schema = trackevent::MetadataSchema::compile(doc, "/events/0/metadata");
        if (!schema && schema.error().message.rfind("/events/0/metadata", 0) != 0) {
          fail("a schema error without its pointer", line);
        }
        if (schema) {
          const std::string_view text = line.substr(nl + 1);
          const auto v = (*schema)->check(text);
          if (v && (v->message.empty() || v->rule.empty())) fail("an empty violation", line);
          // The line parser's one-pass path: a yes must be the parser's yes and the check's.
          bool whitespace = false;
          if ((*schema)->conforms_as_written(text, options.limits.max_depth,
                                             options.limits.max_keys, whitespace)) {
            trackevent::Event ev;
            ev.org_id = 1;
            ev.event_name = "a.b";
            ev.metadata = std::string(text);
            // The size limit applies to the compacted text, and the line's UTF-8 is checked
            // before the metadata is reached: neither is the one-pass path's to judge.
            trackevent::Limits limits = options.limits;
            limits.max_metadata_bytes = std::numeric_limits<std::size_t>::max();
            const std::string why = trackevent::validate_event(ev, limits);
            if (!why.empty() && why.find("invalid UTF-8") == std::string::npos) {
              fail("the one-pass path took metadata the parser refuses", line);
            }
            if (v) fail("the one-pass path took metadata that breaks the schema", line);
          }
        }
      }
      line = line.substr(nl + 1);
    }
  }
  // With 0x40 (and neither 0x80 nor 0x01): the first line is a POSIX ERE pattern and the rest its
  // subject, for ByteRegex against glibc. The parser still gets the whole line below.
  if ((mode & 0xC1) == 0x40) {
    const auto nl = line.find('\n');
    if (nl != std::string_view::npos)
      check_byte_regex(line.substr(0, nl), line.substr(nl + 1), line);
  }

  const auto result = trackevent::parse_event_line(line, 1'795'867'200'000'000LL, options);
  if (const auto* rej = std::get_if<trackevent::Rejection>(&result)) {
    if (rej->reason.empty()) fail("empty rejection reason", line);
  } else {
    const auto& ev = std::get<trackevent::Event>(result);
    if (ev.org_id < 1) fail("accepted org_id < 1", line);
    if (ev.user_id && *ev.user_id < 1) fail("accepted user_id < 1", line);
    if (!trackevent::is_valid_event_name(ev.event_name)) fail("accepted a bad name", line);
    if (options.catalog != nullptr && !options.catalog->contains(ev.event_name)) {
      fail("accepted a name outside the catalog", line);
    }
    if (options.catalog != nullptr && options.catalog->check(ev.event_name, ev.metadata)) {
      fail("accepted metadata that breaks the schema", line);
    }
    if (ev.metadata.size() > options.limits.max_metadata_bytes) fail("metadata too big", line);
    if (const std::string why = trackevent::validate_event(ev, options.limits); !why.empty()) {
      fail(("validate_event disagrees: " + why).c_str(), line);
    }
    // An independent parser must agree that the metadata is a JSON object.
    const auto j = nlohmann::json::parse(ev.metadata, nullptr, /*allow_exceptions=*/false);
    // nlohmann refuses numbers beyond a double's range (1e400, or 400 digits), which jsonb's
    // numeric stores, so a discarded parse is only an error when the text holds no such number.
    std::size_t digits = 0;
    std::size_t longest_digits = 0;
    for (const char ch : ev.metadata) {
      digits = (ch >= '0' && ch <= '9') ? digits + 1 : 0;
      longest_digits = std::max(longest_digits, digits);
    }
    const bool has_exponent =
        ev.metadata.find_first_of("eE") != std::string::npos || longest_digits > 300;
    if ((j.is_discarded() && !has_exponent) || (!j.is_discarded() && !j.is_object()) ||
        ev.metadata.front() != '{' || ev.metadata.back() != '}') {
      fail("metadata is not a JSON object", line);
    }
    const auto back = trackevent::parse_rfc3339(trackevent::format_rfc3339(ev.occurred_at_us));
    if (back != ev.occurred_at_us) fail("occurred_at does not round-trip", line);
  }

  // The smaller parsers get the raw bytes directly.
  if (const auto t = trackevent::parse_rfc3339(line)) {
    if (trackevent::parse_rfc3339(trackevent::format_rfc3339(*t)) != t) {
      fail("rfc3339 does not round-trip", line);
    }
  }
  if (const auto u = trackevent::Uuid::parse(line)) {
    if (trackevent::Uuid::parse(u->to_string()) != u) fail("uuid does not round-trip", line);
  }
  (void)trackevent::is_valid_event_name(line);
  return 0;
}
