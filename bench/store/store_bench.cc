// Measures clupy::Store put/get of one large file against raw pipelined SET/GET of the same
// bytes in chunks of the same size, over the same connection type, from the same process.
// Throughput in MB/s (10^6 bytes per second).
//
//   store_bench [--redis URL] [--mib 256] [--runs 5] [--chunk BYTES] [--depth N] [--dir DIR]
//               [--verify 1|0]   (0: reads skip the chunk checks, StoreOptions::verify_reads)
//               [--sha 1|0]      (1: reads also check the SHA-256, StoreOptions::verify_sha256)
//               [--sha-on-write 1|0]  (1: StoreOptions::sha256_on_write)
//
// Without --redis it starts a private redis-server on a unix socket (EmbeddedRedis). Files for
// put_file/get_file go to --dir (default /dev/shm, so the disk does not dominate). Prints the
// median, min and max of each operation; raw and store runs alternate, round by round. get_file
// is also compared with a raw GET followed by writing the bytes to a file, the same work.
#include <sys/resource.h>
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
  bool sha = false;
  bool sha_on_write = false;
};

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// CPU seconds used so far by this process (every thread: the store's hasher too).
double own_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

// The runs of one operation: throughput in MB/s, and CPU seconds spent by this process and by
// the Redis server, which tell whether an operation is slower for want of a core.
struct Rates {
  std::vector<double> v, client_cpu, server_cpu;
  double median() const { return median_of(v); }
  double min() const { return *std::min_element(v.begin(), v.end()); }
  double max() const { return *std::max_element(v.begin(), v.end()); }
};

// Runs f once and records its throughput and CPU use in `rates`; server_cpu() reads the Redis
// server's CPU seconds (outside the timed part).
void timed(Rates& rates, std::size_t bytes, const std::function<void()>& f,
           const std::function<double()>& server_cpu) {
  double server_before = server_cpu();
  double client_before = own_cpu_seconds();
  auto start = Clock::now();
  f();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  rates.client_cpu.push_back(own_cpu_seconds() - client_before);
  rates.server_cpu.push_back(server_cpu() - server_before);
  rates.v.push_back(static_cast<double>(bytes) / 1e6 / secs);
}

void print(const char* what, const Rates& r, const Rates* raw, const char* raw_name) {
  std::printf("%-20s median %7.1f MB/s (min %7.1f, max %7.1f)", what, r.median(), r.min(), r.max());
  if (raw != nullptr)
    std::printf(" %3.0f%% of %s", 100 * r.median() / raw->median(), raw_name);
  else
    std::printf("            ");
  std::printf("  cpu: client %4.0f ms, redis %4.0f ms\n", 1e3 * median_of(r.client_cpu),
              1e3 * median_of(r.server_cpu));
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

// Writes `bytes` to a new file at `path` (the part of get_file that a raw GET does not do).
void write_new_file(const std::string& path, const std::string& bytes) {
  std::filesystem::remove(path);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path);
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
    else if (k == "--sha")
      a.sha = v != "0";
    else if (k == "--sha-on-write")
      a.sha_on_write = v != "0";
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
    o.verify_sha256 = a.sha;
    o.sha256_on_write = a.sha_on_write;

    std::size_t bytes = a.mib << 20;
    std::string data(bytes, '\0');
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
      auto v = rng();
      std::memcpy(data.data() + i, &v, 8);
    }
    std::string local_in = a.dir + "/clupy-bench-in-" + std::to_string(::getpid());
    std::string local_out = a.dir + "/clupy-bench-out-" + std::to_string(::getpid());
    std::string local_raw_out = a.dir + "/clupy-bench-raw-out-" + std::to_string(::getpid());
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
        "store_bench: %zu MiB, chunk %zu bytes, pipeline depth %zu, %d runs, verify %d, sha %d, "
        "sha on write %d, %s\n",
        a.mib, a.chunk, a.depth, a.runs, a.verify ? 1 : 0, a.sha ? 1 : 0, a.sha_on_write ? 1 : 0,
        a.redis.c_str());
    auto drop_raw = [&](int r) {
      raw.call({"EVAL",
                "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('UNLINK', k) end "
                "return 0",
                "0", "bench:raw:" + std::to_string(r) + ":*"});
    };
    auto clear_back = [&] { std::fill(back.begin(), back.end(), '\0'); };
    // used_cpu_sys + used_cpu_user of INFO cpu: the whole server process (lazy-free thread too).
    auto server_cpu = [&] {
      clupy::store::Reply info = raw.call({"INFO", "cpu"});
      std::string text(info.str());
      double total = 0;
      for (const char* field : {"used_cpu_sys:", "used_cpu_user:"}) {
        auto at = text.find(field);
        if (at != std::string::npos)
          total += std::strtod(text.c_str() + at + std::strlen(field), nullptr);
      }
      return total;
    };
    auto read_stream = [&] {
      clupy::StoreReader r = store.open_read("bench/stream.bin");
      r.read(back.data(), static_cast<std::streamsize>(bytes));
      r.peek();  // reaches the end, which checks the SHA-256 when asked to
    };
    back.assign(bytes, '\0');
    // Each round runs every operation once, raw and store interleaved, so a burst of load from
    // other processes hits both sides alike. Raw runs write fresh keys each round (as every store
    // write goes to a fresh blob); untimed between runs: the previous round's raw keys are
    // deleted, replaced store versions collected, and `back` cleared so a short read shows.
    Rates set, get, get_to_file, put_stream, get_stream, put_file, get_file;
    for (int run = 1; run <= a.runs; ++run) {
      timed(
          set, bytes, [&] { raw_set(raw, data, a.chunk, a.depth, run); }, server_cpu);
      timed(
          put_stream, bytes,
          [&] {
            clupy::StoreWriter w = store.open_write("bench/stream.bin");
            w.write(data.data(), static_cast<std::streamsize>(bytes));
            w.commit();
          },
          server_cpu);
      collect();
      clear_back();
      timed(
          get, bytes, [&] { raw_get(raw, back, bytes, a.chunk, a.depth, run); }, server_cpu);
      if (back != data) throw std::runtime_error("raw GET returned different bytes");
      clear_back();
      timed(
          get_to_file, bytes,
          [&] {
            raw_get(raw, back, bytes, a.chunk, a.depth, run);
            write_new_file(local_raw_out, back);
          },
          server_cpu);
      std::filesystem::remove(local_raw_out);
      drop_raw(run);
      clear_back();
      timed(get_stream, bytes, read_stream, server_cpu);
      if (back != data) throw std::runtime_error("store read returned different bytes");
      timed(
          put_file, bytes, [&] { store.put_file(local_in, "bench/file.bin"); }, server_cpu);
      collect();
      // Replacing the previous run's file would free its pages inside the timed region.
      std::filesystem::remove(local_out);
      timed(
          get_file, bytes, [&] { store.get_file("bench/file.bin", local_out); }, server_cpu);
    }
    std::ifstream(local_out, std::ios::binary).read(back.data(), static_cast<long>(bytes));
    if (back != data) throw std::runtime_error("get_file wrote different bytes");

    print("raw pipelined SET", set, nullptr, "");
    print("store put (stream)", put_stream, &set, "raw SET");
    print("store put_file", put_file, &set, "raw SET");
    print("raw pipelined GET", get, nullptr, "");
    print("store get (stream)", get_stream, &get, "raw GET");
    print("store get_file", get_file, &get, "raw GET");
    print("raw GET + file write", get_to_file, nullptr, "");
    print("store get_file", get_file, &get_to_file, "raw GET + file write");

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
