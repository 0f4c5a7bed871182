#!/usr/bin/env bash

#SBATCH -J sweepflow-gpu
#SBATCH -n 1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH -t 04:00:00
#SBATCH --gres=gpu:1
export JAX_PLATFORMS=cuda
export XLA_PYTHON_CLIENT_PREALLOCATE=false
/opt/venv/bin/python -m distributed.cli.dask_worker tcp://<insert-scheduler-address-here>:8786 --name dummy-name --nthreads 8 --memory-limit 32.00GiB --nanny --death-timeout 60 --resources gpu=1
