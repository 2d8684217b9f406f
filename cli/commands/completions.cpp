#include "commands/completions.hpp"

#include "exit_codes.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string_view>
#include <vector>

namespace trackevent::cli {
namespace {

/// What a value (of an option or a positional) completes to.
enum class ValueKind {
  none,    ///< free-form (a number, a URL, JSON): nothing to offer
  choice,  ///< one of `choices` (CLI11's IsMember)
  file,    ///< a path (type name FILE)
  event,   ///< an event name from the catalog, listed at completion time
  meta,    ///< `send -m KEY=`: the metadata keys the catalog's schema gives the chosen --event
};

struct OptionSpec {
  std::vector<std::string> longs;   // without "--"
  std::vector<std::string> shorts;  // without "-"
  std::string help;                 // one short clause
  bool takes_value = false;
  bool repeatable = false;
  std::string type_name;  // FILE, N, URL ... (without CLI11's ":{a,b}" suffix)
  std::vector<std::string> choices;
  ValueKind kind = ValueKind::none;
};

/// A subcommand's own subcommand (`events lint`): offered as a word after its parent, and then
/// its positional. Its options are only --help, which the scripts do not offer there.
struct NestedSpec {
  std::string name;
  std::string help;
  std::optional<OptionSpec> positional;
};

struct CommandSpec {
  std::string name;  // empty for the program itself
  std::string help;
  std::vector<OptionSpec> options;
  std::optional<OptionSpec> positional;  // our commands have at most one (possibly repeated)
  std::vector<NestedSpec> nested;        // none where there is a positional
};

/// The first clause of a help text without its parentheticals: enough for a completion menu.
std::string short_help(const std::string& text) {
  std::string out;
  int depth = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (depth == 0 && c == ';') break;
    if (c == '(') {
      if (depth++ == 0 && !out.empty() && out.back() == ' ') out.pop_back();
      continue;
    }
    if (c == ')' && depth > 0) {
      --depth;
      continue;
    }
    if (depth == 0) out += c;
  }
  return out;
}

/// "{json,text}" (IsMember's description) -> {"json", "text"}; empty for other validators.
std::vector<std::string> parse_choices(const std::string& description) {
  std::vector<std::string> out;
  if (description.size() < 2 || description.front() != '{' || description.back() != '}') {
    return out;
  }
  std::string item;
  for (const char c : description.substr(1, description.size() - 2)) {
    if (c == ',') {
      out.push_back(item);
      item.clear();
    } else {
      item += c;
    }
  }
  if (!item.empty()) out.push_back(item);
  return out;
}

OptionSpec describe_option(CLI::Option& opt, const std::string& command) {
  OptionSpec spec;
  spec.longs = opt.get_lnames();
  spec.shorts = opt.get_snames();
  spec.help = short_help(opt.get_description());
  spec.takes_value = opt.get_expected_max() > 0;  // flags expect 0 values
  spec.repeatable = opt.get_items_expected_max() > 1;
  const std::string full_type = opt.get_type_name();
  spec.type_name = full_type.substr(0, full_type.find(':'));
  for (int i = 0;; ++i) {
    CLI::Validator* validator = nullptr;
    try {
      validator = opt.get_validator(i);
    } catch (const CLI::OptionNotFound&) {
      break;
    }
    auto choices = parse_choices(validator->get_description());
    if (!choices.empty()) spec.choices = std::move(choices);
  }
  if (!spec.takes_value) return spec;
  if (!spec.choices.empty()) {
    spec.kind = ValueKind::choice;
  } else if (spec.type_name == "FILE") {
    spec.kind = ValueKind::file;
  } else if (command == "send" && spec.longs == std::vector<std::string>{"event"}) {
    spec.kind = ValueKind::event;
  } else if (command == "send" && spec.shorts == std::vector<std::string>{"m"}) {
    spec.kind = ValueKind::meta;
  }
  return spec;
}

CommandSpec describe_command(CLI::App& app, const std::string& name) {
  CommandSpec spec;
  spec.name = name;
  spec.help = short_help(app.get_description());
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_group().empty()) continue;  // hidden
    OptionSpec option = describe_option(*opt, name);
    if (opt->get_positional() && option.longs.empty() && option.shorts.empty()) {
      if (!spec.positional) spec.positional = std::move(option);
      continue;
    }
    spec.options.push_back(std::move(option));
  }
  return spec;
}

void describe_nested(CLI::App& app, CommandSpec& spec) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App* a) { return !a->get_group().empty(); })) {
    const CommandSpec inner = describe_command(*sub, sub->get_name());
    spec.nested.push_back({inner.name, inner.help, inner.positional});
  }
}

