#!/usr/bin/env bash

#SBATCH -J sweepflow-cpu
#SBATCH -n 1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH -t 02:00:00
export JAX_PLATFORMS=cpu
/opt/venv/bin/python -m distributed.cli.dask_worker tcp://<insert-scheduler-address-here>:8786 --name dummy-name --nthreads 4 --memory-limit 16.00GiB --nanny --death-timeout 60
