"""Stage 3, the output: the final folder (adapter or weights, merged model, model card), published.

finalize writes <work_dir>/final (and merged/) and marks it finished; modelcard renders the
README.md; publish pushes the folders to a Hub and reports the TrainerResult.
"""
