#include <zookeeper/zookeeper.h>

#include <cstdio>
#include <mutex>
#include <random>

#include "clupy/coord.hpp"
#include "coord/session_impl.hpp"

namespace clupy {

CoordError::CoordError(Kind kind, std::string zk_error, const std::string& what)
    : Error(zk_error.empty() ? what : what + " (" + zk_error + ")"),
      kind_(kind),
      zk_error_(std::move(zk_error)) {}

namespace coord {

const char* zk_error_name(int rc) {
  switch (rc) {
    case ZOK:
      return "ZOK";
    case ZSYSTEMERROR:
      return "ZSYSTEMERROR";
    case ZRUNTIMEINCONSISTENCY:
      return "ZRUNTIMEINCONSISTENCY";
    case ZDATAINCONSISTENCY:
      return "ZDATAINCONSISTENCY";
    case ZCONNECTIONLOSS:
      return "ZCONNECTIONLOSS";
    case ZMARSHALLINGERROR:
      return "ZMARSHALLINGERROR";
    case ZUNIMPLEMENTED:
      return "ZUNIMPLEMENTED";
    case ZOPERATIONTIMEOUT:
      return "ZOPERATIONTIMEOUT";
    case ZBADARGUMENTS:
      return "ZBADARGUMENTS";
    case ZINVALIDSTATE:
      return "ZINVALIDSTATE";
    case ZAPIERROR:
      return "ZAPIERROR";
    case ZNONODE:
      return "ZNONODE";
    case ZNOAUTH:
      return "ZNOAUTH";
    case ZBADVERSION:
      return "ZBADVERSION";
    case ZNOCHILDRENFOREPHEMERALS:
      return "ZNOCHILDRENFOREPHEMERALS";
    case ZNODEEXISTS:
      return "ZNODEEXISTS";
    case ZNOTEMPTY:
      return "ZNOTEMPTY";
    case ZSESSIONEXPIRED:
      return "ZSESSIONEXPIRED";
    case ZINVALIDCALLBACK:
      return "ZINVALIDCALLBACK";
    case ZINVALIDACL:
      return "ZINVALIDACL";
    case ZAUTHFAILED:
      return "ZAUTHFAILED";
    case ZCLOSING:
      return "ZCLOSING";
    case ZNOTHING:
      return "ZNOTHING";
    case ZSESSIONMOVED:
      return "ZSESSIONMOVED";
    case ZNOTREADONLY:
      return "ZNOTREADONLY";
    case ZEPHEMERALONLOCALSESSION:
      return "ZEPHEMERALONLOCALSESSION";
    case ZNOWATCHER:
      return "ZNOWATCHER";
    case ZTHROTTLEDOP:
      return "ZTHROTTLEDOP";
    default:
      return "ZUNKNOWN";
  }
}

void throw_zk(int rc, const std::string& what) {
  using Kind = CoordError::Kind;
  Kind kind = Kind::kOther;
  switch (rc) {
    case ZCONNECTIONLOSS:
    case ZOPERATIONTIMEOUT:
      kind = Kind::kConnectionLoss;
      break;
    case ZSESSIONEXPIRED:
    case ZINVALIDSTATE:
    case ZCLOSING:
    case ZSESSIONMOVED:
      kind = Kind::kSessionExpired;
      break;
    case ZNONODE:
      kind = Kind::kNoNode;
      break;
    case ZNODEEXISTS:
      kind = Kind::kNodeExists;
      break;
    case ZNOAUTH:
    case ZAUTHFAILED:
      kind = Kind::kAuthFailed;
      break;
    case ZBADARGUMENTS:
    case ZINVALIDACL:
      kind = Kind::kBadArgument;
      break;
    default:
      break;
  }
  throw CoordError(kind, zk_error_name(rc), what);
}

std::string new_guid() {
  static std::mutex mu;
  static std::mt19937_64 engine{std::random_device{}()};
  std::lock_guard lock(mu);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "_c_%016llx%016llx", static_cast<unsigned long long>(engine()),
                static_cast<unsigned long long>(engine()));
  return buf;
}

std::int64_t sequence_of(const std::string& name) {
  constexpr std::size_t kDigits = 10;
  if (name.size() < kDigits) return -1;
  std::int64_t value = 0;
  for (std::size_t i = name.size() - kDigits; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    value = value * 10 + (name[i] - '0');
  }
  return value;
}

const char* to_string(LossReason reason) {
  switch (reason) {
    case LossReason::kSuspended:
      return "suspended";
    case LossReason::kExpired:
      return "expired";
    case LossReason::kReleased:
      return "released";
  }
  return "?";
}

}  // namespace coord
}  // namespace clupy
