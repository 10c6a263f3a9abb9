#include "store/janitor.hpp"

#include <algorithm>
#include <charconv>
#include <limits>

#include "store/internal.hpp"

namespace clupy::store {
namespace {

long long parse_ll(std::string_view s) {
  long long v = 0;
  // Scores may come back as "1.7e+12" or "1732600000123": parse as double then round.
  double d = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec == std::errc() && end == s.data() + s.size()) v = static_cast<long long>(d);
  return v;
}

std::uint64_t parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

const char* to_string(Removal::Reason reason) {
  switch (reason) {
    case Removal::Reason::kIdleTtl:
      return "idle_ttl";
    case Removal::Reason::kOverBudget:
      return "over_budget";
    case Removal::Reason::kJobEnded:
      return "job_ended";
    case Removal::Reason::kOrphan:
      return "orphan";
  }
  return "unknown";
}

std::size_t JanitorReport::count(Removal::Reason reason) const {
  return static_cast<std::size_t>(std::count_if(
      removed.begin(), removed.end(), [&](const Removal& r) { return r.reason == reason; }));
}

std::string job_temporary_prefix(std::string_view job_id) {
  if (job_id.empty() || job_id.find('/') != std::string_view::npos)
    throw StoreError(StoreError::Code::kInvalidArgument,
                     "invalid job id '" + std::string(job_id) + "': empty or contains '/'");
  return "tmp/" + std::string(job_id) + "/";
}

class Janitor::Impl {
 public:
  Impl(StoreOptions options, JanitorPolicy policy)
      : options_((validate_options(options), std::move(options))),
        policy_(policy),
        layout_(options_.key_prefix),
        session_(parse_redis_url(options_.redis_url), options_) {}

  struct FileInfo {
    std::string name;
    long long atime = 0;
    std::string blob;
    std::uint64_t size = 0;
    bool pinned = false;
  };

  // Metadata of files by name (missing ones are dropped).
  std::vector<FileInfo> lookup(RedisConnection& c, const Reply& names_with_scores,
                               bool with_scores) {
    std::vector<FileInfo> out;
    std::size_t step = with_scores ? 2 : 1;
    std::size_t n = names_with_scores.size() / step;
    for (std::size_t i = 0; i < n; ++i)
      c.append({"HMGET", layout_.file(names_with_scores[i * step].str()), "blob", "size", "pinned",
                "atime"});
    for (std::size_t i = 0; i < n; ++i) {
      Reply r = c.read_reply();
      if (r[0].is_nil()) continue;
      FileInfo f;
      f.name = std::string(names_with_scores[i * step].str());
      f.blob = std::string(r[0].str());
      f.size = parse_u64(r[1].str());
      f.pinned = r[2].str() == "1";
      f.atime = parse_ll(r[3].str());
      out.push_back(std::move(f));
    }
    return out;
  }

  bool evict(RedisConnection& c, const FileInfo& f, long long max_atime) {
    const auto& L = layout_;
    return c.call({"EVAL", kScriptEvict, "4", L.file(f.name), L.names(), L.atime(), L.retired(),
                   f.name, f.blob, std::to_string(max_atime), "1"})
               .integer() == 1;
  }

  void claim_orphans(JanitorReport& report, long long now) {
    long long cutoff = now - policy_.orphan_grace.count();
    session_.retry("janitor: orphans", [&](RedisConnection& c) {
      Reply blobs = c.call({"ZRANGEBYSCORE", layout_.writing(), "-inf", std::to_string(cutoff)});
      for (std::size_t i = 0; i < blobs.size(); ++i) {
        std::string blob(blobs[i].str());
        if (c.call({"EVAL", kScriptClaimOrphan, "2", layout_.writing(), layout_.retired(), blob,
                    std::to_string(cutoff)})
                .integer() == 1)
          report.removed.push_back({Removal::Reason::kOrphan, "", blob, 0});
      }
      return 0;
    });
  }

  void expire_idle(JanitorReport& report, long long now) {
    if (policy_.idle_ttl.count() <= 0) return;
    long long cutoff = now - policy_.idle_ttl.count();
    session_.retry("janitor: idle files", [&](RedisConnection& c) {
      Reply names = c.call({"ZRANGEBYSCORE", layout_.atime(), "-inf", std::to_string(cutoff)});
      for (const FileInfo& f : lookup(c, names, false)) {
        if (f.pinned) continue;
        if (evict(c, f, cutoff))
          report.removed.push_back({Removal::Reason::kIdleTtl, f.name, f.blob, f.size});
      }
      return 0;
    });
  }

