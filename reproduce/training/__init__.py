"""Training: the Caffe solver and its loop. The net's scores go through the loss (loss.py), the
gradients through Caffe's SGD (solver.py); train.py runs the iterations, test passes and
checkpoints (checkpoint.py) of one run directory (run_lock.py), across processes
(distributed.py), stopping cleanly on a signal (stop_signals.py); init_files.py picks the
weights a stage starts from."""
