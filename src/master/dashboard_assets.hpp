// The dashboard's static files, compiled into the binary (cmake/embed_assets.cmake writes the
// definition from src/master/dashboard/).
#pragma once

#include <span>
#include <string_view>

namespace clupy::master {

struct DashboardAsset {
  std::string_view path;  // as requested, e.g. "/dashboard.js"
  std::string_view content_type;
  std::string_view body;
};

std::span<const DashboardAsset> dashboard_assets();

}  // namespace clupy::master
