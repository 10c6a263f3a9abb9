// A CluPy client program for the store's cluster tests: tasks on different servers share files
// through clupy::cluster_store(). argv[1] selects a scenario; it prints lines the test reads.
#include <clupy/clupy.hpp>
#include <clupy/store.hpp>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <string>

namespace {

std::string this_server() {
  const char* s = std::getenv("CLUPY_WORKER_SERVER");
  return s != nullptr ? s : "client";
}

// "<bytes>:<sum of bytes mod 2^32>", the same whoever computes it.
std::string fingerprint(const std::string& data) {
  unsigned sum = 0;
  for (unsigned char c : data) sum = sum * 31u + c;
  return std::to_string(data.size()) + ":" + std::to_string(sum);
}

// A few chunks' worth of bytes that name the server that wrote them.
std::string content_from(const std::string& server, int kib) {
  std::string data = "written on " + server + "\n";
  for (int i = 0; data.size() < static_cast<std::size_t>(kib) * 1024; ++i)
    data += std::to_string(i * 7919 % 100003) + ",";
  return data;
}

// Task: writes `name` through the cluster's store; returns "<server> <fingerprint>".
std::string write_shared(std::string name, int kib) {
  clupy::Store store = clupy::cluster_store();
  const std::string data = content_from(this_server(), kib);
  clupy::StoreWriter writer = store.open_write(name);
  writer << data;
  writer.commit();
  return this_server() + " " + fingerprint(data);
}

// Task: reads `name`; returns "<server> <fingerprint> <first line>".
std::string read_shared(std::string name) {
  clupy::Store store = clupy::cluster_store();
  clupy::StoreReader reader = store.open_read(name);
  std::string data{std::istreambuf_iterator<char>(reader), std::istreambuf_iterator<char>()};
  return this_server() + " " + fingerprint(data) + " " + data.substr(0, data.find('\n'));
}

// Task: what cluster_store() says where there is no store.
std::string try_store(int) {
  try {
    clupy::cluster_store().ping();
    return this_server() + " STORE";
  } catch (const clupy::StoreError& e) {
    return this_server() + " " +
           (e.code() == clupy::StoreError::Code::kNotConfigured ? "NOT_CONFIGURED " : "OTHER ") +
           e.what();
  }
}

int scenario_share(const std::string& name) {
  const std::map<std::string, std::string> writer{{"role", "writer"}};
  const std::map<std::string, std::string> reader{{"role", "reader"}};
  const std::string wrote = clupy::parallel(write_shared, {.labels = writer})(name, 300).get();
  std::printf("WROTE %s\n", wrote.c_str());
  const std::string read = clupy::parallel(read_shared, {.labels = reader})(name).get();
  std::printf("READ %s\n", read.c_str());
  // The program itself sees the same file.
  std::printf("MAIN %s\n", read_shared(name).c_str());
  return 0;
}

int scenario_no_store() {
  std::printf("TASK %s\n", clupy::parallel(try_store)(0).get().c_str());
  std::printf("MAIN %s\n", try_store(0).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "share" && argc > 2) return scenario_share(argv[2]);
    if (mode == "no-store") return scenario_no_store();
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    return 1;
  }
  std::printf("usage: store_task_program share NAME | no-store\n");
  return 2;
}
