#include "input/byte_regex.hpp"

#include <algorithm>
#include <array>
#include <bitset>
#include <map>
#include <utility>

// What compile() accepts, each checked against glibc's regcomp/regexec in the C locale by
// tests/unit/input/test_byte_regex.cpp and tests/fuzz/fuzz_parse_line.cpp: literal bytes (any but
// NUL and the special characters), `.`, bracket expressions of ASCII literals, ranges and the 12
// [:class:] names, with `^` negation, `]` first and `-` first or last; groups, `|`, `*`, `+`, `?`,
// `{m}`, `{m,}`, `{m,n}` (n >= 1); `^` where no byte can have been read yet and `$` where no byte
// can follow (see anchors_only_at_edges; no quantifier on them or on a group holding them); `\`
// before one of .[]()*+?{}|^$\/-. Everything else (empty branches or groups, stacked quantifiers,
// back-references, GNU escapes, collating symbols and equivalence classes, bytes >= 0x80 in
// brackets, an unmatched `)`) is left to regexec, as is any pattern whose automaton outgrows the
// caps below.

namespace trackevent::detail {

namespace {

constexpr std::size_t kMaxNfaNodes = 8192;
constexpr std::size_t kMaxDfaStates = 2048;
constexpr int kMaxCount = 255;
constexpr int kMaxDepth = 64;
// Bounds the subset construction's work (node visits), so compile time stays small too.
constexpr std::size_t kMaxWork = 40'000'000;

using ByteSet = std::bitset<256>;

// ---- Syntax tree ------------------------------------------------------------------------------

struct Ast {
  enum Kind : std::uint8_t { kSet, kBol, kEol, kCat, kAlt, kRepeat } kind = kSet;
  ByteSet set;
  std::vector<int> kids;
  int min = 0;
  int max = 0;  // -1: unbounded
  bool has_anchor = false;
};

ByteSet range(int lo, int hi) {
  ByteSet s;
  for (int c = lo; c <= hi; ++c) s.set(static_cast<std::size_t>(c));
  return s;
}

// The C locale's classes: ASCII only.
std::optional<ByteSet> named_class(std::string_view name) {
  const ByteSet upper = range('A', 'Z');
  const ByteSet lower = range('a', 'z');
  const ByteSet digit = range('0', '9');
  if (name == "alpha") return upper | lower;
  if (name == "digit") return digit;
  if (name == "alnum") return upper | lower | digit;
  if (name == "upper") return upper;
  if (name == "lower") return lower;
  if (name == "space") return range('\t', '\r') | range(' ', ' ');
  if (name == "blank") return range('\t', '\t') | range(' ', ' ');
  if (name == "punct") return range(33, 47) | range(58, 64) | range(91, 96) | range(123, 126);
  if (name == "xdigit") return digit | range('A', 'F') | range('a', 'f');
  if (name == "cntrl") return range(0, 31) | range(127, 127);
  if (name == "print") return range(32, 126);
  if (name == "graph") return range(33, 126);
  return std::nullopt;
}

bool is_quantifier(char c) { return c == '*' || c == '+' || c == '?' || c == '{'; }

class Parser {
 public:
  explicit Parser(std::string_view p) : p_(p) {}

  // Returns the root, or -1 when the pattern is outside the supported subset.
  int parse() {
    const int root = alternation();
    if (root < 0 || pos_ != p_.size()) return -1;
    return root;
  }

  std::vector<Ast> nodes;

 private:
  bool at_end() const { return pos_ >= p_.size(); }
  char peek() const { return p_[pos_]; }

  int add(Ast a) {
    nodes.push_back(std::move(a));
    return static_cast<int>(nodes.size() - 1);
  }

  int alternation() {
    Ast alt;
    alt.kind = Ast::kAlt;
    for (;;) {
      const int b = branch();
      if (b < 0) return -1;
      alt.has_anchor = alt.has_anchor || nodes[static_cast<std::size_t>(b)].has_anchor;
      alt.kids.push_back(b);
      if (at_end() || peek() != '|') break;
      ++pos_;
    }
    if (alt.kids.size() == 1) return alt.kids[0];
    return add(std::move(alt));
  }

