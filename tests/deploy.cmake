# Deployment artifacts: Prometheus rules and their promtool unit tests, the Grafana dashboard
# proven against a live Prometheus scraping a real rerankd, the container files (compose, .env,
# Dockerfile, fly.toml), the Helm chart rendered by Helm's template engine (text/template +
# Sprig, tests/helm/render), and the audit backup script.
#
# The tools come from Debian and are installed by deploy/install_test_tools.sh, run here as the
# fixture `deploy_tools` (a no-op when present), so `make test` on a fresh machine gets them; the
# Go renderer is built by the fixture `helm_renderer` into the build tree.
set(_deploy_env
    "RERANK_SOURCE_DIR=${CMAKE_SOURCE_DIR};RERANK_BUILD_DIR=${CMAKE_BINARY_DIR};RERANKD=$<TARGET_FILE:rerankd>;RERANKCTL=$<TARGET_FILE:rerankctl>;HELM_RENDER=${CMAKE_BINARY_DIR}/tests/helm-render")

add_test(NAME deploy_install_test_tools
         COMMAND bash ${CMAKE_SOURCE_DIR}/deploy/install_test_tools.sh)
set_tests_properties(deploy_install_test_tools PROPERTIES
  FIXTURES_SETUP deploy_tools TIMEOUT 900 LABELS deploy RESOURCE_LOCK apt)

add_test(NAME deploy_prometheus_test
         COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/deploy_prometheus_test.py)
set_tests_properties(deploy_prometheus_test PROPERTIES
  FIXTURES_REQUIRED deploy_tools TIMEOUT 120 LABELS "deploy;python" ENVIRONMENT "${_deploy_env}")

# Starts rerankd and Prometheus; about 20 s.
add_test(NAME deploy_monitoring_live_test
         COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/deploy_monitoring_live_test.py)
set_tests_properties(deploy_monitoring_live_test PROPERTIES
  FIXTURES_REQUIRED deploy_tools TIMEOUT 180 LABELS "deploy;python" ENVIRONMENT "${_deploy_env}")

add_test(NAME deploy_containers_test
         COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/deploy_containers_test.py)
set_tests_properties(deploy_containers_test PROPERTIES
  FIXTURES_REQUIRED deploy_tools TIMEOUT 180 LABELS "deploy;python" ENVIRONMENT "${_deploy_env}")

# The live and container tests run the binaries; build them with the test binaries.
add_custom_target(deploy_test_deps ALL DEPENDS rerankd rerankctl test_models)

# The offline Helm renderer (Debian's Go + Sprig + yaml.v3 + gojsonschema).
add_test(NAME helm_renderer_build
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/helm/build.sh ${CMAKE_BINARY_DIR}/tests/helm-render)
set_tests_properties(helm_renderer_build PROPERTIES
  FIXTURES_SETUP helm_renderer FIXTURES_REQUIRED deploy_tools TIMEOUT 300 LABELS deploy)

add_test(NAME helm_chart_test
         COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/helm_chart_test.py)
set_tests_properties(helm_chart_test PROPERTIES
  FIXTURES_REQUIRED "deploy_tools;helm_renderer" TIMEOUT 120 LABELS "deploy;python"
  ENVIRONMENT "${_deploy_env}")

# The chart's stages against rerankd's own ApplyStage/ParseFlagsYaml (C++, real parser).
add_executable(helm_flags_test ${CMAKE_CURRENT_LIST_DIR}/helm_flags_test.cc)
target_link_libraries(helm_flags_test PRIVATE rerank_testing rerank_flag_store rerank_feature_flags
                      yaml-cpp absl::strings)
gtest_discover_tests(helm_flags_test
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  PROPERTIES FIXTURES_REQUIRED helm_renderer LABELS deploy
             ENVIRONMENT "RERANK_SOURCE_DIR=${CMAKE_SOURCE_DIR}\\;RERANK_BUILD_DIR=${CMAKE_BINARY_DIR}"
  DISCOVERY_TIMEOUT 60)

add_test(NAME deploy_backup_audit_test
         COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/deploy_backup_audit_test.py)
set_tests_properties(deploy_backup_audit_test PROPERTIES
  TIMEOUT 60 LABELS "deploy;python" ENVIRONMENT "${_deploy_env}")
