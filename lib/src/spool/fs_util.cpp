#include "spool/fs_util.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace trackevent::detail {

namespace {

// Root is trusted like ssh trusts it: a root-owned directory cannot be tampered with by others.
bool trusted_owner(uid_t uid) { return uid == ::geteuid() || uid == 0; }

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

std::string mode_string(unsigned mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777U);
  return buf;
}

Result<> ensure_private_dir(const std::filesystem::path& dir, std::string_view what) {
  const std::string label = std::string(what) + " " + dir.string();
  if (dir.empty()) return Error{std::string(what) + " is empty"};
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {  // usually it exists and there is nothing to create
    // Walk the prefixes ourselves: std::filesystem::create_directories would use 0777 & ~umask.
    std::filesystem::path prefix;
    for (const auto& part : dir) {
      prefix /= part;
      if (part == prefix.root_path() || part == prefix.root_directory()) continue;
      if (::mkdir(prefix.c_str(), 0700) == 0) {
        // mkdir's mode is filtered by the umask; a private directory must still be usable by us.
        ::chmod(prefix.c_str(), 0700);
      } else if (errno != EEXIST) {
        return Error{"cannot create " + label + ": " + prefix.string() + ": " + errno_text(errno)};
      }
    }
    if (::stat(dir.c_str(), &st) != 0) {
      return Error{"cannot use " + label + ": " + errno_text(errno)};
    }
  }
  if (!S_ISDIR(st.st_mode)) return Error{label + " is not a directory"};
  if (!trusted_owner(st.st_uid)) {
    return Error{label + " is owned by uid " + std::to_string(st.st_uid) +
                 ", not by the current user (uid " + std::to_string(::geteuid()) +
                 "); refusing to use it"};
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return Error{label + " is writable by group or others (mode " + mode_string(st.st_mode) +
                 "); refusing to use it: chmod 700 " + dir.string()};
  }
  return ok();
}

Result<int> open_private_file(const std::filesystem::path& file, int flags) {
  const int fd = ::open(file.c_str(), flags | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Error{"cannot open " + file.string() + ": " + errno_text(errno)};
  Error error;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    error.message = "cannot stat " + file.string() + ": " + errno_text(errno);
  } else if (!S_ISREG(st.st_mode)) {
    error.message = file.string() + " is not a regular file";
  } else if (!trusted_owner(st.st_uid)) {
    error.message = file.string() + " is owned by uid " + std::to_string(st.st_uid) +
                    ", not by the current user; refusing to use it";
  } else if ((st.st_mode & 07777) != 0600 && ::fchmod(fd, 0600) != 0) {
    // Created under a strict umask, or left loose by an older version: tighten it.
    error.message = "cannot chmod 600 " + file.string() + ": " + errno_text(errno);
  } else {
    return fd;
  }
  ::close(fd);
  return error;
}

}  // namespace trackevent::detail
