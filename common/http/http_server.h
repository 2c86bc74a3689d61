// A small asynchronous HTTP/1.1 server (Boost.Beast on Asio) for the service's HTTP APIs: the
// admin API (admin/http_server.h) and the data-plane HTTP API. It owns the transport; what a
// request means is the HttpHandler's business (see common/http/http_types.h, http_router.h).
//
// Why it is built this way: Kubernetes probes share the admin port with anything else that
// connects, so a few slow or idle clients must never delay a probe. Every connection is a state
// machine driven by asynchronous reads, writes and one timer, so an idle or trickling connection
// costs a socket and a few KiB, never a thread; a fixed set of I/O threads serves them all.
//
// Per connection:
//  - Keep-alive: HTTP/1.1 connections stay open between requests (up to idle_timeout_ms) unless
//    the request says "Connection: close"; HTTP/1.0 ones close after the response unless they ask
//    for keep-alive. Pipelined requests are read one at a time and answered in order (the next
//    is not read before the previous response is written).
//  - Deadline: request_timeout_ms runs from a request's first byte until its response has been
//    written, however the bytes trickle in and however long the handler takes; past it the
//    client gets 408 (if nothing was being written yet) and the connection closes. A handler's
//    later answer is dropped.
//  - Limits: request line + headers above max_header_bytes: 431; a body above max_body_bytes
//    (declared by Content-Length, or reached while de-chunking): 413, without reading it;
//    malformed HTTP: 400. Each of these closes the connection after the answer.
//  - "Expect: 100-continue" gets "100 Continue" once the headers passed the limits; chunked
//    request bodies are accepted (the limit applies to the decoded body).
//  - Closing after an error response half-closes and briefly drains what the client still sends,
//    so the kernel does not reset the connection before the client has read the answer.
// Server-wide:
//  - Beyond max_connections open connections a new one gets 503 (rendered error) and is closed;
//    the refusals themselves are bounded too (beyond that the socket is closed at once).
//  - When accept() fails (EMFILE, ENFILE, ENOBUFS, ...) accepting pauses, doubling from
//    accept_backoff_initial_ms up to accept_backoff_max_ms, and the failure is logged (at most
//    every 10 s): it never spins on a listening socket that stays readable.
//  - Error responses the server or router makes are rendered by Options::render_error (default
//    JSON {"error": "..."}), so each API keeps its own error dialect.
//
// Threads: `io_threads` threads named "<name>-<i>", owned, joined by Stop(). Start() binds before
// returning, so port() is known (listen port 0 picks a free port). Stop() (and the destructor):
// stops accepting, closes connections that are idle or still receiving a request, lets requests
// whose handler is running answer (their connections close after the response) for up to
// stop_timeout_ms, then closes whatever is left and joins the threads. Responders that answer
// after Stop() are harmless no-ops (they may outlive the server).
//
// Thread-safe.
#ifndef RERANK_COMMON_HTTP_HTTP_SERVER_H_
#define RERANK_COMMON_HTTP_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/http_types.h"

namespace rerank {

class HttpServer {
 public:
  struct Options {
    // "host:port" to bind. The host may be an IPv4 address, "[IPv6]", a name ("localhost"), or
    // empty / "*" / "0.0.0.0" for every interface; port 0 picks a free port (see port()).
    std::string listen = "127.0.0.1:0";
    // The config key `listen` came from, named in errors about it ("admin.http_listen").
    std::string listen_key = "listen";
    // Names the threads ("<name>-<i>", 15 characters at most) and log lines.
    std::string name = "http";
    // I/O threads running every connection and handler. 1..64.
    int io_threads = 2;
    // Open connections; one more gets 503 and is closed. 1..1000000; keep it below the process's
    // RLIMIT_NOFILE.
    int max_connections = 256;
    // Request line + headers; beyond it 431. 1 KiB..1 MiB.
    size_t max_header_bytes = 16 * 1024;
    // Request body (after de-chunking); beyond it 413. 0..1 GiB.
    size_t max_body_bytes = 1024 * 1024;
    // Absolute deadline of one request: from its first byte until its response is written.
    // Past it 408 and close. >= 1.
    int request_timeout_ms = 10000;
    // How long a keep-alive connection may wait for its next request before it is closed. >= 1.
    int idle_timeout_ms = 30000;
    // Pause after a failed accept(), doubling per consecutive failure up to the maximum.
    // 1 <= initial <= max.
    int accept_backoff_initial_ms = 10;
    int accept_backoff_max_ms = 1000;
    // How long Stop() waits for running handlers to answer before closing their connections.
    // >= 0.
    int stop_timeout_ms = 5000;
    // Renders the errors the server itself answers with. Null: JsonErrorResponse.
    HttpErrorRenderer render_error;
  };

  // Counters since Start(), for metrics and tests.
  struct Stats {
    int64_t open_connections = 0;  // now, refused ones not included
    int64_t accepted_connections = 0;
    int64_t refused_connections = 0;  // over max_connections
    int64_t accept_failures = 0;      // accept() errors that paused accepting
    int64_t requests = 0;             // requests handed to the handler
    int64_t timeouts = 0;             // requests past request_timeout_ms
  };

  // Validates `options` (InvalidArgument naming the field; listen errors name listen_key), binds
  // (UNAVAILABLE naming listen_key when the address cannot be resolved or bound) and starts
  // serving requests to `handler`.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(Options options, HttpHandler handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port.
  int port() const;
  Stats stats() const;
  // See the file comment. Idempotent. Not from a handler (it waits for handlers).
  void Stop();

  class Impl;  // in the .cc (keeps Boost out of this header)

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rerank

#endif  // RERANK_COMMON_HTTP_HTTP_SERVER_H_
