#!/bin/bash
# rho of both rewards on held-out videos of each row's student (one seed per row: those still on disk)
cd "$(dirname "$0")/../../../.." && mkdir -p runs/rho
for spec in toy-ode-init-small:ode-init-small toy-dmd-small:dmd-small toy-stream-r1-small:full-pref-s0 \
  runs/compare-small-11/runs/reward-forcing/seed_0/student.safetensors:rf-s0 \
  runs/compare-small-11/runs/stream-r1-inter-only/seed_0/student.safetensors:inter-s0 \
  runs/compare-small-11/runs/stream-r1-intra-only/seed_0/student.safetensors:intra-s0 \
  runs/compare-small-11/runs/stream-r1-no-balancing/seed_0/student.safetensors:nobal-s0 \
  runs/compare-small-11/runs/stream-r1-global-penalty/seed_0/student.safetensors:gp-s0 \
  runs/compare-small-11m/runs/stream-r1-full-toy-reward/seed_2/student.safetensors:full-tr-s2 \
  runs/compare-small-11m/runs/stream-r1-faithful-toy-reward/seed_2/student.safetensors:faithful-tr-s2 \
  runs/compare-small-11m/runs/dmd-lr-x-0-915/seed_3/student.safetensors:lr-s3 \
  toy-teacher:teacher; do
  ck="${spec%%:*}"; tag="${spec##*:}"
  OMP_NUM_THREADS=1 .venv/bin/stream-r1 reward-reliability --checkpoint "$ck" --reward toy-reward --reward toy-reward-pref \
     --per-prompt 2 --split heldout --out runs/rho/$tag.json > runs/rho/$tag.log 2>&1 || echo "FAILED $tag"
done
echo done
