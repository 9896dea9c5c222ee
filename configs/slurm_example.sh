#!/bin/bash
# A Slurm job that runs the pipeline on 4 nodes with torchrun (docs/distributed.md):
#   sbatch configs/slurm_example.sh /shared/suite /shared/work
# One torchrun per node (srun --ntasks-per-node=1), 4 processes per node; the nodes meet at a
# c10d rendezvous on the first node of the allocation. SUITE holds one snapshot per simulation
# (sim_000/snapshot_000, ...); WORK must be on a file system that every node sees (the ranks
# write their simulations, and their boxes when sampling, beside the output and rank 0 reads
# them back). Adjust the partition, the time and the per-node counts to your cluster.
#SBATCH --job-name=lsscore
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=32
#SBATCH --gpus-per-node=4
#SBATCH --time=24:00:00
set -euo pipefail

SUITE=${1:?usage: sbatch slurm_example.sh SUITE_DIR WORK_DIR}
WORK=${2:?usage: sbatch slurm_example.sh SUITE_DIR WORK_DIR}
PER_NODE=4
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export OMP_NUM_THREADS=$((SLURM_CPUS_PER_TASK / PER_NODE))

# every node runs the same command; torchrun numbers the ranks 0 .. nodes x PER_NODE - 1
launch() {
    srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 \
        torchrun --nnodes="$SLURM_JOB_NUM_NODES" --nproc-per-node="$PER_NODE" \
        --rdzv-id="$SLURM_JOB_ID-$1" --rdzv-backend=c10d --rdzv-endpoint="$HEAD:29500" \
        -m lsscore "$@"
}

# 1. the simulations divided among the 16 ranks; rank 0 writes dataset.h5 (rerun to resume)
launch preprocess "$SUITE"/sim_* --out "$WORK/dataset.h5" --config configs/paper.toml
# 2. data-parallel training: [train] batch_size is the batch of all 16 ranks together
launch train --data "$WORK/dataset.h5" --config configs/paper.toml --out "$WORK/run"
# 3. the cubes divided among the ranks; rank 0 writes samples.h5 (--n-cubes: torchrun would
#    take a bare --n for one of its own options)
launch sample --checkpoint "$WORK/run/checkpoints/last.pt" --n-cubes 100000 \
    --out "$WORK/samples.h5" --physical
