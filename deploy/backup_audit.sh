#!/usr/bin/env bash
# Daily audit-log backup: the current audit file and its rotated files into one dated .tar.gz,
# then backups older than the retention (90 days) deleted. Run it from cron (docs/OPERATIONS.md):
#   15 2 * * * cd /srv/rerankd && ./deploy/backup_audit.sh --dest /var/backups/rerankd
#
# Usage: backup_audit.sh [--audit-log PATH] [--dest DIR] [--keep-days N]
#   --audit-log  the active audit file (default $RERANKER_AUDIT_LOG, else
#                data/reranker_audit.jsonl); its rotated files <stem>-<yyyymmddTHHMMSS>-<seq><ext>
#                (gzip-compressed by rerankd: <ext>.gz) sit beside it
#   --dest       where archives go (default $AUDIT_BACKUP_DIR, else backups/audit); created
#   --keep-days  delete this script's archives dated more than N days ago (default 90; 0 keeps all)
# The archive is <dest>/<stem>-backup-<yyyymmdd>-<HHMMSS>.tar.gz (UTC). rerankd keeps writing
# meanwhile: files are copied first, and the copy of the active file is cut after its last
# complete line, so every line in the archive parses. Retention only ever deletes files named
# like this script's archives. Exit status: 0 done, 1 failed (nothing to back up, I/O error),
# 2 usage error.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "backup_audit: $*" >&2; exit 1; }

audit_log="${RERANKER_AUDIT_LOG:-data/reranker_audit.jsonl}"
dest="${AUDIT_BACKUP_DIR:-backups/audit}"
keep_days=90
while [ $# -gt 0 ]; do
  case "$1" in
    --audit-log) [ $# -ge 2 ] || { usage >&2; exit 2; }; audit_log="$2"; shift 2 ;;
    --dest) [ $# -ge 2 ] || { usage >&2; exit 2; }; dest="$2"; shift 2 ;;
    --keep-days) [ $# -ge 2 ] || { usage >&2; exit 2; }; keep_days="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "backup_audit: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ "$keep_days" =~ ^[0-9]+$ ]]; then
  echo "backup_audit: --keep-days: expected a whole number of days, got '$keep_days'" >&2
  exit 2
fi

dir="$(dirname "$audit_log")"
base="$(basename "$audit_log")"
stem="${base%.*}"
ext=""
[ "$stem" != "$base" ] && ext=".${base##*.}"
[ -d "$dir" ] || die "audit log directory $dir does not exist"

# The active file and the rotated ones (rerankd's naming: common/audit_log.h).
shopt -s nullglob
files=()
[ -f "$audit_log" ] && files+=("$base")
# Plain (audit.compress_rotated: false, or not compressed yet) and gzip-compressed; never the
# .gz.tmp of a compression in progress.
for f in "$dir/$stem"-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]-*"$ext" \
         "$dir/$stem"-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]-*"$ext".gz; do
  files+=("$(basename "$f")")
done
[ ${#files[@]} -gt 0 ] || die "no audit files at $audit_log (nor rotated ones beside it)"

mkdir -p "$dest"
staging="$(mktemp -d "$dest/.backup_audit.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
copied=()
for f in "${files[@]}"; do
  # A rotated file may be deleted by rerankd's retention meanwhile: skip it then.
  if cp -p -- "$dir/$f" "$staging/$f" 2>/dev/null; then
    copied+=("$f")
  elif [ -e "$dir/$f" ]; then
    die "cannot copy $dir/$f"
  fi
done
if [ -f "$staging/$base" ] && [ -s "$staging/$base" ] && [ -n "$(tail -c1 "$staging/$base")" ]; then
  # The active file's copy may end inside a line being appended: keep complete lines only.
  size=$(stat -c %s "$staging/$base")
  partial=$(tail -n1 "$staging/$base" | wc -c)
  truncate -s $((size - partial)) "$staging/$base"
fi
[ ${#copied[@]} -gt 0 ] || die "every audit file vanished while copying"

stamp="$(date -u +%Y%m%d-%H%M%S)"
archive="$dest/$stem-backup-$stamp.tar.gz"
n=1
while [ -e "$archive" ]; do
  archive="$dest/$stem-backup-$stamp-$n.tar.gz"
  n=$((n + 1))
done
tar -czf "$staging/archive.tar.gz" -C "$staging" -- "${copied[@]}"
tar -tzf "$staging/archive.tar.gz" >/dev/null || die "the new archive does not read back"
mv "$staging/archive.tar.gz" "$archive"
echo "backup_audit: ${#copied[@]} file(s) from $dir -> $archive ($(stat -c %s "$archive") bytes)"

# Retention by the date in the archive name (not mtime, which a copy or restore changes).
if [ "$keep_days" -gt 0 ]; then
  cutoff="$(date -u -d "-$keep_days days" +%Y%m%d)"
  deleted=0
  for f in "$dest/$stem"-backup-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]-[0-9][0-9][0-9][0-9][0-9][0-9]*.tar.gz; do
    name="$(basename "$f")"
    day="${name#"$stem"-backup-}"
    day="${day:0:8}"
    if [ "$day" -lt "$cutoff" ]; then
      rm -f -- "$f"
      deleted=$((deleted + 1))
    fi
  done
  echo "backup_audit: deleted $deleted backup(s) dated before $cutoff (older than $keep_days days)"
fi
