#pragma once
// Private-file helpers shared by the spool and the dead-letter file: directories that only their
// owner can write to (0700) and files only their owner can read (0600).

#include "base/result.hpp"

#include <filesystem>
#include <string>
#include <string_view>

namespace trackevent::detail {

/// Creates `dir` and any missing parents with mode 0700, then checks that `dir` is a directory
/// owned by the effective user (or root) that group and others cannot write to. Fails with a
/// message naming the path and the problem; `what` names the directory in it (e.g. "spool
/// directory").
[[nodiscard]] Result<> ensure_private_dir(const std::filesystem::path& dir, std::string_view what);

/// Opens `file` (creating it 0600) without following a symlink, checks that it is a regular file
/// owned by the effective user (or root), and tightens its mode to 0600 if it is looser. Returns
/// the fd, opened with `flags` (e.g. O_RDWR or O_WRONLY | O_APPEND) plus O_CREAT | O_CLOEXEC |
/// O_NOFOLLOW; the caller closes it.
[[nodiscard]] Result<int> open_private_file(const std::filesystem::path& file, int flags);

/// Renders st_mode permission bits as "0755".
[[nodiscard]] std::string mode_string(unsigned mode);

}  // namespace trackevent::detail
