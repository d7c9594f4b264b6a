#!/bin/bash
# Nexmark with events generated before the clock starts (the default now).
T=${T:-target/release/terrace-nexmark}
R=${R:-benches/compare/target/release/rocksdb-nexmark}
D=${D:-/tmp/terrace-nexmark}
C="--cache_size=8388608 --write_buffer_size=16777216"
declare -A BUDGET=([q5]=1000000 [q7]=1000000 [q18]=13000000 [q19]=21000000 [q20]=39000000)
for q in q5 q7 q18 q19 q20; do
  for mode in per-event batched; do
    echo "== $q $mode load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo -n "terrace-pinned   "; $T --query=$q --mode=$mode --events=2000000 $C --db=$D 2>&1 | grep "^q"
    echo -n "terrace-unpinned "; $T --query=$q --mode=$mode --events=2000000 $C --db=$D --pin_shards=false 2>&1 | grep "^q"
    echo -n "rocksdb          "; $R --query=$q --mode=$mode --events=2000000 $C --db=$D 2>&1 | grep "^q"
    echo -n "terrace-remote   "; $T --query=$q --mode=$mode --events=2000000 $C --db=$D \
      --object_store_latency_ms=30 --local_disk_budget=${BUDGET[$q]} --warm_window_secs=0 2>&1 | grep "^q"
  done
done