/// The program (commands[0], name "") and every visible subcommand, in table order.
std::vector<CommandSpec> describe(CLI::App& root) {
  std::vector<CommandSpec> commands;
  commands.push_back(describe_command(root, ""));
  for (CLI::App* sub : root.get_subcommands([](CLI::App* a) { return !a->get_group().empty(); })) {
    commands.push_back(describe_command(*sub, sub->get_name()));
    describe_nested(*sub, commands.back());
  }
  return commands;
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

std::vector<std::string> option_words(const OptionSpec& o) {
  std::vector<std::string> words;
  for (const auto& s : o.shorts) words.push_back("-" + s);
  for (const auto& l : o.longs) words.push_back("--" + l);
  return words;
}

/// Inside '...' for bash and zsh.
std::string sh_single(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out;
}

constexpr std::string_view kGenerated =
    "Generated by `trackevent completions {shell}` from the parser itself; do not edit.\n"
    "# Regenerate all three scripts with scripts/gen-completions.\n";

std::string header(std::string_view shell) {
  std::string text{kGenerated};
  text.replace(text.find("{shell}"), 7, shell);
  return text;
}

// --- bash -------------------------------------------------------------------------------------

std::string bash_script(const std::vector<CommandSpec>& commands) {
  std::ostringstream s;
  s << "# bash completion for trackevent                           -*- shell-script -*-\n# "
    << header("bash") << R"SH(
# Event names for `send --event` (from the catalog in --catalog or $TRACKEVENT_CATALOG).
__trackevent_events() {
  local -a catalog=()
  local i
  for ((i = 1; i + 1 < ${#COMP_WORDS[@]}; i++)); do
    [[ ${COMP_WORDS[i]} == --catalog ]] && catalog=(--catalog "${COMP_WORDS[i + 1]}")
  done
  "${COMP_WORDS[0]}" "${catalog[@]}" events --names 2>/dev/null
}

# Metadata keys for `send -m KEY=`: those the catalog's schema gives the --event on the line.
__trackevent_meta_keys() {
  local -a catalog=()
  local event= i key
  for ((i = 1; i + 1 < ${#COMP_WORDS[@]}; i++)); do
    [[ ${COMP_WORDS[i]} == --catalog ]] && catalog=(--catalog "${COMP_WORDS[i + 1]}")
    [[ ${COMP_WORDS[i]} == --event ]] && event=${COMP_WORDS[i + 1]}
  done
  [[ -n $event ]] || return 0
  while IFS= read -r key; do
    printf '%s=\n' "$key"
  done < <("${COMP_WORDS[0]}" "${catalog[@]}" events --keys "$event" 2>/dev/null)
}

__trackevent_files() {
  if declare -F _filedir >/dev/null; then
    _filedir
  else
    compopt -o filenames 2>/dev/null
    local IFS=$'\n'
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}

_trackevent() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev= cword=$COMP_CWORD
  local -a words=("${COMP_WORDS[@]}")
  COMPREPLY=()
  # "--opt=value": bash splits the word at '=' (COMP_WORDBREAKS).
  if [[ $cur == = ]]; then
    cur= prev=${words[cword - 1]}
  elif ((cword >= 2)) && [[ ${words[cword - 1]} == = ]]; then
    prev=${words[cword - 2]}
  elif ((cword >= 1)); then
    prev=${words[cword - 1]}
  fi

  # The subcommand: the first word that is neither an option nor an option's value.
  local cmd= i
  for ((i = 1; i < cword; i++)); do
    case ${words[i]} in
)SH";
  std::vector<std::string> global_value_options;
  for (const auto& o : commands.front().options) {
    if (!o.takes_value) continue;
    for (auto& w : option_words(o)) global_value_options.push_back(w);
  }
  if (!global_value_options.empty()) {
    s << "      " << join(global_value_options, "|")
      << ")\n        if [[ ${words[i + 1]} == = ]]; then ((i += 2)); else ((i++)); fi ;;\n";
  }
  s << R"SH(      -* | =) ;;
      *)
        cmd=${words[i]}
        break
        ;;
    esac
  done

  # The value of an option.
  case $cmd:$prev in
)SH";
  // One case per distinct action, in first-seen order; free-form values complete to nothing.
  std::vector<std::pair<std::string, std::vector<std::string>>> actions;
  for (const auto& c : commands) {
    for (const auto& o : c.options) {
      if (!o.takes_value) continue;
      std::string action;
      switch (o.kind) {
        case ValueKind::choice:
          action =
              "COMPREPLY=($(compgen -W '" + sh_single(join(o.choices, " ")) + "' -- \"$cur\"))";
          break;
        case ValueKind::file:
          action = "__trackevent_files";
          break;
        case ValueKind::event:
          action = "COMPREPLY=($(compgen -W \"$(__trackevent_events)\" -- \"$cur\"))";
          break;
        case ValueKind::meta:
          action =
              "COMPREPLY=($(compgen -W \"$(__trackevent_meta_keys)\" -- \"$cur\"))\n"
              "      compopt -o nospace 2>/dev/null";
          break;
        case ValueKind::none:
          break;
      }
      auto it = std::find_if(actions.begin(), actions.end(),
                             [&](const auto& a) { return a.first == action; });
      if (it == actions.end()) it = actions.insert(actions.end(), {action, {}});
      for (auto& w : option_words(o)) it->second.push_back(c.name + ":" + w);
    }
  }
  for (const auto& [action, patterns] : actions) {
    s << "    " << join(patterns, " | ") << ")\n";
    if (!action.empty()) s << "      " << action << "\n";
    s << "      return\n      ;;\n";
  }
  s << R"SH(  esac

  if [[ $cur == -* ]]; then
    case $cmd in
)SH";
  for (const auto& c : commands) {
    std::vector<std::string> words;
    for (const auto& o : c.options) {
      for (auto& w : option_words(o)) words.push_back(w);
    }
    s << "      " << (c.name.empty() ? "''" : c.name) << ") COMPREPLY=($(compgen -W '"
      << sh_single(join(words, " ")) << "' -- \"$cur\")) ;;\n";
  }
  s << R"SH(    esac
    return
  fi

  case $cmd in
)SH";
  std::vector<std::string> names;
  for (const auto& c : commands) {
    if (!c.name.empty()) names.push_back(c.name);
  }
  s << "    '') COMPREPLY=($(compgen -W '" << join(names, " ") << "' -- \"$cur\")) ;;\n";
  for (const auto& c : commands) {
    if (c.name.empty() || c.nested.empty()) continue;
    // Its subcommand's name until one is on the line, then that subcommand's positional.
    std::vector<std::string> nested_names;
    s << "    " << c.name << ")\n      case \" ${words[*]:1:cword-1} \" in\n";
    for (const auto& n : c.nested) {
      nested_names.push_back(n.name);
      const bool files = n.positional && n.positional->kind == ValueKind::file;
      s << "        *\" " << n.name << " \"*) " << (files ? "__trackevent_files" : ":") << " ;;\n";
    }
    s << "        *) COMPREPLY=($(compgen -W '" << sh_single(join(nested_names, " "))
      << "' -- \"$cur\")) ;;\n      esac\n      ;;\n";
  }
  for (const auto& c : commands) {
    if (c.name.empty() || !c.positional) continue;
    const OptionSpec& p = *c.positional;
    switch (p.kind) {
      case ValueKind::choice:
        s << "    " << c.name << ") COMPREPLY=($(compgen -W '" << sh_single(join(p.choices, " "))
          << "' -- \"$cur\")) ;;\n";
        break;
      case ValueKind::file:
        s << "    " << c.name << ") __trackevent_files ;;\n";
        break;
      case ValueKind::event:
        s << "    " << c.name << ") COMPREPLY=($(compgen -W \"$(__trackevent_events)\" -- "
          << "\"$cur\")) ;;\n";
        break;
      case ValueKind::meta:
      case ValueKind::none:
        break;
    }
  }
  s << R"SH(  esac
} &&
  complete -F _trackevent trackevent
)SH";
  return s.str();
}

