// Reads what a server's loader offers programs (read_server_offer: ldconfig, dpkg, ELF) on a
// thread of its own, since it takes a second or so, and hands it to the io_context's thread.
// Owned by that thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "clupy.pb.h"

namespace clupy::deps {

class OfferReader {
 public:
  OfferReader(boost::asio::io_context& io, std::function<void(const wire::ServerOffer&)> done);
  ~OfferReader();  // waits for a read in progress
  OfferReader(const OfferReader&) = delete;
  OfferReader& operator=(const OfferReader&) = delete;

  // Reads the offer again (with these extra library folders); a request during a read is served
  // by another read after it.
  void refresh(std::vector<std::string> extra_directories);
  // The last offer read, if any.
  const std::optional<wire::ServerOffer>& last() const { return last_; }
  bool reading() const { return reading_; }

 private:
  void start(std::vector<std::string> extra_directories);

  boost::asio::io_context& io_;
  std::function<void(const wire::ServerOffer&)> done_;
  std::thread reader_;
  bool reading_ = false;
  std::optional<std::vector<std::string>> again_;
  std::optional<wire::ServerOffer> last_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace clupy::deps
