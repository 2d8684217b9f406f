// The migration checksums computed at build time (cmake/EmbedSchema.cmake): the SHA-256 of exactly
// the SQL compiled in, and the values earlier builds recorded in schema_migrations. Checked
// against coreutils' sha256sum, an implementation independent of CMake's.
#include "schema/migrate.hpp"
#include "schema/migrate_internal.hpp"
#include "schema/partitions.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace te = trackevent;

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// sha256sum of `bytes`, as 64 lowercase hex digits ("" if it could not run).
std::string sha256sum(const std::string& bytes) {
  char path[] = "/tmp/te_checksum_XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return "";
  ::close(fd);
  std::ofstream(path, std::ios::binary) << bytes;
  std::string out;
  if (FILE* p = ::popen(("sha256sum < " + std::string(path)).c_str(), "r")) {
    char buf[128] = {};
    if (std::fgets(buf, sizeof buf, p) != nullptr)
      out.assign(buf, std::min<std::size_t>(64, std::strlen(buf)));
    ::pclose(p);
  }
  std::filesystem::remove(path);
  return out;
}

TEST(MigrationChecksums, AreWhatEarlierBuildsRecorded) {
  // Databases migrated by earlier builds hold these in schema_migrations: were one to change,
  // `migrate` would refuse every such database with "checksum mismatch".
  EXPECT_EQ(te::builtin_migrations(te::DbTarget::Kind::postgres).at(0).checksum,
            "212607ae8f9618cbd68e5e74f3f93884382593901959b2c3da699ac02c3bf51d");
  EXPECT_EQ(te::builtin_migrations(te::DbTarget::Kind::postgres).at(1).checksum,
            "daaac0024f100fc6489ef31b33d3dd5b719190784c505684e1cf3ef423674710");
  EXPECT_EQ(te::builtin_migrations(te::DbTarget::Kind::sqlite).at(0).checksum,
            "3f33f152c3c1cab04aade2710bcbcd4be37ed80e9609f5f2c3b958169bd84b67");
}

TEST(MigrationChecksums, AreTheSha256OfTheFilesCompiledIn) {
  for (const auto kind : {te::DbTarget::Kind::postgres, te::DbTarget::Kind::sqlite}) {
    const std::string dir = kind == te::DbTarget::Kind::postgres ? "postgres" : "sqlite";
    for (const te::Migration& m : te::builtin_migrations(kind)) {
      const auto file = std::filesystem::path(TRACKEVENT_SOURCE_DIR) / "schema" / dir /
                        (te::detail::label(m) + ".sql");
      EXPECT_EQ(m.sql, read_file(file)) << file;
      EXPECT_EQ(m.checksum, sha256sum(m.sql)) << file;
    }
  }
}

TEST(MigrationLockKey, IsTheStartOfTheSha256OfItsName) {
  // Changing the key would let migrators of different versions run at the same time.
  EXPECT_EQ(te::detail::migration_lock_key(), 1969454243556375699LL);
  const std::string digest = sha256sum("trackevent.migrate");
  ASSERT_EQ(digest.size(), 64u);
  EXPECT_EQ(static_cast<std::uint64_t>(te::detail::migration_lock_key()),
            std::stoull(digest.substr(0, 16), nullptr, 16));
}

TEST(PartitionsLockKey, IsTheStartOfTheSha256OfItsName) {
  // Changing the key would let `trackevent partitions` of different versions run at once.
  const std::string digest = sha256sum("trackevent.partitions");
  ASSERT_EQ(digest.size(), 64u);
  EXPECT_EQ(static_cast<std::uint64_t>(te::partitions_lock_key()),
            std::stoull(digest.substr(0, 16), nullptr, 16));
  EXPECT_NE(te::partitions_lock_key(), te::detail::migration_lock_key());
}

}  // namespace
