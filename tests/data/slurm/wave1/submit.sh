#!/bin/bash
#SBATCH --job-name=reorder-submit
#SBATCH --output=/dev/null
#SBATCH --chdir=TMP
#SBATCH --partition=cpu
#SBATCH --account=lab
#SBATCH --qos=high
#SBATCH --time=2:00:00
#SBATCH --cpus-per-task=2
#SBATCH --mem=3G
#SBATCH --exclusive
#SBATCH --constraint=avx2
# reorder: submit task(s) 0; written by `reorder run --executor slurm`,
# which re-submits only unfinished tasks when run again.
set -euo pipefail
I=0
mkdir -p TMP/out/.reorder/logs
LOG=TMP/out/.reorder/logs/$(printf 'submit-%05d' "$I")
exec >"$LOG.log" 2>&1
rm -f "$LOG.failed"
trap 'rc=$?; echo "reorder: submit task $I failed (exit $rc)"; touch "$LOG.failed"; exit $rc' ERR
trap 'echo "reorder: submit task $I cancelled"; touch "$LOG.failed"; exit 143' TERM
module load python
source /opt/env/bin/activate
PYTHON -m reorder_cli.cli run TMP/cluster.yaml --method saw --input 'in/*.jsonl' --output out --set rewrite=out-of-core --set memory_limit=1 --set shard_rows=150 --set slurm.qos=high --set slurm.mem=3G --set slurm.max_parallel=4 --executor slurm --quiet
