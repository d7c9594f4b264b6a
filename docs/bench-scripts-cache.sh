#!/bin/bash
# Usage: run.sh MODE BUDGET SSD READS [extra flags]
set -e
B=/work/main/target/release/terrace-bench
D=/work/benchdata/c12
mode=$1; budget=$2; ssd=$3; reads=$4; shift 4
rm -rf $D/run && cp -a $D/src $D/run
$B --benchmarks=${BENCHES:-readrandom,readrandom,multireadrandom} --use_existing_db=1 --db=$D/run \
  --num=2000000 --value_size=1000 --shards=2 --reads=$reads --key_dist=zipf --zipf_theta=0.99 \
  --cache_mode=$mode --ssd_cache_bytes=$ssd --cache_size=16777216 --local_disk_budget=$budget \
  --object_store_latency_ms=30 --warm_window_secs=0 "$@"
