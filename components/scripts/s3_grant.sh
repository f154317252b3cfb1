set -eu
weed_shell() { timeout 60 weed shell -master="$SEAWEEDFS_MASTER" -filer="$SEAWEEDFS_FILER" 2>&1; }
has_word() { awk -v w="$1" '{ for (i = 1; i <= NF; i++) if ($i == w) found = 1 } END { exit !found }'; }
tries=0
until printf 's3.bucket.list\n' | weed_shell > /tmp/buckets; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then echo "SeaweedFS is unreachable at $SEAWEEDFS_MASTER" >&2; exit 1; fi
  sleep 5
done
for bucket in $CREATE_BUCKETS; do
  if has_word "$bucket" < /tmp/buckets; then
    echo "bucket $bucket exists"
  else
    printf 's3.bucket.create -name %s\n' "$bucket" | weed_shell
  fi
done
printf 's3.bucket.list\n' | weed_shell > /tmp/buckets
for bucket in $CREATE_BUCKETS; do
  has_word "$bucket" < /tmp/buckets || { echo "bucket $bucket is missing" >&2; exit 1; }
done
printf 's3.configure -user=%s -delete -apply\n' "$S3_IDENTITY" | weed_shell > /dev/null || true
printf 's3.configure -user=%s -access_key=%s -secret_key=%s -actions=%s -buckets=%s -apply\n' \
  "$S3_IDENTITY" "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY" "$S3_ACTIONS" "$S3_BUCKETS" \
  | weed_shell | grep -iv secret || true
printf 's3.configure\n' | weed_shell | grep -qF "$S3_ACCESS_KEY_ID" \
  || { echo "identity $S3_IDENTITY was not applied" >&2; exit 1; }
echo "identity $S3_IDENTITY may $S3_ACTIONS on $S3_BUCKETS"
