#!/bin/bash
T=${T:-target/release/terrace-nexmark}
R=${R:-benches/compare/target/release/rocksdb-nexmark}
D=${D:-/tmp/terrace-nexmark}
C="--cache_size=8388608 --write_buffer_size=16777216"
for q in q5 q7 q18 q19 q20; do
  for mode in per-event batched; do
    echo "== $q $mode load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo -n "terrace-pinned   "; $T --query=$q --mode=$mode --events=2000000 $C --db=$D 2>&1 | grep "^q"
    echo -n "terrace-unpinned "; $T --query=$q --mode=$mode --events=2000000 $C --db=$D --pin_shards=false 2>&1 | grep "^q"
    echo -n "rocksdb          "; $R --query=$q --mode=$mode --events=2000000 $C --db=$D 2>&1 | grep "^q"
  done
done
