#!/bin/bash
# Issue 10 restore at 1.2 GB after the one-GET SST open and parallel listings.
B=${B:-target/release/terrace-bench}
D=${D:-/tmp/terrace-restore}; rm -rf $D; mkdir -p $D/s
$B --benchmarks=fillrandom,checkpoint --num=14000000 --object_store=file://$D/s \
  --object_store_latency_ms=30 --write_buffer_size=67108864 --db=$D/d 2>&1 | grep -E "^(fillrandom|checkpoint) "
for r in 1 2; do
 for m in lazy download_first; do
  rm -rf $D/rdb
  echo "== round $r $m load $(cut -d' ' -f1-3 /proc/loadavg)"
  $B --benchmarks=readrandom --num=14000000 --reads=20000 --restore_from=file://$D/s --restore_mode=$m \
    --object_store_latency_ms=30 --db=$D/rdb 2>&1 | grep -E "^(restore|readrandom)|first read|GET"
 done
done
rm -rf $D
