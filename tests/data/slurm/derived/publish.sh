#!/bin/bash
#SBATCH --job-name=reorder-publish
#SBATCH --output=/dev/null
#SBATCH --chdir=TMP
#SBATCH --time=15
#SBATCH --mem=541M
# reorder: publish task(s) 0; written by `reorder run --executor slurm`,
# which re-submits only unfinished tasks when run again.
set -euo pipefail
I=0
mkdir -p TMP/out/.reorder/logs
LOG=TMP/out/.reorder/logs/$(printf 'publish-%05d' "$I")
exec >"$LOG.log" 2>&1
rm -f "$LOG.failed"
trap 'rc=$?; echo "reorder: publish task $I failed (exit $rc)"; touch "$LOG.failed"; exit $rc' ERR
trap 'echo "reorder: publish task $I cancelled"; touch "$LOG.failed"; exit 143' TERM
PYTHON -m reorder_cli.cli run TMP/cfg.yaml --method saw --input 'in/*.jsonl' --output out --set rewrite=out-of-core --set memory_limit=500MB --set shard_rows=150 --set slurm.time=1:00:00 --set slurm.time_gather=2:00:00 --set slurm.time_publish=15 --set slurm.time_sort=30 --quiet
