#!/bin/bash
# Nexmark (issue 13): Terrace local, Terrace remote, RocksDB; per-event and batched;
# engines interleaved per query and mode. 8 MiB block cache (db_bench's default) and
# 16 MiB memtables so that most state lives in SSTs, many times the cache.
T=${T:-target/release/terrace-nexmark}
R=${R:-benches/compare/target/release/rocksdb-nexmark}
D=${D:-/tmp/terrace-nexmark}
EV=${EV:-2000000}
C="--cache_size=8388608 --write_buffer_size=16777216"
declare -A BUDGET=([q5]=1000000 [q7]=1000000 [q18]=13000000 [q19]=21000000 [q20]=39000000)
for q in ${QUERIES:-q5 q7 q18 q19 q20}; do
  for mode in per-event batched; do
    echo "== $q $mode load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo -n "terrace-local  "; $T --query=$q --mode=$mode --events=$EV $C --db=$D 2>&1 | grep "^q"
    echo -n "rocksdb        "; $R --query=$q --mode=$mode --events=$EV $C --db=$D 2>&1 | grep "^q"
    echo -n "terrace-remote "; $T --query=$q --mode=$mode --events=$EV $C --db=$D \
      --object_store_latency_ms=30 --local_disk_budget=${BUDGET[$q]} --warm_window_secs=0 2>&1 | grep "^q"
  done
done