// --- zsh --------------------------------------------------------------------------------------

/// Text inside an _arguments "[...]" description (within '...').
std::string zsh_help(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '[' || c == ']') out += '\\';
    out += c;
  }
  return sh_single(out);
}

std::string zsh_action(const OptionSpec& o) {
  switch (o.kind) {
    case ValueKind::choice:
      return "(" + join(o.choices, " ") + ")";
    case ValueKind::file:
      return "_files";
    case ValueKind::event:
      return "_trackevent_events";
    case ValueKind::meta:
      return "_trackevent_meta_keys";
    case ValueKind::none:
      break;
  }
  return " ";
}

std::string zsh_message(const OptionSpec& o) {
  std::string name = o.type_name.empty() ? "value" : o.type_name;
  std::string out;
  for (const char c : name) {
    if (c == ':') out += '\\';
    out += c;
  }
  return sh_single(out);
}

/// One _arguments spec (or a brace pair for -x/--xx aliases), with a leading line continuation.
void zsh_option_spec(std::ostringstream& s, const OptionSpec& o, std::string_view indent) {
  const auto words = option_words(o);
  const bool is_help =
      o.longs == std::vector<std::string>{"help"} || o.longs == std::vector<std::string>{"version"};
  std::string exclusion;
  if (is_help) {
    exclusion = "(- *)";
  } else if (words.size() > 1 && !o.repeatable) {
    exclusion = "(" + join(words, " ") + ")";
  }
  const std::string star = o.repeatable ? "*" : "";
  std::string tail = "[" + zsh_help(o.help) + "]";
  if (o.takes_value) tail += ":" + zsh_message(o) + ":" + zsh_action(o);
  s << " \\\n" << indent;
  if (words.size() == 1) {
    const std::string suffix = o.takes_value ? (o.longs.empty() ? "+" : "=") : "";
    s << "'" << exclusion << star << words.front() << suffix << tail << "'";
    return;
  }
  // '(-q --quiet)'{-q,--quiet}'[...]'
  s << "'" << exclusion << star << "'{";
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) s << ",";
    const bool is_long = words[i].rfind("--", 0) == 0;
    s << words[i] << (o.takes_value ? (is_long ? "=" : "+") : "");
  }
  s << "}'" << tail << "'";
}