  void enforce_budget(JanitorReport& report) {
    session_.retry("janitor: memory budget", [&](RedisConnection& c) {
      Reply names = c.call({"ZRANGE", layout_.atime(), "0", "-1"});
      std::vector<FileInfo> files = lookup(c, names, false);
      // Least recently used first; the zset order is already by atime, but a reader may have
      // touched a file between the two calls.
      std::stable_sort(files.begin(), files.end(),
                       [](const FileInfo& a, const FileInfo& b) { return a.atime < b.atime; });
      std::uint64_t total = 0;
      for (const auto& f : files) total += f.size;
      std::uint64_t budget = policy_.memory_budget_bytes;
      std::uint64_t left = files.size();
      for (const auto& f : files) {
        if (budget == 0 || total <= budget) break;
        if (f.pinned) continue;
        if (evict(c, f, f.atime)) {
          report.removed.push_back({Removal::Reason::kOverBudget, f.name, f.blob, f.size});
          total -= f.size;
          --left;
        }
      }
      report.live_bytes = total;
      report.files = left;
      return 0;
    });
  }

  void delete_retired(JanitorReport& report, long long cutoff) {
    session_.retry("janitor: retired blobs", [&](RedisConnection& c) {
      Reply blobs = c.call({"ZRANGEBYSCORE", layout_.retired(), "-inf", std::to_string(cutoff)});
      for (std::size_t i = 0; i < blobs.size(); ++i) {
        std::string blob(blobs[i].str());
        Deleted d = delete_blob_chunks(c, layout_, blob);
        // Forgotten only once its chunks are gone, so a janitor that dies midway retries.
        c.call({"ZREM", layout_.retired(), blob});
        ++report.blobs_deleted;
        report.chunks_deleted += d.chunks;
        report.bytes_freed += d.bytes;
      }
      return 0;
    });
  }

  long long server_ms() {
    return session_.retry("janitor: TIME", [](RedisConnection& c) {
      Reply t = c.call({"TIME"});
      return static_cast<long long>(parse_u64(t[0].str())) * 1000 +
             static_cast<long long>(parse_u64(t[1].str())) / 1000;
    });
  }

  StoreOptions options_;
  JanitorPolicy policy_;
  Layout layout_;
  Session session_;
};

Janitor::Janitor(StoreOptions options, JanitorPolicy policy)
    : impl_(std::make_unique<Impl>(std::move(options), policy)) {}
Janitor::~Janitor() = default;
Janitor::Janitor(Janitor&&) noexcept = default;
Janitor& Janitor::operator=(Janitor&&) noexcept = default;

const JanitorPolicy& Janitor::policy() const noexcept { return impl_->policy_; }

std::chrono::system_clock::time_point Janitor::server_time() { return from_ms(impl_->server_ms()); }

JanitorReport Janitor::sweep() { return sweep(server_time()); }

JanitorReport Janitor::sweep(std::chrono::system_clock::time_point now) {
  long long now_ms = to_ms(now);
  JanitorReport report;
  impl_->claim_orphans(report, now_ms);
  impl_->expire_idle(report, now_ms);
  impl_->enforce_budget(report);
  impl_->delete_retired(report, now_ms - impl_->policy_.orphan_grace.count());
  return report;
}

JanitorReport Janitor::remove_job_temporaries(std::string_view job_id) {
  std::string prefix = job_temporary_prefix(job_id);
  JanitorReport report;
  // The prefix ends with '/', so "tmp/<job>0" is the first name after every "tmp/<job>/...".
  std::string upper = prefix.substr(0, prefix.size() - 1) + "0";
  impl_->session_.retry("janitor: job temporaries", [&](RedisConnection& c) {
    Reply names = c.call({"ZRANGEBYLEX", impl_->layout_.names(), "[" + prefix, "(" + upper});
    for (const auto& f : impl_->lookup(c, names, false)) {
      if (f.pinned) continue;
      if (impl_->evict(c, f, std::numeric_limits<long long>::max() / 2))
        report.removed.push_back({Removal::Reason::kJobEnded, f.name, f.blob, f.size});
    }
    return 0;
  });
  // Evicted blobs are retired with score 0, so a cutoff of 0 deletes just those.
  impl_->delete_retired(report, 0);
  return report;
}

}  // namespace clupy::store
