#include "common/http/http_types.h"

#include <exception>

#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace rerank {

std::optional<std::string> HttpRequest::header(const std::string& lower_case_name) const {
  auto it = headers.find(lower_case_name);
  if (it == headers.end()) return std::nullopt;
  return it->second;
}

HttpResponse JsonErrorResponse(int status, std::string_view message) {
  using json = nlohmann::json;
  HttpResponse r;
  r.status = status;
  r.body =
      json{{"error", std::string(message)}}.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpResponder& HttpResponder::operator=(HttpResponder&& other) noexcept {
  if (this != &other) {
    HttpResponder old(std::move(*this));  // answers 500 on destruction if it never answered
    slot_ = std::move(other.slot_);
  }
  return *this;
}

HttpResponder::~HttpResponder() {
  if (slot_ != nullptr && !slot_->answered_.exchange(true)) slot_->Deliver(std::nullopt);
}

bool HttpResponder::Respond(HttpResponse response) {
  if (slot_ == nullptr || slot_->answered_.exchange(true)) return false;
  slot_->Deliver(std::move(response));
  return true;
}

bool HttpResponder::answered() const { return slot_ == nullptr || slot_->answered_.load(); }

HttpHandler SyncHttpHandler(std::function<HttpResponse(const HttpRequest&)> fn) {
  return [fn = std::move(fn)](HttpRequest request, HttpResponder responder) {
    HttpResponse response;
    try {
      response = fn(request);
    } catch (const std::exception& e) {
      // `responder` answers 500 when it goes out of scope.
      spdlog::error("HTTP handler for {} {} threw: {}", request.method, request.path, e.what());
      return;
    } catch (...) {
      spdlog::error("HTTP handler for {} {} threw a non-exception", request.method, request.path);
      return;
    }
    responder.Respond(std::move(response));
  };
}

}  // namespace rerank