std::string zsh_script(const std::vector<CommandSpec>& commands) {
  std::ostringstream s;
  s << "#compdef trackevent\n# zsh completion for trackevent.\n# " << header("zsh") << R"SH(
# Event names for `send --event` (from the catalog in --catalog or $TRACKEVENT_CATALOG).
(( $+functions[_trackevent_events] )) ||
_trackevent_events() {
  local -a names catalog
  [[ -n $te_catalog ]] && catalog=(--catalog ${(Q)te_catalog})
  names=(${(f)"$(_call_program events ${(Q)te_program} $catalog events --names 2>/dev/null)"})
  _wanted events expl 'event name' compadd -a names
}

# Metadata keys for `send -m KEY=`: those the catalog's schema gives the chosen --event.
(( $+functions[_trackevent_meta_keys] )) ||
_trackevent_meta_keys() {
  local -a keys catalog
  local event=${opt_args[--event]}
  [[ -n $event ]] || return 1
  [[ -n $te_catalog ]] && catalog=(--catalog ${(Q)te_catalog})
  keys=(${(f)"$(_call_program keys ${(Q)te_program} $catalog events --keys ${(Q)event} 2>/dev/null)"})
  _wanted keys expl 'metadata key' compadd -S = -a keys
}

(( $+functions[_trackevent_commands] )) ||
_trackevent_commands() {
  local -a commands=(
)SH";
  for (const auto& c : commands) {
    if (c.name.empty()) continue;
    s << "    '" << c.name << ":" << sh_single(c.help) << "'\n";
  }
  s << R"SH(  )
  _describe -t commands 'trackevent command' commands
}

_trackevent() {
  local curcontext=$curcontext state line ret=1
  local te_program=${words[1]} te_catalog
  typeset -A opt_args
  _arguments -C -s -S)SH";
  for (const auto& o : commands.front().options) zsh_option_spec(s, o, "    ");
  s << R"SH( \
    '1: :_trackevent_commands' \
    '*:: :->args' && ret=0
  te_catalog=${opt_args[--catalog]}
  case $state in
    args)
      curcontext=${curcontext%:*:*}:trackevent-$words[1]:
      case $words[1] in
)SH";
  for (const auto& c : commands) {
    if (c.name.empty()) continue;
    s << "        " << c.name << ")\n          _arguments -s -S";
    for (const auto& o : c.options) zsh_option_spec(s, o, "            ");
    if (c.positional) {
      const OptionSpec& p = *c.positional;
      s << " \\\n            '" << (p.repeatable ? "*" : "1") << ":" << zsh_message(p) << ":"
        << zsh_action(p) << "'";
    }
    if (!c.nested.empty()) {
      // The subcommand's name first, then files when one of them takes files.
      std::vector<std::string> names;
      bool files = false;
      for (const auto& n : c.nested) {
        names.push_back(n.name);
        files = files || (n.positional && n.positional->kind == ValueKind::file);
      }
      s << " \\\n            '1:COMMAND:(" << join(names, " ") << ")'";
      if (files) s << " \\\n            '*:FILE:_files'";
    }
    s << " && ret=0\n          ;;\n";
  }
  s << R"SH(      esac
      ;;
  esac
  return ret
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _trackevent "$@"
else
  compdef _trackevent trackevent
fi
)SH";
  return s.str();
}

// --- fish -------------------------------------------------------------------------------------