  int branch() {
    Ast cat;
    cat.kind = Ast::kCat;
    while (!at_end() && peek() != '|' && peek() != ')') {
      const int pc = piece();
      if (pc < 0) return -1;
      cat.has_anchor = cat.has_anchor || nodes[static_cast<std::size_t>(pc)].has_anchor;
      cat.kids.push_back(pc);
    }
    if (cat.kids.empty()) return -1;  // empty branch: glibc takes it, this class does not
    if (cat.kids.size() == 1) return cat.kids[0];
    return add(std::move(cat));
  }

  int piece() {
    if (is_quantifier(peek())) return -1;  // nothing to repeat: regcomp refuses it
    const int a = atom();
    if (a < 0 || at_end() || !is_quantifier(peek())) return a;
    Ast rep;
    rep.kind = Ast::kRepeat;
    const char q = p_[pos_++];
    if (q == '*') {
      rep.min = 0;
      rep.max = -1;
    } else if (q == '+') {
      rep.min = 1;
      rep.max = -1;
    } else if (q == '?') {
      rep.min = 0;
      rep.max = 1;
    } else if (!interval(rep.min, rep.max)) {
      return -1;
    }
    // Stacked quantifiers and repeated anchors are left to regexec.
    if (!at_end() && is_quantifier(peek())) return -1;
    if (nodes[static_cast<std::size_t>(a)].has_anchor) return -1;
    rep.kids.push_back(a);
    return add(std::move(rep));
  }

  // After '{': m}, m,} or m,n} with 0 <= m <= n <= kMaxCount and n >= 1.
  bool interval(int& min, int& max) {
    if (!number(min)) return false;
    max = min;
    if (!at_end() && peek() == ',') {
      ++pos_;
      max = -1;
      if (!at_end() && peek() != '}' && !number(max)) return false;
    }
    if (at_end() || peek() != '}') return false;
    ++pos_;
    if (max == 0 || (max >= 0 && max < min)) return false;
    return true;
  }

  bool number(int& out) {
    const std::size_t from = pos_;
    out = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      out = out * 10 + (peek() - '0');
      if (out > kMaxCount) return false;
      ++pos_;
    }
    return pos_ > from && pos_ - from <= 3;
  }

  int atom() {
    const char c = p_[pos_++];
    Ast a;
    switch (c) {
      case '(': {
        if (++depth_ > kMaxDepth) return -1;
        const int inner = alternation();
        --depth_;
        if (inner < 0 || at_end() || peek() != ')') return -1;
        ++pos_;
        return inner;
      }
      case ')':  // unmatched: glibc reads it as a literal, this class leaves it alone
      case '\0':
        return -1;
      case '.':
        a.set.set();
        a.set.reset(0);
        break;
      case '^':
        a.kind = Ast::kBol;
        a.has_anchor = true;
        break;
      case '$':
        a.kind = Ast::kEol;
        a.has_anchor = true;
        break;
      case '[':
        if (!bracket(a.set)) return -1;
        break;
      case '\\': {
        if (at_end()) return -1;
        const char e = p_[pos_++];
        if (std::string_view(".[]()*+?{}|^$\\/-").find(e) == std::string_view::npos) return -1;
        a.set.set(static_cast<unsigned char>(e));
        break;
      }
      default:
        a.set.set(static_cast<unsigned char>(c));
        break;
    }
    return add(std::move(a));
  }

