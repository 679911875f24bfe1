"""Stage 1, the data: sources opened as rows, rows parsed as Examples, mixed, validated, tokenized.

Reads a DataSource (Hub, URL, ConfigMap, PVC) row by row (sources, filereaders, urlsafety),
parses rows of any supported format into Examples (formats, examples), mixes the job's
datasets (datamix), and turns Examples into model inputs with answer masks (dataprep,
chattemplate, answermask). The `validate` command lives here too: it is this stage alone.
Nothing here imports from training/ or output/.
"""
