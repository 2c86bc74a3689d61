# shellcheck shell=bash
# Sourced by deploy/install_deps.sh and deploy/install_test_tools.sh.
# apt_install_missing NAME PKG...: installs the Debian packages that are not installed yet; a no-op
# (one dpkg-query per package) when all are present. Waits for a concurrent apt/dpkg rather than
# failing at once.
apt_install_missing() {
  local name="$1"
  shift
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "$name: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
}
