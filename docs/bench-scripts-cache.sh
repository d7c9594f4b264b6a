#!/bin/bash
# Usage: run.sh MODE BUDGET SSD READS [extra flags]
#   SSD "-": no --ssd_cache_bytes flag (the mode's default SSD tier).
#   Env: B = terrace-bench binary, D = data dir (holds src/, the run copies it to run/),
#        BENCHES = the --benchmarks list.
set -e
B=${B:-/work/main/target/release/terrace-bench}
D=${D:-/work/benchdata/c12}
mode=$1; budget=$2; ssd=$3; reads=$4; shift 4
ssd_flag=()
[ "$ssd" != "-" ] && ssd_flag=(--ssd_cache_bytes=$ssd)
rm -rf $D/run && cp -a $D/src $D/run && sync  # sync: the copy's writeback stays out of the run
$B --benchmarks=${BENCHES:-readrandom,readrandom,multireadrandom} --use_existing_db=1 --db=$D/run \
  --num=2000000 --value_size=1000 --shards=2 --reads=$reads --key_dist=zipf --zipf_theta=0.99 \
  --cache_mode=$mode "${ssd_flag[@]}" --cache_size=16777216 --local_disk_budget=$budget \
  --object_store_latency_ms=30 --warm_window_secs=0 "$@"
