"""What the Makefile's chains run around the commands: the stage wrapper (stage_record.py), one
GPU per job (gpu_slot.py), the plan of stages (plan.py), the smoke run (smoke.py) and the
full-size dry run (dryrun.py)."""