  // After '['; consumes through the closing ']'.
  bool bracket(ByteSet& out) {
    ByteSet set;
    bool negate = false;
    if (!at_end() && peek() == '^') {
      negate = true;
      ++pos_;
    }
    bool first = true;
    for (;; first = false) {
      if (at_end()) return false;
      const auto c = static_cast<unsigned char>(p_[pos_]);
      if (c == ']' && !first) {
        ++pos_;
        break;
      }
      if (c == 0 || c >= 0x80) return false;
      if (c == '[' && pos_ + 1 < p_.size()) {
        const char k = p_[pos_ + 1];
        if (k == '.' || k == '=') return false;
        if (k == ':') {
          const auto end = p_.find(":]", pos_ + 2);
          if (end == std::string_view::npos) return false;
          const auto cls = named_class(p_.substr(pos_ + 2, end - pos_ - 2));
          if (!cls) return false;
          set |= *cls;
          pos_ = end + 2;
          // A class cannot start a range.
          if (!at_end() && peek() == '-' && pos_ + 1 < p_.size() && p_[pos_ + 1] != ']') {
            return false;
          }
          continue;
        }
      }
      if (c == '-') {
        // Only first, or last before ']'.
        const bool last = pos_ + 1 < p_.size() && p_[pos_ + 1] == ']';
        if (!first && !last) return false;
        ++pos_;
        set.set('-');
        continue;
      }
      ++pos_;
      if (!at_end() && peek() == '-' && pos_ + 1 < p_.size() && p_[pos_ + 1] != ']') {
        const auto hi = static_cast<unsigned char>(p_[pos_ + 1]);
        if (hi == 0 || hi >= 0x80 || hi == '[' || hi == '-' || hi < c) return false;
        set |= range(c, hi);
        pos_ += 2;
        continue;
      }
      set.set(c);
    }
    if (negate) set.flip();
    set.reset(0);
    out = set;
    return true;
  }

  std::string_view p_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

// ---- Thompson NFA -----------------------------------------------------------------------------

struct NfaNode {
  enum Kind : std::uint8_t { kEps, kChar, kBol, kEol, kMatch } kind = kEps;
  int out = -1;
  int out2 = -1;  // kEps only
  int set = -1;   // kChar: index into Nfa::sets
};

struct Nfa {
  std::vector<NfaNode> nodes;
  std::vector<ByteSet> sets;
  bool overflow = false;

  int add(NfaNode n) {
    if (nodes.size() >= kMaxNfaNodes) {
      overflow = true;
      return 0;
    }
    nodes.push_back(n);
    return static_cast<int>(nodes.size() - 1);
  }

  // Builds `a` so that it continues into `next`; returns its entry node.
  int build(const std::vector<Ast>& ast, int a, int next) {
    if (overflow) return 0;
    const Ast& n = ast[static_cast<std::size_t>(a)];
    switch (n.kind) {
      case Ast::kSet: {
        sets.push_back(n.set);
        return add({NfaNode::kChar, next, -1, static_cast<int>(sets.size() - 1)});
      }
      case Ast::kBol:
        return add({NfaNode::kBol, next, -1, -1});
      case Ast::kEol:
        return add({NfaNode::kEol, next, -1, -1});
      case Ast::kCat:
        for (auto it = n.kids.rbegin(); it != n.kids.rend(); ++it) next = build(ast, *it, next);
        return next;
      case Ast::kAlt: {
        int cur = build(ast, n.kids.back(), next);
        for (std::size_t i = n.kids.size() - 1; i-- > 0;) {
          const int e = build(ast, n.kids[i], next);
          cur = add({NfaNode::kEps, e, cur, -1});
        }
        return cur;
      }
      case Ast::kRepeat: {
        const int child = n.kids[0];
        int cur = next;
        int copies = n.min;
        if (n.max < 0) {
          // A loop node: into the body again, or on.
          const int loop = add({NfaNode::kEps, -1, next, -1});
          const int body = build(ast, child, loop);
          if (overflow) return 0;
          nodes[static_cast<std::size_t>(loop)].out = body;
          if (n.min == 0) {
            cur = loop;
          } else {
            cur = body;
            copies = n.min - 1;
          }
        } else {
          // x{m,n}: m copies, then n-m nested optional ones: (x(x)?)?
          for (int i = n.min; i < n.max && !overflow; ++i) {
            const int e = build(ast, child, cur);
            cur = add({NfaNode::kEps, e, next, -1});
          }
        }
        for (int i = 0; i < copies && !overflow; ++i) cur = build(ast, child, cur);
        return cur;
      }
    }
    return 0;
  }
};

// glibc's DFA (build_trtable) moves over a '\n' into its "after a newline" context even without
// REG_NEWLINE, so `^` after a byte that was read, or a byte read after `$`, can match around a
// newline there. Patterns where either can happen are left to regexec: every `^` must be
// reachable only before any byte is read, and nothing but assertions may follow a `$`.
bool anchors_only_at_edges(const Nfa& nfa) {
  const std::size_t n = nfa.nodes.size();
  auto reach = [&](std::vector<int> stack) {
    std::vector<bool> seen(n, false);
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      if (i < 0 || seen[static_cast<std::size_t>(i)]) continue;
      seen[static_cast<std::size_t>(i)] = true;
      stack.push_back(nfa.nodes[static_cast<std::size_t>(i)].out);
      stack.push_back(nfa.nodes[static_cast<std::size_t>(i)].out2);
    }
    return seen;
  };
  std::vector<int> after_bytes;
  std::vector<int> after_eol;
  for (const NfaNode& node : nfa.nodes) {
    if (node.kind == NfaNode::kChar) after_bytes.push_back(node.out);
    if (node.kind == NfaNode::kEol) after_eol.push_back(node.out);
  }
  const std::vector<bool> a = reach(std::move(after_bytes));
  const std::vector<bool> b = reach(std::move(after_eol));
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] && nfa.nodes[i].kind == NfaNode::kBol) return false;
    if (b[i] && nfa.nodes[i].kind == NfaNode::kChar) return false;
  }
  return true;
}

