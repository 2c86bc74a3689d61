# RerankServer (server/rerank_server.cc, target rerank_server in server/server.cmake) starts the
# admin plane; its link dependencies are added here, after both directories defined their targets.
target_link_libraries(rerank_server PUBLIC
  rerank_admin_http rerank_admin_grpc rerank_admin_observers rerank_service_metrics
  rerank_live_stats prometheus-cpp::core)
