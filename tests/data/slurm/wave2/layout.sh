#!/bin/bash
#SBATCH --job-name=reorder-layout
#SBATCH --array=0-0%4
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
# reorder: layout task(s) 0; written by `reorder run --executor slurm`,
# which re-submits only unfinished tasks when run again.
set -euo pipefail
INDICES=(0)
I="${INDICES[$SLURM_ARRAY_TASK_ID]}"
mkdir -p TMP/out/.reorder/logs
LOG=TMP/out/.reorder/logs/$(printf 'layout-%05d' "$I")
exec >"$LOG.log" 2>&1
rm -f "$LOG.failed"
trap 'rc=$?; echo "reorder: layout task $I failed (exit $rc)"; touch "$LOG.failed"; exit $rc' ERR
trap 'echo "reorder: layout task $I cancelled"; touch "$LOG.failed"; exit 143' TERM
module load python
source /opt/env/bin/activate
PYTHON -m reorder_cli.cli task TMP/out layout "$I"
