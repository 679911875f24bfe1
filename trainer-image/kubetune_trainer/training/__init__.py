"""Stage 2, the training: the base model found and loaded, the Trainer session run and evaluated.

modelload (Hub, volume, scratch), device (precision and QLoRA support), collate (batches),
trainloop (Trainer and its arguments), callbacks (progress lines, clean stop), session (base
evaluation, training resumed from the newest checkpoint, tuned evaluation), train (the
stage from datasets to a TrainedModel). Imports from data/, never from output/.
"""
