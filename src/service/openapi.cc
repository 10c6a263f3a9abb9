#include "service/openapi.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "clupy/errors.hpp"

namespace clupy::services {

namespace {

nlohmann::json parse_exports(const std::string& exports_json) {
  nlohmann::json all = nlohmann::json::parse(exports_json, nullptr, false);
  if (!all.is_array()) throw ConfigError("the program's export descriptions are not a JSON list");
  for (const auto& e : all)
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string() ||
        !e.contains("parameters") || !e["parameters"].is_array() || !e.contains("result"))
      throw ConfigError("the program's export descriptions are malformed: " + e.dump());
  return all;
}

nlohmann::json error_response(const std::string& description) {
  nlohmann::json schema = {{"type", "object"}, {"properties", {{"error", {{"type", "string"}}}}}};
  nlohmann::json content;
  content["application/json"]["schema"] = schema;
  return {{"description", description}, {"content", content}};
}

}  // namespace

std::vector<std::string> exported_names(const std::string& exports_json) {
  std::vector<std::string> names;
  for (const auto& e : parse_exports(exports_json)) names.push_back(e["name"]);
  return names;
}

std::string openapi_document(const std::string& service, const std::string& version,
                             const std::string& exports_json,
                             const std::vector<std::string>& entry_points, AuthMode auth) {
  nlohmann::json paths = nlohmann::json::object();
  for (const auto& e : parse_exports(exports_json)) {
    const std::string name = e["name"];
    if (std::find(entry_points.begin(), entry_points.end(), name) == entry_points.end()) continue;
    nlohmann::json properties = nlohmann::json::object();
    nlohmann::json required = nlohmann::json::array();
    nlohmann::json positional = nlohmann::json::array();
    std::string signature;
    for (const auto& p : e["parameters"]) {
      properties[p["name"].get<std::string>()] = p["schema"];
      positional.push_back(p["schema"]);
      if (!p["schema"].contains("oneOf")) required.push_back(p["name"]);
      signature += (signature.empty() ? "" : ", ") + p["cpp_type"].get<std::string>() + " " +
                   p["name"].get<std::string>();
    }
    nlohmann::json by_name = {{"type", "object"},
                              {"properties", properties},
                              {"required", required},
                              {"additionalProperties", false}};
    nlohmann::json by_position = {{"type", "array"},
                                  {"prefixItems", positional},
                                  {"minItems", positional.size()},
                                  {"maxItems", positional.size()}};
    paths["/" + name] = {
        {"post",
         {{"operationId", name},
          {"summary",
           e["result"]["cpp_type"].get<std::string>() + " " + name + "(" + signature + ")"},
          {"requestBody",
           {{"required", true},
            {"content",
             {{"application/json", {{"schema", {{"oneOf", {by_name, by_position}}}}}}}}}},
          {"responses",
           {{"200",
             {{"description", "the result"},
              {"content", {{"application/json", {{"schema", e["result"]["schema"]}}}}}}},
            {"400", error_response("the body does not fit the parameters")},
            {"401", error_response("a credential is missing or wrong")},
            {"413", error_response("the body is larger than max_body")},
            {"500", error_response("the function threw")},
            {"503", error_response("no replica could run the call")},
            {"504", error_response("the call ran longer than the timeout")}}}}}};
  }
  nlohmann::json doc = {
      {"openapi", "3.1.0"}, {"info", {{"title", service}, {"version", version}}}, {"paths", paths}};
  if (auth != AuthMode::kPublic) {
    doc["components"] = {
        {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}};
    doc["security"] = nlohmann::json::array({{{"bearer", nlohmann::json::array()}}});
  }
  return doc.dump(2) + "\n";
}

}  // namespace clupy::services