std::string fish_quote(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

std::string fish_script(const std::vector<CommandSpec>& commands) {
  std::vector<std::string> names;
  for (const auto& c : commands) {
    if (!c.name.empty()) names.push_back(c.name);
  }
  const std::string all = join(names, " ");
  std::ostringstream s;
  s << "# fish completion for trackevent.\n# " << header("fish") << R"SH(
# Event names for `send --event` (from the catalog in --catalog or $TRACKEVENT_CATALOG).
function __trackevent_events
    set -l tokens (commandline -opc)
    set -l catalog
    set -l i (contains -i -- --catalog $tokens)
    and test $i -lt (count $tokens)
    and set catalog --catalog $tokens[(math $i + 1)]
    $tokens[1] $catalog events --names 2>/dev/null
end

# Metadata keys for `send -m KEY=`: those the catalog's schema gives the chosen --event.
function __trackevent_meta_keys
    set -l tokens (commandline -opc)
    set -l catalog
    set -l i (contains -i -- --catalog $tokens)
    and test $i -lt (count $tokens)
    and set catalog --catalog $tokens[(math $i + 1)]
    set -l j (contains -i -- --event $tokens)
    and test $j -lt (count $tokens)
    or return
    for key in ($tokens[1] $catalog events --keys $tokens[(math $j + 1)] 2>/dev/null)
        echo $key=
    end
end

complete -c trackevent -f
)SH";
  for (const auto& c : commands) {
    const std::string condition = c.name.empty() ? "not __fish_seen_subcommand_from " + all
                                                 : "__fish_seen_subcommand_from " + c.name;
    s << "\n# " << (c.name.empty() ? "trackevent" : "trackevent " + c.name) << "\n";
    if (c.name.empty()) {
      for (const auto& sub : commands) {
        if (sub.name.empty()) continue;
        s << "complete -c trackevent -n '" << condition << "' -a " << sub.name << " -d "
          << fish_quote(sub.help) << "\n";
      }
    }
    for (const auto& o : c.options) {
      s << "complete -c trackevent -n '" << condition << "'";
      for (const auto& sh : o.shorts) s << " -s " << sh;
      for (const auto& l : o.longs) s << " -l " << l;
      if (o.takes_value) {
        switch (o.kind) {
          case ValueKind::choice:
            s << " -x -a " << fish_quote(join(o.choices, " "));
            break;
          case ValueKind::file:
            s << " -r -F";
            break;
          case ValueKind::event:
            s << " -x -a '(__trackevent_events)'";
            break;
          case ValueKind::meta:
            s << " -x -a '(__trackevent_meta_keys)'";
            break;
          case ValueKind::none:
            s << " -x";
            break;
        }
      }
      s << " -d " << fish_quote(o.help) << "\n";
    }
    for (const auto& n : c.nested) {
      s << "complete -c trackevent -n '" << condition << "; and not __fish_seen_subcommand_from "
        << n.name << "' -f -a " << n.name << " -d " << fish_quote(n.help) << "\n";
      if (n.positional && n.positional->kind == ValueKind::file) {
        s << "complete -c trackevent -n '" << condition << "; and __fish_seen_subcommand_from "
          << n.name << "' -F\n";
      }
    }
    if (c.positional && !c.name.empty()) {
      const OptionSpec& p = *c.positional;
      if (p.kind == ValueKind::file) {
        s << "complete -c trackevent -n '" << condition << "' -F\n";
      } else if (p.kind == ValueKind::choice) {
        s << "complete -c trackevent -n '" << condition << "' -a "
          << fish_quote(join(p.choices, " ")) << "\n";
      }
    }
  }
  return s.str();
}

}  // namespace

std::string completion_script(CLI::App& root, const std::string& shell) {
  const auto commands = describe(root);
  if (shell == "bash") return bash_script(commands);
  if (shell == "zsh") return zsh_script(commands);
  if (shell == "fish") return fish_script(commands);
  return {};
}

void setup_completions(CLI::App& app, CompletionsOptions& o) {
  o.root = app.get_parent();
  app.add_option("shell", o.shell, "the shell to print a completion script for")
      ->required()
      ->type_name("SHELL")
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
}

int run_completions(const CompletionsOptions& o, const GlobalOptions& /*global*/) {
  const std::string script =
      o.root == nullptr ? std::string{} : completion_script(*o.root, o.shell);
  if (script.empty()) return exit_code::usage;
  if (std::fwrite(script.data(), 1, script.size(), stdout) != script.size() ||
      std::fflush(stdout) != 0) {
    return exit_code::failure;
  }
  return exit_code::ok;
}

}  // namespace trackevent::cli
