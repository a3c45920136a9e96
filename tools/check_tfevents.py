"""Dev check: read a TensorBoard event file written by vlsm::train::tensorboard with TensorBoard's
own reader and print every scalar. Usage: python tools/check_tfevents.py RUN_DIR"""
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1])
acc.Reload()
for tag in acc.Tags()["scalars"]:
    print(tag, [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)])
