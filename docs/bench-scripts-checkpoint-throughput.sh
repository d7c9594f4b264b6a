#!/bin/bash
# Section 2: fillrandom with a checkpoint every 10 s vs without, rounds interleaved.
B=${B:-target/release/terrace-bench}
D=${D:-/tmp/terrace-tput}; mkdir -p $D
for r in 1 2; do
  for S in 0 10; do
    rm -rf $D/ts $D/tdb; mkdir -p $D/ts
    echo "=== round $r S=$S $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    $B --benchmarks=fillrandom --num=20000000 --object_store=file://$D/ts \
      --object_store_latency_ms=30 --gc_interval_secs=10 --gc_min_age_secs=10 \
      --checkpoint_every_secs=$S --db=$D/tdb 2>&1 | grep -E "^(fillrandom|checkpoint)"
  done
done
rm -rf $D/ts $D/tdb
echo "=== done $(date -u +%H:%M:%S)"
