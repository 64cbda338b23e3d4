"""``seva eval``: POPE-style yes/no object probes answered through the build's backends (docs/eval.md).

The parts: ``config`` (the EVAL.yaml keys), ``probes`` (POPE's question files, COCO annotations and
object lists, with POPE's sampling), ``answers`` (the step that asks the backend, per batch of
images, here or on Ray workers), ``runner`` (journal, workers, outputs), ``stats`` (metrics,
bootstrap intervals, McNemar), ``report`` (report.json, predictions.jsonl, the Markdown tables),
``rounds`` (``seva iterate --eval``).
"""