// ---- Subset construction ----------------------------------------------------------------------

class Builder {
 public:
  explicit Builder(const Nfa& nfa) : nfa_(nfa), mark_(nfa.nodes.size(), 0) {}

  // Closes `stack` over epsilon edges (and ^ / $ edges when allowed); returns the sorted nodes
  // that matter to a DFA state: those that read a byte, the match, and $ assertions.
  std::vector<int> closure(std::vector<int> stack, bool bol, bool eol) {
    ++gen_;
    std::vector<int> out;
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      auto& m = mark_[static_cast<std::size_t>(i)];
      if (m == gen_) continue;
      m = gen_;
      ++work;
      const NfaNode& n = nfa_.nodes[static_cast<std::size_t>(i)];
      switch (n.kind) {
        case NfaNode::kEps:
          stack.push_back(n.out2);
          stack.push_back(n.out);
          break;
        case NfaNode::kBol:
          if (bol) stack.push_back(n.out);
          break;
        case NfaNode::kEol:
          out.push_back(i);
          if (eol) stack.push_back(n.out);
          break;
        case NfaNode::kChar:
        case NfaNode::kMatch:
          out.push_back(i);
          break;
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  bool has_match(const std::vector<int>& set) const {
    return std::any_of(set.begin(), set.end(), [&](int i) {
      return nfa_.nodes[static_cast<std::size_t>(i)].kind == NfaNode::kMatch;
    });
  }

  std::size_t work = 0;

 private:
  const Nfa& nfa_;
  std::vector<std::uint32_t> mark_;
  std::uint32_t gen_ = 0;
};

}  // namespace

std::optional<ByteRegex> ByteRegex::compile(std::string_view pattern) {
  Parser parser(pattern);
  const int root = parser.parse();
  if (root < 0) return std::nullopt;

  Nfa nfa;
  const int match = nfa.add({NfaNode::kMatch, -1, -1, -1});
  const int start = nfa.build(parser.nodes, root, match);
  if (nfa.overflow) return std::nullopt;
  if (!anchors_only_at_edges(nfa)) return std::nullopt;

  // Byte classes: bytes that every set treats alike share a column. NUL gets its own, as the
  // end of the subject.
  ByteRegex re;
  std::array<int, 256> cls{};
  cls.fill(1);
  cls[0] = 0;
  int count = 2;
  {
    std::vector<ByteSet> distinct = nfa.sets;
    std::sort(distinct.begin(), distinct.end(),
              [](const ByteSet& x, const ByteSet& y) { return x.to_string() < y.to_string(); });
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    for (const ByteSet& s : distinct) {
      std::vector<int> split(static_cast<std::size_t>(2 * count), -1);
      int next_count = 0;
      for (std::size_t b = 0; b < 256; ++b) {
        int& slot = split[static_cast<std::size_t>(2 * cls[b] + (s[b] ? 1 : 0))];
        if (slot < 0) slot = next_count++;
        cls[b] = slot;
      }
      count = next_count;
    }
  }
  // NUL stays class 0 after each split: it is the first byte seen.
  re.classes_ = static_cast<std::uint16_t>(count);
  std::vector<std::size_t> rep(static_cast<std::size_t>(count), 0);
  for (std::size_t b = 256; b-- > 0;) {
    re.class_of_[b] = static_cast<std::uint8_t>(cls[b]);
    rep[static_cast<std::size_t>(cls[b])] = b;
  }

  Builder builder(nfa);
  std::map<std::vector<int>, std::uint16_t> index;
  std::vector<std::vector<int>> states;
  std::vector<bool> initial;
  constexpr std::uint16_t kDeadState = 0;
  constexpr std::uint16_t kAcceptState = 1;
  states.emplace_back();
  initial.push_back(false);
  states.emplace_back();
  initial.push_back(false);
  auto intern = [&](std::vector<int> key, bool is_initial) -> std::optional<std::uint16_t> {
    if (key.empty()) return kDeadState;
    if (is_initial) key.push_back(-1);  // ^ still holds there: never the same state as a later one
    if (const auto it = index.find(key); it != index.end()) return it->second;
    if (states.size() >= kMaxDfaStates) return std::nullopt;
    const auto id = static_cast<std::uint16_t>(states.size());
    index.emplace(key, id);
    if (is_initial) key.pop_back();
    states.push_back(std::move(key));
    initial.push_back(is_initial);
    return id;
  };

  const auto first = intern(builder.closure({start}, true, false), true);
  if (!first) return std::nullopt;
  re.start_ = *first;
  re.flags_ = {kDead, static_cast<std::uint8_t>(kAccept | kAcceptAtEnd)};
  re.next_.assign(2 * static_cast<std::size_t>(count), 0);
  for (std::size_t c = 0; c < static_cast<std::size_t>(count); ++c) {
    re.next_[count + c] = kAcceptState;
  }
  for (std::size_t s = 2; s < states.size(); ++s) {
    const std::vector<int> cur = states[s];  // a copy: intern() may grow `states`
    std::uint8_t flags = 0;
    if (builder.has_match(cur)) flags |= kAccept;
    if (builder.has_match(builder.closure(cur, initial[s], true))) flags |= kAcceptAtEnd;
    const std::size_t row = re.next_.size();
    re.next_.resize(row + static_cast<std::size_t>(count), kDeadState);
    re.next_[row] = (flags & kAcceptAtEnd) != 0 ? kAcceptState : kDeadState;
    if ((flags & kAccept) == 0) {
      for (std::size_t c = 1; c < static_cast<std::size_t>(count); ++c) {
        // The unanchored search may start a match at every position.
        std::vector<int> seeds{start};
        builder.work += cur.size();
        for (const int i : cur) {
          const NfaNode& n = nfa.nodes[static_cast<std::size_t>(i)];
          if (n.kind == NfaNode::kChar && nfa.sets[static_cast<std::size_t>(n.set)][rep[c]]) {
            seeds.push_back(n.out);
          }
        }
        const auto to = intern(builder.closure(std::move(seeds), false, false), false);
        if (!to || builder.work > kMaxWork) return std::nullopt;
        re.next_[row + c] = *to;
      }
    }
    re.flags_.push_back(flags);
  }
  // A match is final: every way into an accepting state goes to the accepting sink instead, so
  // search() recognises both final answers by the state number alone.
  for (std::uint16_t& to : re.next_) {
    if ((re.flags_[to] & kAccept) != 0) to = kAcceptState;
  }
  if ((re.flags_[re.start_] & kAccept) != 0) re.start_ = kAcceptState;
  return re;
}

bool ByteRegex::search(std::string_view s) const noexcept {
  // States 0 and 1 are the dead state and the accepting sink (see compile()).
  std::size_t state = start_;
  if (state <= 1) return state == 1;
  const std::uint16_t* next = next_.data();
  const std::size_t width = classes_;
  for (const char ch : s) {
    state = next[state * width + class_of_[static_cast<unsigned char>(ch)]];
    if (state <= 1) return state == 1;
  }
  return (flags_[state] & kAcceptAtEnd) != 0;
}

}  // namespace trackevent::detail
