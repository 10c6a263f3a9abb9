// Measures clupy::Store put/get of one large file against raw pipelined SET/GET of the same
// bytes in chunks of the same size, over the same connection type, from the same process.
// Prints the median of N runs in MB/s (10^6 bytes per second).
//
//   store_bench [--redis URL] [--mib 256] [--runs 5] [--chunk BYTES] [--depth N] [--dir DIR]
//               [--verify 1|0]   (0: reads skip the SHA-256 check, StoreOptions::verify_reads)
//
// Without --redis it starts a private redis-server on a unix socket (EmbeddedRedis). Files for
// put_file/get_file go to --dir (default /dev/shm, so the disk does not dominate).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <clupy/store.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "store/embedded_redis.hpp"
#include "store/janitor.hpp"
#include "store/redis.hpp"

namespace {

using clupy::StoreOptions;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string redis;
  std::size_t mib = 256;
  int runs = 5;
  std::size_t chunk = std::size_t{1} << 20;
  std::size_t depth = 8;
  std::string dir = "/dev/shm";
  bool verify = true;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Runs f `runs` times and returns the median throughput in MB/s; `after` runs untimed after
// each run.
double measure(int runs, std::size_t bytes, const std::function<void()>& f,
               const std::function<void()>& after = {}) {
  std::vector<double> rates;
  for (int i = 0; i < runs; ++i) {
    auto start = Clock::now();
    f();
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    rates.push_back(static_cast<double>(bytes) / 1e6 / secs);
    if (after) after();
  }
  return median(rates);
}

// Keys of raw run `run`: fresh keys every run, as the store writes a fresh blob every time (so
// Redis allocates new memory in both cases; overwriting the same keys would reuse it).
std::string raw_key(int run, std::size_t i) {
  return "bench:raw:" + std::to_string(run) + ":" + std::to_string(i);
}

void raw_set(clupy::store::RedisConnection& c, const std::string& data, std::size_t chunk,
             std::size_t depth, int run) {
  std::size_t n = (data.size() + chunk - 1) / chunk;
  for (std::size_t i = 0; i < n; ++i) {
    std::string_view part(data.data() + i * chunk, std::min(chunk, data.size() - i * chunk));
    c.append({"SET", raw_key(run, i), part});
    while (c.pending() > depth) c.read_reply();
  }
  while (c.pending() > 0) c.read_reply();
}

void raw_get(clupy::store::RedisConnection& c, std::string& out, std::size_t size,
             std::size_t chunk, std::size_t depth, int run) {
  std::size_t n = (size + chunk - 1) / chunk;
  std::size_t requested = 0;
  out.resize(size);
  for (std::size_t i = 0; i < n; ++i) {
    while (requested < n && requested - i < depth) c.append({"GET", raw_key(run, requested++)});
    clupy::store::Reply r = c.read_reply();
    std::memcpy(out.data() + i * chunk, r.str().data(), r.str().size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--redis")
      a.redis = v;
    else if (k == "--mib")
      a.mib = std::strtoul(v.c_str(), nullptr, 10);
    else if (k == "--runs")
      a.runs = std::atoi(v.c_str());
    else if (k == "--chunk")
      a.chunk = std::strtoul(v.c_str(), nullptr, 10);
    else if (k == "--depth")
      a.depth = std::strtoul(v.c_str(), nullptr, 10);
    else if (k == "--dir")
      a.dir = v;
    else if (k == "--verify")
      a.verify = v != "0";
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    std::optional<clupy::store::EmbeddedRedis> embedded;
    std::string redis_dir = a.dir + "/clupy-bench-redis-" + std::to_string(::getpid());
    if (a.redis.empty()) {
      embedded.emplace(redis_dir);
      a.redis = embedded->url();
    }
    StoreOptions o;
    o.redis_url = a.redis;
    o.key_prefix = "bench:store:";
    o.chunk_size = a.chunk;
    o.pipeline_depth = a.depth;
    o.op_timeout = std::chrono::seconds(60);
    o.verify_reads = a.verify;

    std::size_t bytes = a.mib << 20;
    std::string data(bytes, '\0');
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
      auto v = rng();
      std::memcpy(data.data() + i, &v, 8);
    }
    std::string local_in = a.dir + "/clupy-bench-in-" + std::to_string(::getpid());
    std::string local_out = a.dir + "/clupy-bench-out-" + std::to_string(::getpid());
    std::ofstream(local_in, std::ios::binary).write(data.data(), static_cast<long>(bytes));

    clupy::store::RedisConnection raw(clupy::store::parse_redis_url(a.redis),
                                      std::chrono::seconds(5), std::chrono::seconds(60));
    clupy::Store store(o);
    // Replaced versions are deleted by the janitor; with no grace, right after each run.
    clupy::store::Janitor janitor(o, {.memory_budget_bytes = 0,
                                      .idle_ttl = std::chrono::milliseconds(0),
                                      .orphan_grace = std::chrono::milliseconds(0)});
    auto collect = [&] { janitor.sweep(); };
    std::string back;

    std::printf(
        "store_bench: %zu MiB, chunk %zu bytes, pipeline depth %zu, %d runs (median), verify %d, "
        "%s\n",
        a.mib, a.chunk, a.depth, a.runs, a.verify ? 1 : 0, a.redis.c_str());
    int run = 0;
    auto drop_raw = [&](int r) {
      raw.call({"EVAL",
                "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('UNLINK', k) end "
                "return 0",
                "0", "bench:raw:" + std::to_string(r) + ":*"});
    };
    // Each run writes fresh keys and the previous run's are deleted untimed, as the janitor
    // does for the store below.
    double set = measure(
        a.runs, bytes, [&] { raw_set(raw, data, a.chunk, a.depth, ++run); },
        [&] {
          if (run < a.runs) drop_raw(run);
        });
    // Both kinds of get write into `back`, cleared untimed before each run so a short read shows.
    auto clear_back = [&] { std::fill(back.begin(), back.end(), '\0'); };
    back.assign(bytes, '\0');
    double get = measure(
        a.runs, bytes, [&] { raw_get(raw, back, bytes, a.chunk, a.depth, run); }, clear_back);
    raw_get(raw, back, bytes, a.chunk, a.depth, run);
    if (back != data) throw std::runtime_error("raw GET returned different bytes");
    drop_raw(run);

    double put_stream = measure(
        a.runs, bytes,
        [&] {
          clupy::StoreWriter w = store.open_write("bench/stream.bin");
          w.write(data.data(), static_cast<std::streamsize>(bytes));
          w.commit();
        },
        collect);
    auto read_stream = [&] {
      clupy::StoreReader r = store.open_read("bench/stream.bin");
      r.read(back.data(), static_cast<std::streamsize>(bytes));
      r.peek();  // reaches the end, which checks the SHA-256
    };
    double get_stream = measure(a.runs, bytes, read_stream, clear_back);
    read_stream();
    if (back != data) throw std::runtime_error("store read returned different bytes");
    double put_file = measure(
        a.runs, bytes, [&] { store.put_file(local_in, "bench/file.bin"); }, collect);
    double get_file = measure(a.runs, bytes, [&] { store.get_file("bench/file.bin", local_out); });

    std::printf("%-28s %9.1f MB/s\n", "raw pipelined SET", set);
    std::printf("%-28s %9.1f MB/s\n", "raw pipelined GET", get);
    std::printf("%-28s %9.1f MB/s  (%3.0f%% of raw SET)\n", "store put (stream)", put_stream,
                100 * put_stream / set);
    std::printf("%-28s %9.1f MB/s  (%3.0f%% of raw GET)\n", "store get (stream)", get_stream,
                100 * get_stream / get);
    std::printf("%-28s %9.1f MB/s  (%3.0f%% of raw SET)\n", "store put_file", put_file,
                100 * put_file / set);
    std::printf("%-28s %9.1f MB/s  (%3.0f%% of raw GET)\n", "store get_file", get_file,
                100 * get_file / get);

    store.remove("bench/stream.bin");
    store.remove("bench/file.bin");
    collect();
    std::filesystem::remove(local_in);
    std::filesystem::remove(local_out);
    embedded.reset();
    std::error_code ec;
    std::filesystem::remove_all(redis_dir, ec);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "store_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
