#include "deps/offer_reader.hpp"

#include <boost/asio/post.hpp>

#include "common/log.hpp"
#include "deps/program_check.hpp"

namespace clupy::deps {

OfferReader::OfferReader(boost::asio::io_context& io,
                         std::function<void(const wire::ServerOffer&)> done)
    : io_(io), done_(std::move(done)) {}

OfferReader::~OfferReader() {
  *alive_ = false;
  if (reader_.joinable()) reader_.join();
}

void OfferReader::refresh(std::vector<std::string> extra_directories) {
  if (reading_) {
    again_ = std::move(extra_directories);
    return;
  }
  start(std::move(extra_directories));
}

void OfferReader::start(std::vector<std::string> extra_directories) {
  if (reader_.joinable()) reader_.join();
  reading_ = true;
  std::weak_ptr<bool> alive = alive_;
  reader_ = std::thread([this, alive, directories = std::move(extra_directories)] {
    wire::ServerOffer offer;
    try {
      offer = read_server_offer_cached(directories);
    } catch (const std::exception& e) {
      common::logger("deps")->warn("cannot read what this machine offers programs: {}", e.what());
    }
    boost::asio::post(io_, [this, alive, offer = std::move(offer)]() mutable {
      auto a = alive.lock();
      if (!a || !*a) return;
      reading_ = false;
      last_ = std::move(offer);
      if (done_) done_(*last_);
      if (again_) {
        auto next = std::move(*again_);
        again_.reset();
        start(std::move(next));
      }
    });
  });
}

}  // namespace clupy::deps
