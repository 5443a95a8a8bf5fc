#!/bin/bash
# Issue 36 memory ablation on the <= 2-digit proxy, same budget (20,000 steps): slots with and without memory.
cd /work/main && . .venv/bin/activate
run() {  # name config seed extra...
  local name=$1 config=$2 seed=$3; shift 3
  local wd=/work/runs/L2-$name-s$seed
  python main.py --config=configs/mult.py$config --workdir=$wd --cpu_devices=1 \
    --config.train.stages=1,5,2 --config.train.last_stage=2 --config.train.final_threshold=0.99 \
    --config.trace.num_examples=0 --config.seed=$seed --config.train.num_steps=20000 "$@" \
    >> $wd.log 2>&1
  python tools/length.py $wd --lengths=1-6 --count=500 --json=$wd.length.json --png=$wd.length.png >> $wd.log 2>&1
}
run slots "" 1 &
run slotsnone "" 0 --config.model.memory_mode=none &
wait
