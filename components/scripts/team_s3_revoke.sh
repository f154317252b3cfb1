set -eu
weed_shell() { timeout 60 weed shell -master="$SEAWEEDFS_MASTER" -filer="$SEAWEEDFS_FILER" 2>&1; }
printf 's3.configure -user=%s -delete -apply\n' "$S3_IDENTITY" | weed_shell > /dev/null || true
if printf 's3.configure\n' | weed_shell | grep -qF "\"$S3_IDENTITY\""; then
  echo "identity $S3_IDENTITY is still configured" >&2; exit 1
fi
echo "identity $S3_IDENTITY removed"
has_word() { awk -v w="$1" '{ for (i = 1; i <= NF; i++) if ($i == w) found = 1 } END { exit !found }'; }
if [ "$DELETE_BUCKETS" = "true" ]; then
  # Only the buckets that exist: a run repeated after a failed step finds them gone already.
  printf 's3.bucket.list\n' | weed_shell > /tmp/buckets
  for bucket in $S3_BUCKETS; do
    if has_word "$bucket" < /tmp/buckets; then
      printf 's3.bucket.delete -name %s\n' "$bucket" | weed_shell
    else
      echo "bucket $bucket is already gone"
    fi
  done
  printf 's3.bucket.list\n' | weed_shell > /tmp/buckets
  for bucket in $S3_BUCKETS; do
    if has_word "$bucket" < /tmp/buckets; then
      echo "bucket $bucket still exists" >&2; exit 1
    fi
  done
  echo "buckets $S3_BUCKETS deleted"
fi
