#!/usr/bin/env bash
# Everything this project checks on a GPU, in one run of at most 8 minutes on one CUDA device:
#   1. the CUDA tests (the tests/ files with CUDA cases: graphs, capturable Adam, derivative engines, resampling);
#   2. the main job end to end (pinn fit -c configs/plane_wave.yaml on the GPU, 2 minutes), then pinn test;
#   3. ms/step of PW2 and PW2 x10 with CUDA graphs + compile, compile only, and eager (benchmarks/gpu_step.py);
#   4. DeepXDE and PINA on the same GPU for the same two sizes (benchmarks/peers/*_pw2.py --device cuda);
#   5. a realistic config (layered_source: layered medium, Ricker point force, free and absorbing edges) with
#      model.cuda_graphs: true and what rules graphs out taken off, which must capture without a warning.
# Then a summary with the targets: PW2 x10 at least 10x faster per step than PINA and 20x faster than DeepXDE.
#
#   ./benchmarks/gpu_wheels.sh        # here, where pip reaches the registry: wheels the GPU image may lack -> .whl/
#   ./benchmarks/gpu.sh               # there, in the checkout with .whl/ beside it; results in $OUT or gpu-results/
#
# Each part has its own time limit and writes its log under the results folder; one failing part does not stop the
# others, and the exit status is non-zero if any failed or missed its target.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-gpu-results}
mkdir -p "$RESULTS"
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl/ failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DDE_BACKEND=pytorch
export TORCHINDUCTOR_CACHE_DIR=/tmp/pinn-inductor  # a fresh machine: the first compile of each shape is counted
failed=0
SUMMARY="$RESULTS/summary.txt"
: >"$SUMMARY"

part() {  # part NAME SECONDS COMMAND...: run with a time limit, log to RESULTS/NAME.log, note the exit status
  local name=$1 limit=$2 start rc
  shift 2
  echo "=== $name (at most ${limit} s)"
  start=$(date +%s)
  timeout "$limit" "$@" >"$RESULTS/$name.log" 2>&1
  rc=$?
  tail -n 25 "$RESULTS/$name.log"
  echo "$name: exit $rc after $(($(date +%s) - start)) s" | tee -a "$SUMMARY"
  [ "$rc" -eq 0 ] || failed=1
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| lightning',
lightning.__version__)"; } 2>&1 | tee "$RESULTS/device.txt" | tee -a "$SUMMARY"

part cuda-tests 100 "$PY" -m pytest -q -p no:cacheprovider -x tests/test_graphs.py tests/test_capturable.py \
  tests/test_derivatives.py tests/test_optim.py tests/test_resampling.py

LOGS=/tmp/pinn-gpu-logs
part main-job 130 "$PY" -m pinn fit -c configs/plane_wave.yaml --trainer.accelerator gpu \
  --trainer.max_time 00:00:02:00 --trainer.logger.init_args.save_dir "$LOGS"
part main-job-test 40 "$PY" -m pinn test -c configs/plane_wave.yaml --trainer.accelerator gpu --ckpt_path last \
  --trainer.logger.init_args.save_dir "$LOGS"

part step 80 "$PY" benchmarks/gpu_step.py --sizes 1 10 --steps 40 --rounds 3 --json "$RESULTS/step.json"

for scale in 1 10; do
  for peer in deepxde pina; do
    part "$peer-x$scale" 45 "$PY" "benchmarks/peers/${peer}_pw2.py" --device cuda --points-scale "$scale" \
      --steps 30 --warmup 5
  done
done

part realistic-graphs 50 "$PY" -m pinn fit -c configs/layered_source.yaml --trainer.accelerator gpu \
  --model.cuda_graphs true --model.scheduler null --model.windows null --model.lbfgs null \
  --data.problem.init_args.initial rest --data.problem.init_args.displacement_scale 1.0e-6 \
  --trainer.limit_val_batches 0 --trainer.max_steps 300 --trainer.max_time null --checkpoint.monitor null \
  --checkpoint.save_top_k 1 --trainer.logger false --trainer.default_root_dir /tmp/pinn-gpu-realistic
if ! grep -q "Capturing the Adam steps in a CUDA graph" "$RESULTS/realistic-graphs.log" \
   || grep -q "capture of the training step failed" "$RESULTS/realistic-graphs.log"; then
  echo "realistic-graphs: the step was not captured (see realistic-graphs.log)" | tee -a "$SUMMARY"
  failed=1
fi

"$PY" - "$RESULTS" <<'PY' | tee -a "$SUMMARY" || failed=1
"""The per-step table of this project against the peers, and the targets."""
import json, pathlib, re, sys
results = pathlib.Path(sys.argv[1])
ours = json.loads((results / "step.json").read_text())["results"] if (results / "step.json").exists() else {}
def peer(name, scale):
    log = results / f"{name}-x{scale}.log"
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")] if log.exists() else []
    return json.loads(lines[-1])["ms_per_step_loop"] if lines else None
print("| problem | this project, graphs + compile (ms) | compile | eager | PINA (ms) | DeepXDE (ms) |")
print("|---|---:|---:|---:|---:|---:|")
ok = True
for scale in ("1", "10"):
    ms = ours.get(scale, {}).get("ms_per_step", {})
    pina, dde = peer("pina", scale), peer("deepxde", scale)
    cell = lambda v: "n/a" if v is None else f"{v:.2f}"
    print(f"| PW2{'' if scale == '1' else ' x' + scale} | {cell(ms.get('graphs'))} | {cell(ms.get('compile'))} | "
          f"{cell(ms.get('eager'))} | {cell(pina)} | {cell(dde)} |")
    if scale == "10":
        best = ms.get("graphs")
        for name, theirs, target in (("PINA", pina, 10), ("DeepXDE", dde, 20)):
            if best is None or theirs is None:
                print(f"target vs {name} ({target}x): not measured"); ok = False
            else:
                ratio = theirs / best
                print(f"target vs {name}: {ratio:.1f}x faster per step (target {target}x): "
                      f"{'met' if ratio >= target else 'MISSED'}")
                ok = ok and ratio >= target
test = results / "main-job-test.log"
if test.exists():
    m = re.findall(r"test/rel_l2\S*\s+([0-9.eE+-]+)", test.read_text())
    print(f"main job on the GPU: test/rel_l2 = {m[0] if m else 'not found'} (CPU: see docs/accuracy.md)")
sys.exit(0 if ok else 1)
PY
echo "results in $RESULTS/ (summary.txt)"
exit "$failed"
