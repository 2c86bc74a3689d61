# Flag environment variables applied over the flags file at startup; cost-based rate limiting.
rerank_add_test(flag_env_overrides_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/flag_env_overrides_test.cc
                LIBS rerank_flag_store rerank_rate_limiter rerank_fake_audit_sink)
